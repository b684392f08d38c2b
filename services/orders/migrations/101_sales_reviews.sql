-- Review ratings in the sales projection: one review per order (the orders domain allows no
-- second), so the rating is a column of the order's fact row. `alur replay sales` rebuilds
-- past reviews into it from the event store or the topic.

ALTER TABLE sales_orders ADD COLUMN rating smallint CHECK (rating BETWEEN 1 AND 5),
                         ADD COLUMN reviewed_at timestamptz;

CREATE OR REPLACE FUNCTION sales_event_types() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['OrderPlaced', 'PaymentConfirmed', 'Delivered', 'OrderCompleted',
                 'OrderCancelled', 'OrderReturned', 'ReviewSubmitted']
$$;

CREATE OR REPLACE FUNCTION sales_apply(body jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    kind text        := body->>'type';
    oid  text        := body->>'subject';
    at   timestamptz := (body->>'time')::timestamptz;
    d    jsonb       := body->'data';
BEGIN
    IF NOT kind = ANY (sales_event_types()) THEN
        RETURN;
    END IF;
    INSERT INTO sales_orders (order_id, shop_id, channel)
        VALUES (oid, body->>'shop_id', body->>'channel') ON CONFLICT (order_id) DO NOTHING;
    CASE kind
    WHEN 'OrderPlaced' THEN
        UPDATE sales_orders SET payment_method = d->'payment'->>'method',
               currency = d->'total'->>'currency', total_amount = (d->'total'->>'amount')::bigint,
               placed_at = at
         WHERE order_id = oid;
        INSERT INTO sales_lines (order_id, sku, quantity, amount)
        SELECT oid, l->>'sku', (l->>'quantity')::int,
               (l->>'quantity')::bigint * (l->'unit_price'->>'amount')::bigint
          FROM jsonb_array_elements(d->'lines') AS l
        ON CONFLICT DO NOTHING;
    WHEN 'PaymentConfirmed' THEN UPDATE sales_orders SET paid_at = at WHERE order_id = oid;
    WHEN 'Delivered' THEN UPDATE sales_orders SET delivered_at = at WHERE order_id = oid;
    WHEN 'OrderCompleted' THEN UPDATE sales_orders SET completed_at = at WHERE order_id = oid;
    WHEN 'OrderReturned' THEN UPDATE sales_orders SET returned_at = at WHERE order_id = oid;
    WHEN 'ReviewSubmitted' THEN
        UPDATE sales_orders SET rating = (d->>'rating')::smallint, reviewed_at = at
         WHERE order_id = oid;
    WHEN 'OrderCancelled' THEN
        UPDATE sales_orders SET cancelled_at = at, cancel_reason = d->>'reason'
         WHERE order_id = oid;
    END CASE;
END $$;

