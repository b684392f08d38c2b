-- Events follow the CloudEvents naming rule for extension attributes from now on: `shopid`,
-- `correlationid`, `causationid`, `schemaversion` (schemas/envelope.py). Stored events are
-- never rewritten, so bodies recorded before keep `shop_id` and the rest: whatever reads an
-- attribute from a stored body reads it through these functions, which know both names.
-- The functions that read them are replaced in R_event_fan_out.sql, R_customers_fold.sql
-- and R_sales_facts.sql.

CREATE FUNCTION event_shop(body jsonb) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(body->>'shopid', body->>'shop_id')
$$;
