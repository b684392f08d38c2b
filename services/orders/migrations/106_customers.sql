-- Customers: one person per shop across channels (services/orders/customers.py).
--
-- Everything here is derived from the orders' event store, in the transaction that records
-- the events (one statement-level trigger, `projections`, feeds this and the sales fold):
--   * customer_identifiers: from CustomerIdentified (which identifier names which customer);
--   * customer_orders: from OrderPlaced's data.alur_customer_id;
--   * loyalty_ledger: from those orders' LoyaltyPointsAccrued / LoyaltyPointsReversed, the
--     points an OrderPlaced spends (`held`), LoyaltyPointsRedeemed (`redeemed`: spent) and
--     LoyaltyPointsReleased (`released`: given back).
-- Every insert is idempotent (ON CONFLICT DO NOTHING), so folding events again changes
-- nothing. The functions write to the tables as the search_path resolves them.

-- The key store of crypto-shredding (alur/runtime/keyring.py): a key per customer, shared by
-- every service that reads personal data, and the tombstones of forgotten customers (their
-- ids only). Each orders schema (the tests make several) shares the one keyring.
CREATE SCHEMA IF NOT EXISTS keyring;
CREATE TABLE IF NOT EXISTS keyring.customer_keys (
    customer_id text        PRIMARY KEY,
    shop_id     text        NOT NULL,
    key         bytea       NOT NULL CHECK (length(key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS keyring.forgotten (
    customer_id text        PRIMARY KEY,
    shop_id     text        NOT NULL,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);

-- Identifiers by their keyed hash (schemas.orders.CustomerIdentifier): no identifier is kept
-- in clear. A forgotten customer's rows are deleted, and a replay does not bring them back.
CREATE TABLE customer_identifiers (
    shop_id     text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('reference', 'loyalty_card', 'email', 'phone')),
    digest      text        NOT NULL,
    customer_id text        NOT NULL,
    order_id    text        NOT NULL,          -- the order that brought the identifier
    linked_at   timestamptz NOT NULL,
    PRIMARY KEY (shop_id, kind, digest)
);
CREATE INDEX customer_identifiers_customer ON customer_identifiers (customer_id);

CREATE TABLE customer_orders (
    order_id    text        PRIMARY KEY,
    customer_id text        NOT NULL,
    shop_id     text        NOT NULL,
    channel     text        NOT NULL,
    placed_at   timestamptz NOT NULL           -- a till sale: when the till sold it
);
CREATE INDEX customer_orders_customer ON customer_orders (customer_id, placed_at);

CREATE TABLE loyalty_ledger (
    event_id    uuid        PRIMARY KEY,
    customer_id text        NOT NULL,
    order_id    text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('accrued', 'reversed', 'held',
                                                     'redeemed', 'released')),
    points      integer     NOT NULL CHECK (points > 0),
    at          timestamptz NOT NULL
);
CREATE INDEX loyalty_ledger_customer ON loyalty_ledger (customer_id, at);

CREATE FUNCTION customers_event_types() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['CustomerIdentified', 'OrderPlaced', 'LoyaltyPointsAccrued',
                 'LoyaltyPointsReversed', 'LoyaltyPointsRedeemed', 'LoyaltyPointsReleased']
$$;

-- The transaction lock on one identifier of a shop: whoever resolves or forgets a customer
-- holds the locks of the identifiers involved, always taken in (kind, digest) order.
CREATE FUNCTION customer_identifier_lock(shop text, kind text, digest text) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(
        'alur.customer' || chr(10) || shop || chr(10) || kind || chr(10) || digest, 0));
END $$;

-- A customer's identifiers locked, for `forget`: a placement that found the customer holds
-- one of them until it commits, so the customer is never forgotten under an order being
-- placed (which would then be sealed with a key already gone).
CREATE FUNCTION customer_lock(shop text, customer text) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    k text;
    v text;
BEGIN
    FOR k, v IN SELECT c.kind, c.digest FROM customer_identifiers c
                 WHERE c.shop_id = shop AND c.customer_id = customer ORDER BY 1, 2 LOOP
        PERFORM customer_identifier_lock(shop, k, v);
    END LOOP;
END $$;

