-- The logs that only grow, partitioned by day so that retention drops whole
-- partitions (functions/retention.sql) instead of deleting rows. Each is
-- partitioned by a time that every delivery of the same message carries,
-- so the primary key, which must hold the partition key, still dedupes:
--
--   stripe_events, account_audit_log   created: Stripe's time of the event
--   inventory_inbox                    message_at: the domain event's time
--                                      (the outbox row's, in its envelope)
--   commands                           created_at: when it was applied; the
--                                      dedupe looks an id up in every
--                                      partition, which a command's key
--                                      keeps on one worker at a time
--
-- A row whose day has no partition (one dated before the oldest kept, or
-- far ahead) goes to the table's _default partition.

-- Creates table's default partition and a partition for each day (UTC) of
-- column in old (the table being replaced) and from yesterday to two days
-- ahead, then moves old's rows in and drops old.
CREATE FUNCTION pg_temp.partition_days(p_table text, p_column text, p_old text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d date;
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', p_table || '_default', p_table);
    FOR d IN EXECUTE format('SELECT DISTINCT (%I AT TIME ZONE ''UTC'')::date FROM %I UNION '
                            'SELECT $1 + i FROM generate_series(-1, 2) i', p_column, p_old)
             USING today
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       p_table || '_p' || to_char(d, 'YYYYMMDD'), p_table,
                       d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
    EXECUTE format('INSERT INTO %I SELECT * FROM %I', p_table, p_old);
    EXECUTE format('DROP TABLE %I', p_old);
END $$;

ALTER TABLE stripe_events RENAME TO stripe_events_0001;
ALTER INDEX stripe_events_pkey RENAME TO stripe_events_0001_pkey;
CREATE TABLE stripe_events (
    id          text NOT NULL,                 -- evt_...
    type        text NOT NULL,
    account     text,                          -- acct_... for Connect events
    created     timestamptz NOT NULL,
    livemode    boolean NOT NULL DEFAULT false,
    message_id  text,                          -- envelope id of the first delivery
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    outcome     text,
    PRIMARY KEY (id, created)
) PARTITION BY RANGE (created);
SELECT pg_temp.partition_days('stripe_events', 'created', 'stripe_events_0001');

ALTER TABLE account_audit_log RENAME TO account_audit_log_0001;
ALTER INDEX account_audit_log_pkey RENAME TO account_audit_log_0001_pkey;
ALTER INDEX account_audit_log_account RENAME TO account_audit_log_0001_account;
CREATE TABLE account_audit_log (
    event_id    text NOT NULL,                         -- evt_...
    account     text,
    type        text NOT NULL,
    created     timestamptz NOT NULL,
    outcome     text NOT NULL
        CHECK (outcome IN ('applied', 'stale', 'unhandled', 'livemode_mismatch')),
    changes     jsonb NOT NULL DEFAULT '{}',
    message_id  text,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, created)
) PARTITION BY RANGE (created);
CREATE INDEX account_audit_log_account ON account_audit_log (account, created);
SELECT pg_temp.partition_days('account_audit_log', 'created', 'account_audit_log_0001');

ALTER TABLE inventory_inbox RENAME TO inventory_inbox_0001;
ALTER INDEX inventory_inbox_pkey RENAME TO inventory_inbox_0001_pkey;
CREATE TABLE inventory_inbox (
    message_id text NOT NULL,
    type       text NOT NULL,
    outcome    text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    message_at timestamptz NOT NULL,                -- the domain event's time
    PRIMARY KEY (message_id, message_at)
) PARTITION BY RANGE (message_at);
ALTER TABLE inventory_inbox_0001 ADD COLUMN message_at timestamptz;
UPDATE inventory_inbox_0001 SET message_at = applied_at;
SELECT pg_temp.partition_days('inventory_inbox', 'message_at', 'inventory_inbox_0001');

ALTER TABLE commands RENAME TO commands_0001;
ALTER INDEX commands_pkey RENAME TO commands_0001_pkey;
CREATE TABLE commands (
    id             text NOT NULL,              -- cmd_...
    actor          text NOT NULL,
    type           text NOT NULL,              -- order.create, ...
    resource_id    text,
    request_sha256 text NOT NULL,              -- of the request, to tell a reused Idempotency-Key
    message_id     text,
    http_status    smallint NOT NULL,          -- what the API answers for it
    result         jsonb NOT NULL,             -- the resource, or {"error": {...}}
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
SELECT pg_temp.partition_days('commands', 'created_at', 'commands_0001');

-- Queues are pruned of what they finished (functions/retention.sql): the
-- outbox by id from its oldest row, notifications by this index.
CREATE INDEX notifications_finished ON notifications (created_at) WHERE status IN ('sent', 'failed');
