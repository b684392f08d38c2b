-- Wake the relay when rows are added to the outbox: one NOTIFY per statement (a unit of
-- work's COPY), delivered when its transaction commits, on the channel the relay listens to
-- (alur.runtime.postgres.notify_channel). A trigger instead of a statement of the unit of
-- work: one round trip less per commit, and every writer of the outbox wakes the relay.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('alur_outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
