-- Stripe's events are stored as the bytes Stripe sent, in the column body
-- of stripe_event_log (the table stripe_events was, partitions and all),
-- and stripe_events becomes a view of it that gives every row's payload as
-- jsonb, as before. Making each 2 KB document jsonb on its way in was about
-- a fifth of PostgreSQL's work per event; a reader that wants a payload now
-- pays for its own rows. The payments worker stores only what it has read
-- as strict JSON (ps_json_scan or jansson: no \u0000, no lone surrogate),
-- all of which PostgreSQL's jsonb takes.
--
-- Rows stored before keep their jsonb in payload (body NULL); nothing is
-- rewritten, so the upgrade takes no longer on a big log than on an empty
-- one.
ALTER TABLE stripe_events RENAME TO stripe_event_log;
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT c.relname
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'stripe_event_log'::regclass LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t.relname,
                       'stripe_event_log' || substr(t.relname, length('stripe_events') + 1));
    END LOOP;
END $$;
ALTER TABLE stripe_event_log ALTER COLUMN payload DROP NOT NULL;
ALTER TABLE stripe_event_log ADD COLUMN body text;
-- lz4, as payload has (0008), on the table and on each partition it has.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT 'stripe_event_log'::regclass
             UNION ALL
             SELECT i.inhrelid::regclass FROM pg_inherits i
             WHERE i.inhparent = 'stripe_event_log'::regclass LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN body SET COMPRESSION lz4', t);
    END LOOP;
END $$;

-- The columns design §7 fixes, and outcome. Simple enough that PostgreSQL
-- deletes and updates (but for payload) through it.
CREATE VIEW stripe_events AS
    SELECT id, type, account, created, livemode, message_id,
           coalesce(payload, body::jsonb) AS payload, received_at, outcome
    FROM stripe_event_log;
