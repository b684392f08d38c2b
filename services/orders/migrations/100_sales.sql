-- The sales analytics projection: one fact row per order, one row per order line, derived from
-- the orders service's event store. `sales_apply` is the projection: it folds one event (its
-- jsonb envelope) into the named tables. It is idempotent and order-independent (each event
-- sets only its own columns), so the live tables (kept by the trigger below, in the same
-- transaction as the event) and a rebuild by replay (alur replay sales) come out equal.
-- No customer data is copied: shop, channel, amounts, SKUs and times only.

CREATE TABLE sales_orders (
    order_id       text PRIMARY KEY,
    shop_id        text        NOT NULL,
    channel        text        NOT NULL,
    payment_method text,
    currency       text,
    total_amount   bigint,
    placed_at      timestamptz,
    paid_at        timestamptz,
    delivered_at   timestamptz,
    completed_at   timestamptz,
    cancelled_at   timestamptz,
    cancel_reason  text,
    returned_at    timestamptz
);
CREATE INDEX sales_orders_shop_placed ON sales_orders (shop_id, placed_at);

CREATE TABLE sales_lines (
    order_id text    NOT NULL,
    sku      text    NOT NULL,
    quantity integer NOT NULL,
    amount   bigint  NOT NULL,   -- quantity x unit price, minor units
    PRIMARY KEY (order_id, sku)
);

-- The event types the projection folds (the trigger's filter; a rebuild reads only these).
CREATE FUNCTION sales_event_types() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['OrderPlaced', 'PaymentConfirmed', 'Delivered', 'OrderCompleted',
                 'OrderCancelled', 'OrderReturned']
$$;

CREATE FUNCTION sales_apply(orders_table text, lines_table text, body jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    kind  text        := body->>'type';
    oid   text        := body->>'subject';
    at    timestamptz := (body->>'time')::timestamptz;
    d     jsonb       := body->'data';
    col   text;
BEGIN
    col := CASE kind WHEN 'PaymentConfirmed' THEN 'paid_at' WHEN 'Delivered' THEN 'delivered_at'
                     WHEN 'OrderCompleted' THEN 'completed_at' WHEN 'OrderCancelled' THEN 'cancelled_at'
                     WHEN 'OrderReturned' THEN 'returned_at' END;
    IF kind <> 'OrderPlaced' AND col IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('INSERT INTO %I (order_id, shop_id, channel) VALUES ($1, $2, $3) '
                   'ON CONFLICT (order_id) DO NOTHING', orders_table)
        USING oid, body->>'shop_id', body->>'channel';
    IF kind = 'OrderPlaced' THEN
        EXECUTE format('UPDATE %I SET payment_method = $2, currency = $3, total_amount = $4, '
                       'placed_at = $5 WHERE order_id = $1', orders_table)
            USING oid, d->'payment'->>'method', d->'total'->>'currency',
                  (d->'total'->>'amount')::bigint, at;
        EXECUTE format('INSERT INTO %I (order_id, sku, quantity, amount) '
                       'SELECT $1, l->>''sku'', (l->>''quantity'')::int, '
                       '(l->>''quantity'')::bigint * (l->''unit_price''->>''amount'')::bigint '
                       'FROM jsonb_array_elements($2) AS l ON CONFLICT DO NOTHING', lines_table)
            USING oid, d->'lines';
    ELSE
        EXECUTE format('UPDATE %I SET %I = $2 WHERE order_id = $1', orders_table, col)
            USING oid, at;
        IF kind = 'OrderCancelled' THEN
            EXECUTE format('UPDATE %I SET cancel_reason = $2 WHERE order_id = $1', orders_table)
                USING oid, d->>'reason';
        END IF;
    END IF;
END $$;

CREATE FUNCTION sales_on_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sales_apply('sales_orders', 'sales_lines', NEW.body);
    RETURN NULL;
END $$;

CREATE TRIGGER sales_projection AFTER INSERT ON events FOR EACH ROW
    WHEN (NEW.type = ANY (sales_event_types()))
    EXECUTE FUNCTION sales_on_event();
