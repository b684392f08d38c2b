-- The webhook delivery log: one row per (subscription, event), made in the transaction that
-- records the event in this store (own or observed), so a delivery is never lost and never
-- made twice; the delivery loop POSTs it, retrying with exponential backoff.
CREATE TABLE webhook_deliveries (
    webhook_id      text        NOT NULL REFERENCES webhooks,
    event_id        uuid        NOT NULL,
    order_id        text        NOT NULL,
    event_type      text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';

CREATE FUNCTION webhook_fan_out() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id, order_id, event_type)
    SELECT w.webhook_id, NEW.event_id, NEW.stream_id, NEW.type FROM webhooks w
     WHERE w.shop_id = NEW.body->>'shop_id' AND NEW.type = ANY (w.events)
       AND w.deleted_at IS NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER events_webhook_fan_out AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION webhook_fan_out();
