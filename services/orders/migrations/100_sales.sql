-- The sales analytics projection: one fact row per order, one row per order line, derived from
-- the orders service's event store. `sales_apply` is the projection: it folds one event (its
-- jsonb envelope) into the tables. It is idempotent and order-independent (each event
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

-- Writes to `sales_orders` / `sales_lines` as the search_path resolves them: the live tables
-- of this schema for the trigger, or a replay's rebuild tables when the replaying session puts
-- their schema first. Static SQL, so PL/pgSQL plans each statement once per session.
CREATE FUNCTION sales_apply(body jsonb) RETURNS void LANGUAGE plpgsql AS $$
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
    WHEN 'OrderCancelled' THEN
        UPDATE sales_orders SET cancelled_at = at, cancel_reason = d->>'reason'
         WHERE order_id = oid;
    END CASE;
END $$;

CREATE FUNCTION sales_on_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sales_apply(NEW.body);
    RETURN NULL;
END $$;

CREATE TRIGGER sales_projection AFTER INSERT ON events FOR EACH ROW
    WHEN (NEW.type = ANY (sales_event_types()))
    EXECUTE FUNCTION sales_on_event();
