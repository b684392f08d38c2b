-- OrderPlaced version 2 records the order's tax lines (`data.taxes`, a list) where version 1
-- had one optional `data.tax` (schemas/orders.py; the upcaster turns one into the other when
-- Python reads it). Stored bodies are never rewritten: whatever reads an order's tax from a
-- stored body reads it through this function, which knows both versions. Null: no tax.

CREATE FUNCTION event_tax(body jsonb) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(body->'data'->'taxes') = 'array'
                THEN (SELECT sum((t->'amount'->>'amount')::bigint)
                        FROM jsonb_array_elements(body->'data'->'taxes') AS t)
                ELSE (body->'data'->'tax'->'amount'->>'amount')::bigint END
$$;
