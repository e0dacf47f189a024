-- Retention: nothing grows forever. The append-only logs are partitioned
-- by day (UTC; migrations/0002_partitioned_logs.sql) and lose whole
-- partitions once every row in them is older than what they must keep;
-- the queues (outbox, notifications) lose the rows they finished. The
-- payments worker runs ps_retention_run hourly and at start.
--
-- What each log must keep:
--   stripe_event_log, account_audit_log, inventory_inbox: the log retention
--     (PAYSTREAM_LOG_RETENTION_DAYS, at least 4 days): they are the dedupe
--     of messages that can come again, and Stripe retries an event for up
--     to 3 days after it was created. Keep it longer than the topics'
--     retention in Kafka (7 days by default), so that no replay of a topic
--     reaches past the dedupe.
--   commands: PAYSTREAM_IDEMPOTENCY_HOURS (24 by default, as Stripe keeps
--     its keys): an Idempotency-Key is answered from it that long at least.
--   notifications: the log retention, once sent or failed.
--   outbox: an hour once published; Kafka has it from there.

-- The UTC day of a time.
CREATE FUNCTION ps_utc_day(t timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (t AT TIME ZONE 'UTC')::date
$$;

-- The column table is partitioned by.
CREATE FUNCTION ps_partition_column(p_table text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT a.attname::text
    FROM pg_partitioned_table pt
    JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
    WHERE pt.partrelid = p_table::regclass
$$;

-- Adds table's partition of day d unless it has one; rows of that day that
-- had no partition (in the default one) move into it. Returns whether it
-- added one.
CREATE FUNCTION ps_partition_add(p_table text, d date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_name text := p_table || '_p' || to_char(d, 'YYYYMMDD');
    v_col  text := ps_partition_column(p_table);
    v_lo   timestamptz := d::timestamp AT TIME ZONE 'UTC';
    v_hi   timestamptz := (d + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(v_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Made apart and attached: attaching scans the default partition for
    -- rows of the day, which must have moved first.
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING COMPRESSION)', v_name, p_table);
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *) '
                   'INSERT INTO %I SELECT * FROM moved',
                   p_table || '_default', v_col, v_col, v_name) USING v_lo, v_hi;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   p_table, v_name, v_lo, v_hi);
    RETURN true;
END $$;

-- Retention as of p_now, for logs kept p_log_days and commands kept
-- p_command_hours: each partitioned log gets its partitions from yesterday
-- to two days ahead, and loses those whose every row is older than it
-- keeps, and the rows of its default partition that are (the rare event
-- dated outside the partitions: one Stripe resent weeks later). Returns
-- what it did, a row per table and action. Runs in one worker at a time;
-- waits at most 2 s for a lock (a long transaction on a log), and what it
-- could not do is done on the next run.
CREATE FUNCTION ps_retention_run(p_now timestamptz, p_log_days integer, p_command_hours integer)
RETURNS TABLE (tbl text, action text, items bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_logs  interval := make_interval(days => p_log_days);
    t       record;
    r       record;
    v_col   text;
    v_cut   timestamptz;
    v_n     bigint;
    v_added bigint;
BEGIN
    IF p_log_days < 4 THEN
        RAISE EXCEPTION 'logs must be kept 4 days at least (Stripe retries an event for 3), not %',
                        p_log_days USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtext('paystream retention')) THEN
        RETURN;
    END IF;
    PERFORM set_config('lock_timeout', '2s', true);
    FOR t IN SELECT * FROM (VALUES ('stripe_event_log', v_logs), ('account_audit_log', v_logs),
                                   ('inventory_inbox', v_logs),
                                   ('commands', make_interval(hours => p_command_hours)))
                           AS x(name, keep) LOOP
        tbl := t.name;
        v_col := ps_partition_column(t.name);
        v_cut := p_now - t.keep;
        SELECT count(*) FILTER (WHERE ps_partition_add(t.name, ps_utc_day(p_now) + i)) INTO v_added
        FROM generate_series(-1, 2) i;
        IF v_added > 0 THEN
            action := 'partitions_added';
            items := v_added;
            RETURN NEXT;
        END IF;
        v_n := 0;
        FOR r IN SELECT c.relname,
                        to_date(substring(c.relname from '_p([0-9]{8})$'), 'YYYYMMDD') AS day
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = t.name::regclass ORDER BY c.relname LOOP
            IF r.day IS NOT NULL AND (r.day + 1)::timestamp AT TIME ZONE 'UTC' <= v_cut THEN
                EXECUTE format('DROP TABLE %I', r.relname);
                v_n := v_n + 1;
            END IF;
        END LOOP;
        IF v_n > 0 THEN
            action := 'partitions_dropped';
            items := v_n;
            RETURN NEXT;
        END IF;
        EXECUTE format('DELETE FROM %I WHERE %I < $1', t.name || '_default', v_col) USING v_cut;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        IF v_n > 0 THEN
            action := 'default_rows_deleted';
            items := v_n;
            RETURN NEXT;
        END IF;
    END LOOP;

    -- Queues: what they finished, oldest first, a bounded number per run.
    DELETE FROM outbox WHERE id IN (
        SELECT o.id FROM outbox o
        WHERE o.id < coalesce((SELECT min(u.id) FROM outbox u WHERE u.published_at IS NULL),
                              9223372036854775807)
          AND o.published_at < p_now - interval '1 hour'
        ORDER BY o.id LIMIT 100000);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        tbl := 'outbox';
        action := 'published_rows_deleted';
        items := v_n;
        RETURN NEXT;
    END IF;
    DELETE FROM notifications WHERE id IN (
        SELECT n.id FROM notifications n
        WHERE n.status IN ('sent', 'failed') AND n.created_at < p_now - v_logs
        LIMIT 100000);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        tbl := 'notifications';
        action := 'finished_rows_deleted';
        items := v_n;
        RETURN NEXT;
    END IF;
END $$;
