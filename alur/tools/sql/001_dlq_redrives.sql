-- Which dead letters were sent back to their origin topic, when, and where they landed.
CREATE TABLE dlq_redrives (
    id          text        PRIMARY KEY,      -- "<dlq topic>:<partition>:<offset>"
    service     text        NOT NULL,         -- the service that dead-lettered it
    order_id    text,
    redriven_at timestamptz NOT NULL DEFAULT now(),
    times       integer     NOT NULL DEFAULT 1,
    published   text                          -- "<topic>[<partition>]@<offset>"
);
