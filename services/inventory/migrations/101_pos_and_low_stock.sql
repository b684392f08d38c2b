-- Low-stock thresholds per SKU: LowStock is emitted when a location's available units
-- (on hand minus reserved) fall under the SKU's threshold.
CREATE TABLE low_stock_thresholds (
    sku        text        PRIMARY KEY,
    threshold  integer     NOT NULL CHECK (threshold >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every change made through the admin API (set or adjust on hand), who made it and why.
CREATE TABLE stock_adjustments (
    adjustment_id bigserial   PRIMARY KEY,
    location      text        NOT NULL,
    sku           text        NOT NULL,
    on_hand_was   integer,
    on_hand       integer     NOT NULL,
    reason        text        NOT NULL,
    actor         text        NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_adjustments_sku ON stock_adjustments (sku, at);
