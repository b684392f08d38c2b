-- What each recorded event fans out to, as it is now: the shops' webhook deliveries
-- (102_webhook_deliveries.sql) and the outcome topics of orders placed over Kafka
-- (103_kafka_intake.sql; the trigger's type list: 110_intake_payment_requested.sql). A
-- repeatable migration (alur.runtime.db.migrate): a change to either function is an edit here.

CREATE OR REPLACE FUNCTION webhook_fan_out() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, event_id, order_id, event_type)
    SELECT w.webhook_id, NEW.event_id, NEW.stream_id, NEW.type FROM webhooks w
     WHERE w.shop_id = event_shop(NEW.body) AND NEW.type = ANY (w.events)
       AND w.deleted_at IS NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION intake_status_out() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO outbox (event_id, topic, key, value, type)
    SELECT NEW.event_id, 'order-outcomes.' || event_shop(p.body),
           convert_to(p.body->'data'->>'reference', 'UTF8'), convert_to(NEW.body::text, 'UTF8'),
           NEW.type
      FROM events p
     WHERE p.stream_id = NEW.stream_id AND p.version = 1
       AND p.body->'data'->>'intake' = 'kafka';
    RETURN NULL;
END $$;
