-- Shops publishing on Kafka (services/orders/KAFKA.md).
--
-- Where the intake consumer stands in each shop's intake partition. A record's outcome, its
-- order (if accepted) and the move past its offset commit in one transaction, so a record
-- redelivered after a crash or a rebalance finds its offset passed and is skipped: one
-- outcome per record, never two.
CREATE TABLE intake_positions (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- An order placed from a shop's intake topic has its customer-facing status events
-- republished to the shop's outcome topic, keyed by the shop's reference, by the outbox relay
-- (in the transaction that records the event, like the webhook fan-out of migration 102).
CREATE FUNCTION intake_status_out() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO outbox (event_id, topic, key, value, type)
    SELECT NEW.event_id, 'order-outcomes.' || (p.body->>'shop_id'),
           convert_to(p.body->'data'->>'reference', 'UTF8'), convert_to(NEW.body::text, 'UTF8'),
           NEW.type
      FROM events p
     WHERE p.stream_id = NEW.stream_id AND p.version = 1
       AND p.body->'data'->>'intake' = 'kafka';
    RETURN NULL;
END $$;

-- The types listed in services/orders/kafka_intake.py STATUS_EVENTS (a test keeps them equal).
CREATE TRIGGER events_intake_status_out AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.type IN (
        'PaymentPending', 'PaymentConfirmed', 'PaymentFailed', 'PaymentExpired',
        'ShipmentCreated', 'Shipped', 'OutForDelivery', 'DeliveryFailed', 'Delivered',
        'ReadyForPickup', 'PickedUp', 'ReturnedToSender', 'OrderCancelled', 'RefundIssued',
        'OrderReturned', 'OrderCompleted'))
    EXECUTE FUNCTION intake_status_out();
