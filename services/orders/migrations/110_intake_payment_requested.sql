-- A Kafka shop hears of a payment requested in an app (PaymentRequested: the QRIS code to
-- show, or the e-wallet push sent), as it hears of a bank transfer's virtual account: the
-- trigger of 109_intake_return_closed.sql, with that type added. The types listed are
-- services/orders/kafka_intake.py STATUS_EVENTS (a test keeps them equal).
DROP TRIGGER events_intake_status_out ON events;

CREATE TRIGGER events_intake_status_out AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.type IN (
        'PaymentPending', 'PaymentRequested', 'PaymentConfirmed', 'PaymentFailed',
        'PaymentExpired', 'ShipmentCreated', 'Shipped', 'OutForDelivery', 'DeliveryFailed',
        'Delivered', 'ReadyForPickup', 'PickedUp', 'ReturnedToSender', 'OrderCancelled',
        'RefundIssued', 'ReturnClosed', 'OrderReturned', 'OrderCompleted'))
    EXECUTE FUNCTION intake_status_out();