-- Who the customers of orders placed together are (one order, or a till's batch), in one
-- round trip (services/orders/customers.py `resolve` says the rules):
--   * each identifier is locked first (a transaction lock, all in one order, so two
--     placements never wait on each other in a cycle): a second order bringing the same new
--     e-mail waits until the first one's link is committed, and then finds it. VOLATILE
--     PL/pgSQL: the read takes its snapshot after the locks;
--   * `orders[i]` is the order (0-based) identifier i belongs to; an order's identifiers come
--     strongest first, and its strongest known one decides; none known, the order's
--     candidate id is a new customer, whose candidate key is stored;
--   * orders are resolved in turn: a later one finds what an earlier one linked;
--   * per order: the customer, whether new, the key sealing their personal data, and the
--     identifiers the order links for the first time.
CREATE FUNCTION customer_resolve(shop text, orders integer[], kinds text[], digests text[],
                                 candidates text[], candidate_keys bytea[])
    RETURNS TABLE (r_order integer, r_customer text, r_new boolean, r_key bytea,
                   r_kinds text[], r_digests text[])
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    k text;
    v text;
    o integer;
    i integer;
    known jsonb;  -- 'kind:digest' -> customer, what is known so far (this call's links too)
BEGIN
    FOR k, v IN SELECT DISTINCT u.k, u.v FROM unnest(kinds, digests) AS u(k, v) ORDER BY 1, 2 LOOP
        PERFORM customer_identifier_lock(shop, k, v);
    END LOOP;
    SELECT coalesce(jsonb_object_agg(c.kind || ':' || c.digest, c.customer_id), '{}')
      INTO known
      FROM unnest(kinds, digests) AS u(k, v)
      JOIN customer_identifiers c ON c.shop_id = shop AND c.kind = u.k AND c.digest = u.v;
    FOR o IN SELECT DISTINCT x FROM unnest(orders) AS x ORDER BY 1 LOOP
        r_order := o;
        r_customer := NULL;
        FOR i IN 1 .. array_length(orders, 1) LOOP
            IF orders[i] = o AND r_customer IS NULL THEN
                r_customer := known->>(kinds[i] || ':' || digests[i]);
            END IF;
        END LOOP;
        r_new := r_customer IS NULL;
        r_customer := coalesce(r_customer, candidates[o + 1]);
        r_kinds := '{}';
        r_digests := '{}';
        FOR i IN 1 .. array_length(orders, 1) LOOP
            IF orders[i] = o AND NOT known ? (kinds[i] || ':' || digests[i]) THEN
                known := known || jsonb_build_object(kinds[i] || ':' || digests[i], r_customer);
                r_kinds := r_kinds || kinds[i];
                r_digests := r_digests || digests[i];
            END IF;
        END LOOP;
        IF r_new THEN
            INSERT INTO keyring.customer_keys (customer_id, shop_id, key)
                VALUES (r_customer, shop, candidate_keys[o + 1]);
            r_key := candidate_keys[o + 1];
        ELSE
            SELECT c.key INTO r_key FROM keyring.customer_keys c WHERE c.customer_id = r_customer;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

-- A customer's ledger, read under a transaction lock on the customer: an order that spends
-- points decides on this balance, and holds them in the same transaction (its OrderPlaced
-- adds the `held` row), so two orders of one customer spending at once never both spend the
-- same points. VOLATILE PL/pgSQL: the read takes its snapshot after the lock.
CREATE FUNCTION loyalty_ledger_locked(customer text)
    RETURNS TABLE (kind text, order_id text, points integer, at timestamptz)
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('alur.loyalty' || chr(10) || customer, 0));
    RETURN QUERY
        SELECT l.kind, l.order_id, l.points, l.at FROM loyalty_ledger l
         WHERE l.customer_id = customer ORDER BY l.at, l.event_id;
END $$;

CREATE FUNCTION customers_fold(bodies jsonb[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO customer_identifiers (shop_id, kind, digest, customer_id, order_id, linked_at)
    SELECT b->>'shop_id', i->>'kind', i->>'digest', b->'data'->>'customer_id', b->>'subject',
           (b->>'time')::timestamptz
      FROM unnest(bodies) AS b, jsonb_array_elements(b->'data'->'identifiers') AS i
     WHERE b->>'type' = 'CustomerIdentified'
       AND NOT EXISTS (SELECT 1 FROM keyring.forgotten f
                        WHERE f.customer_id = b->'data'->>'customer_id')
    ON CONFLICT DO NOTHING;

    INSERT INTO customer_orders (order_id, customer_id, shop_id, channel, placed_at)
    SELECT b->>'subject', b->'data'->>'alur_customer_id', b->>'shop_id', b->>'channel',
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

-- One trigger for both projections of the event store: one pass over the flush's rows.
DROP TRIGGER sales_projection ON events;
DROP FUNCTION sales_on_events();

CREATE FUNCTION projections_on_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sales jsonb[];
    buyers jsonb[];
BEGIN
    SELECT array_agg(body ORDER BY stream_id, version)
               FILTER (WHERE type = ANY (sales_event_types())),
           array_agg(body ORDER BY stream_id, version)
               FILTER (WHERE type = ANY (customers_event_types()))
      INTO sales, buyers
      FROM recorded;
    IF sales IS NOT NULL THEN
        PERFORM sales_fold(sales);
    END IF;
    IF buyers IS NOT NULL THEN
        PERFORM customers_fold(buyers);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER projections AFTER INSERT ON events REFERENCING NEW TABLE AS recorded
    FOR EACH STATEMENT EXECUTE FUNCTION projections_on_events();
