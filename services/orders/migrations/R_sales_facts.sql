-- The sales projection's two functions as they are now: `sales_facts` takes a set of event
-- bodies apart into facts, `sales_fold_facts` folds those into the live tables (the types,
-- tables and trigger around them: 104_sales_fold.sql and 108_sales_tax.sql). A repeatable
-- migration (alur.runtime.db.migrate): it is applied again whenever this text changes, so a
-- change to either function is an edit here, not a copy of both in a new numbered migration.
-- A change to a type or a table still goes in a numbered migration, before this one runs.

CREATE OR REPLACE FUNCTION sales_facts(bodies jsonb[], OUT facts sales_fact[],
                            OUT lines sales_line_fact[]) LANGUAGE plpgsql STABLE AS $$
BEGIN
    facts := ARRAY(
        SELECT ROW(kind, b->>'subject', (b->>'time')::timestamptz, event_shop(b),
                   b->>'channel',
                   CASE kind WHEN 'OrderPlaced' THEN b->'data'->'payment'->>'method' END,
                   CASE kind WHEN 'OrderPlaced' THEN b->'data'->'total'->>'currency' END,
                   CASE kind WHEN 'OrderPlaced'
                        THEN (b->'data'->'total'->>'amount')::bigint END,
                   CASE kind WHEN 'OrderCancelled' THEN b->'data'->>'reason' END,
                   CASE kind WHEN 'ReviewSubmitted' THEN (b->'data'->>'rating')::smallint END,
                   CASE kind WHEN 'OrderPlaced'
                        THEN event_tax(b) END
                   )::sales_fact
          FROM unnest(bodies) WITH ORDINALITY AS u(b, n), LATERAL (SELECT b->>'type') AS t(kind)
         WHERE kind = ANY (sales_event_types())
         ORDER BY n);
    lines := ARRAY(
        SELECT ROW(b->>'subject', l->>'sku', (l->>'quantity')::int,
                   (l->>'quantity')::bigint * (l->'unit_price'->>'amount')::bigint
                   )::sales_line_fact
          FROM unnest(bodies) WITH ORDINALITY AS u(b, n),
               jsonb_array_elements(b->'data'->'lines') WITH ORDINALITY AS x(l, i)
         WHERE b->>'type' = 'OrderPlaced'
         ORDER BY n, i);
END $$;

CREATE OR REPLACE FUNCTION sales_fold_facts(facts sales_fact[], lines sales_line_fact[])
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    folded integer;
BEGIN
    WITH e AS (
        SELECT * FROM unnest(facts) WITH ORDINALITY
                      AS f(kind, order_id, at, shop_id, channel, payment_method, currency,
                           total_amount, cancel_reason, rating, tax_amount, n)
         WHERE kind = ANY (sales_event_types())
    ), latest AS (          -- each order's last event of each kind
        SELECT DISTINCT ON (order_id, kind) * FROM e ORDER BY order_id, kind, n DESC
    ), first AS (           -- each order's first event: its shop and channel
        SELECT DISTINCT ON (order_id) order_id, shop_id, channel FROM e ORDER BY order_id, n
    ), rows AS (
        SELECT f.order_id, f.shop_id, f.channel,
               max(l.payment_method) FILTER (WHERE l.kind = 'OrderPlaced') AS payment_method,
               max(l.currency) FILTER (WHERE l.kind = 'OrderPlaced') AS currency,
               max(l.total_amount) FILTER (WHERE l.kind = 'OrderPlaced') AS total_amount,
               max(l.tax_amount) FILTER (WHERE l.kind = 'OrderPlaced') AS tax_amount,
               max(l.at) FILTER (WHERE l.kind = 'OrderPlaced') AS placed_at,
               max(l.at) FILTER (WHERE l.kind = 'PaymentConfirmed') AS paid_at,
               max(l.at) FILTER (WHERE l.kind = 'Delivered') AS delivered_at,
               max(l.at) FILTER (WHERE l.kind = 'OrderCompleted') AS completed_at,
               max(l.at) FILTER (WHERE l.kind = 'OrderCancelled') AS cancelled_at,
               max(l.cancel_reason) FILTER (WHERE l.kind = 'OrderCancelled') AS cancel_reason,
               max(l.at) FILTER (WHERE l.kind = 'OrderReturned') AS returned_at,
               max(l.rating) FILTER (WHERE l.kind = 'ReviewSubmitted') AS rating,
               max(l.at) FILTER (WHERE l.kind = 'ReviewSubmitted') AS reviewed_at
          FROM first f JOIN latest l USING (order_id)
         GROUP BY f.order_id, f.shop_id, f.channel
    ), orders AS (
        -- A column group is overwritten only when the batch has an event of its kind; the
        -- ON CONFLICT branch tells by the group's timestamp, which every event has.
        INSERT INTO sales_orders AS s (order_id, shop_id, channel, payment_method, currency,
                                       total_amount, tax_amount, placed_at, paid_at,
                                       delivered_at, completed_at, cancelled_at, cancel_reason,
                                       returned_at, rating, reviewed_at)
        SELECT order_id, shop_id, channel, payment_method, currency, total_amount, tax_amount,
               placed_at, paid_at, delivered_at, completed_at, cancelled_at, cancel_reason,
               returned_at, rating, reviewed_at
          FROM rows
        ON CONFLICT (order_id) DO UPDATE SET
            payment_method = CASE WHEN excluded.placed_at IS NULL THEN s.payment_method
                                  ELSE excluded.payment_method END,
            currency = CASE WHEN excluded.placed_at IS NULL THEN s.currency
                            ELSE excluded.currency END,
            total_amount = CASE WHEN excluded.placed_at IS NULL THEN s.total_amount
                                ELSE excluded.total_amount END,
            tax_amount = CASE WHEN excluded.placed_at IS NULL THEN s.tax_amount
                              ELSE excluded.tax_amount END,
            placed_at = coalesce(excluded.placed_at, s.placed_at),
            paid_at = coalesce(excluded.paid_at, s.paid_at),
            delivered_at = coalesce(excluded.delivered_at, s.delivered_at),
            completed_at = coalesce(excluded.completed_at, s.completed_at),
            cancel_reason = CASE WHEN excluded.cancelled_at IS NULL THEN s.cancel_reason
                                 ELSE excluded.cancel_reason END,
            cancelled_at = coalesce(excluded.cancelled_at, s.cancelled_at),
            returned_at = coalesce(excluded.returned_at, s.returned_at),
            rating = CASE WHEN excluded.reviewed_at IS NULL THEN s.rating
                          ELSE excluded.rating END,
            reviewed_at = coalesce(excluded.reviewed_at, s.reviewed_at)
    ), new_lines AS (       -- the first line of each SKU (an order's first OrderPlaced)
        INSERT INTO sales_lines (order_id, sku, quantity, amount)
        SELECT DISTINCT ON (order_id, sku) order_id, sku, quantity, amount
          FROM unnest(lines) WITH ORDINALITY AS x(order_id, sku, quantity, amount, n)
         ORDER BY order_id, sku, n
        ON CONFLICT DO NOTHING
    )
    SELECT count(*) INTO folded FROM e;
    RETURN folded;
END $$;

