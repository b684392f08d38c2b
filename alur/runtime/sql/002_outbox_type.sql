-- The event type of each outbox row, so the relay counts what it publishes by type
-- (alur_events_produced_total); dead-letter records are typed 'DeadLetter'.
ALTER TABLE outbox ADD COLUMN type text NOT NULL DEFAULT 'unknown';
ALTER TABLE outbox ALTER COLUMN type DROP DEFAULT;
