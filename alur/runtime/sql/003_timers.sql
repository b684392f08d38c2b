-- Timers: a stream's deadlines (reservation expiry, payment expiry, auto-completion, stuck
-- order). A service's decider derives them from the stream's state; the unit of work keeps
-- this table in step in the same transaction as the events. Replicas fire due timers with
-- FOR UPDATE SKIP LOCKED, and a fired timer's row goes in the transaction that records what
-- it caused, so each fires once however many replicas run.
CREATE TABLE timers (
    stream_id text        NOT NULL,
    kind      text        NOT NULL,
    due_at    timestamptz NOT NULL,
    PRIMARY KEY (stream_id, kind)
);
CREATE INDEX timers_due ON timers (due_at);
