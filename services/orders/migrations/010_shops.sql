-- The shop registry and everything the shop-facing API keeps per shop. Owned by the orders
-- service (it serves the API); no other service reads these tables.

CREATE TABLE shops (
    shop_id        text PRIMARY KEY CHECK (shop_id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name           text        NOT NULL,
    currency       text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Set: every request must carry an HMAC-SHA256 signature made with it. Kept in clear
    -- because verifying needs it; API keys, which only need comparing, are kept as hashes.
    signing_secret text,
    rate_per_second real       CHECK (rate_per_second > 0),   -- NULL: the settings' default
    burst          integer     CHECK (burst > 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id     text PRIMARY KEY,            -- the public part, shown in listings and logs
    shop_id    text        NOT NULL REFERENCES shops,
    key_hash   bytea       NOT NULL UNIQUE, -- sha256 of the whole key; the key itself is shown once
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Signatures already accepted, so a captured request cannot be sent again. Rows older than
-- the signature tolerance can go: their timestamp alone refuses them.
CREATE TABLE seen_signatures (
    shop_id   text        NOT NULL,
    signature text        NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, signature)
);

-- Idempotency-Key records: written in the same transaction as the request's effects, so a
-- request that was rejected or never committed leaves none.
CREATE TABLE idempotency_keys (
    shop_id      text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       integer     NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- SKUs orders may name. Orders for anything else are refused at the door.
CREATE TABLE catalogue (
    sku        text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Where a shop wants its order events delivered (the notifications service delivers them).
CREATE TABLE webhooks (
    webhook_id      text PRIMARY KEY,
    shop_id         text        NOT NULL REFERENCES shops,
    url             text        NOT NULL,
    events          text[]      NOT NULL,
    secret          text        NOT NULL,
    -- After a rotation the old secret still signs alongside the new one until it expires.
    previous_secret text,
    previous_until  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX webhooks_shop ON webhooks (shop_id) WHERE deleted_at IS NULL;
