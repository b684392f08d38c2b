-- Streams with a partner call in flight (alur.runtime.processing, "effects outside the
-- transaction"). A batch claims the streams it is about to act on in a short transaction,
-- calls its partners with no transaction open, and deletes the claims in the transaction that
-- records the outcomes. Meanwhile every other writer of those streams (a timer round, a
-- partner's callback) finds the claim under the stream's lock and waits for its next round or
-- answers "try again". A claim left by a crash is taken over by whoever handles the same
-- messages again (the next owner of the partition), or lapses at `expires_at`.
CREATE TABLE claims (
    stream_id  text PRIMARY KEY,
    owner      uuid NOT NULL,
    expires_at timestamptz NOT NULL
);
