-- Units on their way from a warehouse to the store a click-and-collect order is collected
-- from (services/inventory/domain.py, ShipTransfer). in_transit: they left the warehouse's
-- shelf (its reservation committed) and are on no location's books; at_store: on the
-- store's books (on_hand) and held there for the customer (reserved); collected: handed
-- over, off the store's books again; returned: the parcel came back to the warehouse (an
-- order cancelled after it left), where the units are restocked.
CREATE TABLE stock_transfers (
    transfer_id   text        NOT NULL,
    sku           text        NOT NULL,
    order_id      text        NOT NULL,
    from_location text        NOT NULL,
    to_location   text        NOT NULL,
    quantity      integer     NOT NULL CHECK (quantity > 0),
    status        text        NOT NULL CHECK (status IN ('in_transit', 'at_store', 'collected',
                                                     'returned')),
    shipped_at    timestamptz NOT NULL DEFAULT now(),
    received_at   timestamptz,
    PRIMARY KEY (transfer_id, sku)
);
CREATE INDEX stock_transfers_in_transit ON stock_transfers (sku, to_location)
    WHERE status = 'in_transit';
