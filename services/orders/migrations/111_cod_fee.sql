-- The collection fee cash on delivery adds to a shop's orders (services/orders/domain.py
-- ShopTerms.cod_fee), in minor units of the shop's currency. Existing shops charge none.
ALTER TABLE shops
    ADD COLUMN cod_fee bigint NOT NULL DEFAULT 0 CHECK (cod_fee BETWEEN 0 AND 1000000000);
