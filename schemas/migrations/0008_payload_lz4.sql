-- Stripe's payloads are compressed with lz4 rather than pglz when a row
-- is over 2 KB (half of Stripe's events): a tenth of the CPU for a few per
-- cent more bytes. Rows stored before keep their pglz; both read the same.
-- A partitioned table does not pass the setting on to the partitions it
-- has, so each gets it; ps_partition_add copies it to new ones.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT 'stripe_events'::regclass
             UNION ALL
             SELECT i.inhrelid::regclass FROM pg_inherits i
             WHERE i.inhparent = 'stripe_events'::regclass LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN payload SET COMPRESSION lz4', t);
    END LOOP;
END $$;
