-- Stock per SKU per location. A reservation holds units (reserved); when the order ships the
-- units are committed: they leave the shelf, so reserved and on_hand both go down. The
-- database itself refuses any write that would hold more units than are on hand.
CREATE TABLE stock (
    location   text        NOT NULL,
    sku        text        NOT NULL,
    on_hand    integer     NOT NULL,
    reserved   integer     NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (location, sku),
    CONSTRAINT stock_never_oversold CHECK (reserved >= 0 AND on_hand >= 0 AND reserved <= on_hand)
);
CREATE INDEX stock_sku ON stock (sku);

-- One row per order reservation line, so a reservation can be committed or released exactly.
CREATE TABLE reservation_lines (
    order_id       text    NOT NULL,
    reservation_id text    NOT NULL,
    location       text    NOT NULL,
    sku            text    NOT NULL,
    quantity       integer NOT NULL CHECK (quantity > 0),
    status         text    NOT NULL CHECK (status IN ('reserved', 'committed', 'released')),
    PRIMARY KEY (order_id, sku)
);
