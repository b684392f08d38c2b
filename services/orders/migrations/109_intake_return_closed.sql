-- A Kafka shop hears of each partial return closed (ReturnClosed), as it hears of the last
-- (OrderReturned): the trigger of 103_kafka_intake.sql, with that type added. The types listed
-- are services/orders/kafka_intake.py STATUS_EVENTS (a test keeps them equal).
DROP TRIGGER events_intake_status_out ON events;

CREATE TRIGGER events_intake_status_out AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.type IN (
        'PaymentPending', 'PaymentConfirmed', 'PaymentFailed', 'PaymentExpired',
        'ShipmentCreated', 'Shipped', 'OutForDelivery', 'DeliveryFailed', 'Delivered',
        'ReadyForPickup', 'PickedUp', 'ReturnedToSender', 'OrderCancelled', 'RefundIssued',
        'ReturnClosed', 'OrderReturned', 'OrderCompleted'))
    EXECUTE FUNCTION intake_status_out();
