-- What each stock location is (services/inventory/domain.py Site): a warehouse, or a store
-- (whose stock serves its till, and online orders only where ship-from-store is configured),
-- and the postal region it is in (the first digit of an Indonesian postal code), by which
-- orders are routed. A location without a row is a warehouse with no region.
CREATE TABLE locations (
    location           text        PRIMARY KEY,
    kind               text        NOT NULL CHECK (kind IN ('warehouse', 'store')),
    region             text        CHECK (region ~ '^[0-9]$'),
    ships_to_customers boolean     NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
