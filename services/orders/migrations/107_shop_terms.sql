-- A shop's terms (services/orders/domain.py ShopTerms): its tax, the locale its customers read
-- amounts and dates in, and the days home delivery takes. Existing shops get Indonesia's:
-- PPN 11%, prices including it, id_ID.
ALTER TABLE shops
    ADD COLUMN tax_name           text     NOT NULL DEFAULT 'PPN'
        CHECK (length(tax_name) BETWEEN 1 AND 32),
    ADD COLUMN tax_rate_bp        integer  NOT NULL DEFAULT 1100
        CHECK (tax_rate_bp BETWEEN 0 AND 10000),
    ADD COLUMN prices_include_tax boolean  NOT NULL DEFAULT true,
    ADD COLUMN locale             text     NOT NULL DEFAULT 'id_ID'
        CHECK (locale ~ '^[A-Za-z]{2,3}(_[A-Za-z0-9]{2,8})*$'),
    ADD COLUMN delivery_days      smallint NOT NULL DEFAULT 3
        CHECK (delivery_days BETWEEN 0 AND 90);
