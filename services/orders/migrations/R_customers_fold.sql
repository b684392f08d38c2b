-- The customers projection's fold as it is now (tables and trigger: 106_customers.sql). A
-- repeatable migration (alur.runtime.db.migrate): a change to it is an edit here.

CREATE OR REPLACE FUNCTION customers_fold(bodies jsonb[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO customer_identifiers (shop_id, kind, digest, customer_id, order_id, linked_at)
    SELECT event_shop(b), i->>'kind', i->>'digest', b->'data'->>'customer_id', b->>'subject',
           (b->>'time')::timestamptz
      FROM unnest(bodies) AS b, jsonb_array_elements(b->'data'->'identifiers') AS i
     WHERE b->>'type' = 'CustomerIdentified'
       AND NOT EXISTS (SELECT 1 FROM keyring.forgotten f
                        WHERE f.customer_id = b->'data'->>'customer_id')
    ON CONFLICT DO NOTHING;

    INSERT INTO customer_orders (order_id, customer_id, shop_id, channel, placed_at)
    SELECT b->>'subject', b->'data'->>'alur_customer_id', event_shop(b), b->>'channel',
           coalesce((b->'data'->>'sold_at')::timestamptz, (b->>'time')::timestamptz)
      FROM unnest(bodies) AS b
     WHERE b->>'type' = 'OrderPlaced' AND b->'data'->>'alur_customer_id' IS NOT NULL
    ON CONFLICT DO NOTHING;

    INSERT INTO loyalty_ledger (event_id, customer_id, order_id, kind, points, at)
    SELECT (b->>'id')::uuid, b->'data'->>'alur_customer_id', b->>'subject', 'held',
           (b->'data'->'redemption'->>'points')::integer, (b->>'time')::timestamptz
      FROM unnest(bodies) AS b
     WHERE b->>'type' = 'OrderPlaced' AND b->'data'->>'alur_customer_id' IS NOT NULL
       AND jsonb_typeof(b->'data'->'redemption') = 'object'
    ON CONFLICT DO NOTHING;

    INSERT INTO loyalty_ledger (event_id, customer_id, order_id, kind, points, at)
    SELECT (b->>'id')::uuid, o.customer_id, b->>'subject',
           CASE b->>'type' WHEN 'LoyaltyPointsAccrued' THEN 'accrued'
                           WHEN 'LoyaltyPointsReversed' THEN 'reversed'
                           WHEN 'LoyaltyPointsRedeemed' THEN 'redeemed'
                           ELSE 'released' END,
           (b->'data'->>'points')::integer, (b->>'time')::timestamptz
      FROM unnest(bodies) AS b
      JOIN customer_orders o ON o.order_id = b->>'subject'
     WHERE b->>'type' IN ('LoyaltyPointsAccrued', 'LoyaltyPointsReversed',
                          'LoyaltyPointsRedeemed', 'LoyaltyPointsReleased')
    ON CONFLICT DO NOTHING;
END $$;
