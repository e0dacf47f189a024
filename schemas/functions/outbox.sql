-- The outbox: domain events written in the transaction of the change that
-- causes them (the table is in migrations/), for the relay to publish.

-- A domain event as the outbox keeps it (see ps_outbox_add).
CREATE FUNCTION ps_outbox_payload(p_type text, p_aggregate text, p_data jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('type', p_type, 'aggregate', p_aggregate,
                              'occurred_at', now(), 'data', p_data)
$$;

-- Queues a domain event and wakes the relay (at commit).
CREATE FUNCTION ps_outbox_add(p_source text, p_type text, p_aggregate text, p_data jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (aggregate, type, source, payload)
    VALUES (p_aggregate, p_type, p_source, ps_outbox_payload(p_type, p_aggregate, p_data));
    PERFORM pg_notify('ps_outbox', '');
END $$;

-- The time of a domain event as a consumer's batch element carries it
-- (at_ms: its envelope's received_at, the outbox row's created_at, which
-- every publication of the row repeats): what the consumers' dedupe logs
-- are partitioned by.
CREATE FUNCTION ps_message_at(e jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_timestamp((e->>'at_ms')::bigint / 1000.0)
$$;
