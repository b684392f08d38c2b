-- E-mails handed to the SMTP server, written the moment the server accepted each one, outside
-- the consumer's batch transaction. A batch redelivered after a crash finds its e-mails here
-- and does not send them again: a crash duplicates at most the e-mail in flight.
CREATE TABLE sent_emails (
    notification_id text        PRIMARY KEY,
    sent_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sent_emails_sent_at ON sent_emails (sent_at);
