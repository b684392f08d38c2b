-- The reliability core every service has in its own schema (search_path is the service schema).

CREATE TABLE events (
    stream_id   text        NOT NULL,
    version     integer     NOT NULL CHECK (version >= 1),
    event_id    uuid        NOT NULL UNIQUE,
    type        text        NOT NULL,
    origin      text        NOT NULL CHECK (origin IN ('own', 'observed')),
    body        jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, version)
);

CREATE TABLE inbox (
    event_id    uuid        PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    event_id     uuid,
    topic        text        NOT NULL,
    key          bytea,
    value        bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    partition    integer,
    "offset"     bigint
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE audit (
    id         bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    direction  text        NOT NULL CHECK (direction IN ('in', 'out')),
    topic      text        NOT NULL,
    partition  integer,
    "offset"   bigint,
    event_id   uuid,
    type       text,
    order_id   text,
    outcome    text        NOT NULL,
    attempts   integer     NOT NULL DEFAULT 1,
    error      text
);
CREATE INDEX audit_order ON audit (order_id);
