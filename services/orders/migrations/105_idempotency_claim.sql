-- A request's Idempotency-Key in one round trip instead of two: take the key's transaction
-- lock (a duplicate arriving while the first request is in flight is told 409), then read
-- what an earlier request with the key answered. In a VOLATILE PL/pgSQL function each
-- statement takes a new snapshot: the read comes after the lock, so it sees the answer of a
-- request that held the lock and committed just before (a plain SELECT of both would read
-- with a snapshot taken before the lock, and miss it).
CREATE FUNCTION idempotency_claim(lock_key bigint, shop text, idem_key text, ttl float8,
                                  OUT locked boolean, OUT request_hash bytea,
                                  OUT status integer, OUT response text)
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    locked := pg_try_advisory_xact_lock(lock_key);
    IF locked THEN
        SELECT k.request_hash, k.status, k.response::text
          INTO request_hash, status, response
          FROM idempotency_keys k
         WHERE k.shop_id = shop AND k.key = idem_key
           AND k.created_at > now() - make_interval(secs => ttl);
    END IF;
END $$;
