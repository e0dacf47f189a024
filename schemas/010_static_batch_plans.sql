-- ps_apply_stripe_batch (002), its main statement kept right as the tables
-- grow. PL/pgSQL plans it once per session, and a plan made while payments
-- was small was a hash join over a sequential scan of all of it, kept batch
-- after batch long after the table had grown (autovacuum, whose statistics
-- would have invalidated it, came minutes late at these rates). Planning it
-- for every batch instead cured that but took about half of PostgreSQL's time
-- when batches are small (5,000 events/s, a few dozen events a batch). So the
-- statement names the batch's payment intents as an array for the index, and
-- the function runs with sequential scans off: a plan made while the tables
-- are small probes the indexes as one made later would.
CREATE OR REPLACE FUNCTION ps_apply_stripe_batch(p_events jsonb)
RETURNS TABLE (ord bigint, event_id text, outcome text) LANGUAGE plpgsql
SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    -- A payment made through the API learns its payment intent from the
    -- gateway's answer, and Stripe's webhook may come first. The intent names
    -- the payment in metadata.payment_id: the payment adopts the intent, so
    -- the event applies to it instead of making another.
    -- Rare (payments made through the API), so planned for each batch: kept
    -- from a small table, its plan went through every payment still without
    -- an intent rather than by id.
    IF jsonb_path_exists(p_events, '$[*].payment_id') THEN
        EXECUTE $q$
        UPDATE payments p SET gateway_payment_id = b.payment_intent
        FROM ps_stripe_batch_rows($1) b
        WHERE b.payment_id IS NOT NULL AND b.payment_intent IS NOT NULL AND p.id = b.payment_id
          AND p.gateway_payment_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM payments q WHERE q.gateway_payment_id = b.payment_intent)
        $q$ USING p_events;
    END IF;

    RETURN QUERY
    WITH ev AS MATERIALIZED (
        SELECT b.*, to_timestamp(b.created) AS at FROM ps_stripe_batch_rows(p_events) b
        WHERE b.fast
    ), fresh AS (
        INSERT INTO stripe_events (id, type, account, created, livemode, message_id, payload)
        SELECT ev.event_id, ev.type, ev.account, ev.at, ev.livemode, ev.message_id, ev.payload
        FROM ev
        ON CONFLICT (id) DO NOTHING
        RETURNING stripe_events.id
    ), todo AS MATERIALIZED (
        SELECT ev.* FROM ev JOIN fresh ON fresh.id = ev.event_id
        WHERE ev.payment_intent IS NOT NULL
    ), upd AS (
        -- Payments that exist: every SET expression reads the row as it was.
        UPDATE payments p SET
            intent_status = CASE WHEN ps_payment_moves(p.last_event_at, p.intent_status, t.at, t.intent_status)
                                 THEN t.intent_status ELSE p.intent_status END,
            gateway_status = CASE WHEN ps_payment_moves(p.last_event_at, p.intent_status, t.at, t.intent_status)
                                  THEN coalesce(t.gateway_status, p.gateway_status) ELSE p.gateway_status END,
            amount_minor = CASE WHEN ps_payment_moves(p.last_event_at, p.intent_status, t.at, t.intent_status)
                                THEN coalesce(t.amount, p.amount_minor) ELSE p.amount_minor END,
            currency = CASE WHEN ps_payment_moves(p.last_event_at, p.intent_status, t.at, t.intent_status)
                            THEN coalesce(t.currency, p.currency) ELSE coalesce(p.currency, t.currency) END,
            order_id = CASE WHEN ps_payment_moves(p.last_event_at, p.intent_status, t.at, t.intent_status)
                            THEN coalesce(t.order_id, p.order_id) ELSE p.order_id END,
            customer = CASE WHEN ps_payment_moves(p.last_event_at, p.intent_status, t.at, t.intent_status)
                            THEN coalesce(t.customer, p.customer) ELSE p.customer END,
            failure_code = CASE WHEN ps_payment_moves(p.last_event_at, p.intent_status, t.at, t.intent_status)
                                THEN CASE WHEN t.intent_status = 'failed' THEN t.failure_code END
                                ELSE p.failure_code END,
            failure_message = CASE WHEN ps_payment_moves(p.last_event_at, p.intent_status, t.at, t.intent_status)
                                   THEN CASE WHEN t.intent_status = 'failed' THEN t.failure_message END
                                   ELSE p.failure_message END,
            last_event_at = CASE WHEN ps_payment_moves(p.last_event_at, p.intent_status, t.at, t.intent_status)
                                 THEN t.at ELSE p.last_event_at END,
            version = p.version + CASE WHEN ps_payment_moves(p.last_event_at, p.intent_status, t.at, t.intent_status)
                                       THEN 1 ELSE 0 END,
            -- Money facts only grow; refunds already counted still count.
            captured_minor = greatest(p.captured_minor, coalesce(t.captured, 0)),
            refunded_minor = greatest(p.refunded_minor, coalesce(t.refunded, 0),
                                      least(greatest(p.captured_minor, coalesce(t.captured, 0)),
                                            p.refunds_succeeded_minor)),
            updated_at = now()
        FROM todo t
        WHERE p.gateway_payment_id = t.payment_intent
          -- The batch's intents as an array: the index is probed for exactly
          -- these, whatever the size of payments.
          AND p.gateway_payment_id = ANY (ARRAY(SELECT todo.payment_intent FROM todo))
        -- A lifecycle event that did not move the payment was stale: had it
        -- moved, the row would now carry its time and status.
        RETURNING p.id, p.gateway_payment_id, t.event_id,
                  CASE WHEN t.intent_status IS NULL
                         OR (p.last_event_at = t.at AND p.intent_status = t.intent_status)
                       THEN 'applied' ELSE 'stale' END AS outcome
    ), ins AS (
        INSERT INTO payments (id, gateway, gateway_payment_id, intent_status, gateway_status,
                              amount_minor, currency, captured_minor, refunded_minor, order_id,
                              customer, account, failure_code, failure_message, last_event_at,
                              version)
        SELECT ps_new_id('pay_'), 'stripe', t.payment_intent,
               coalesce(t.intent_status, 'pending'),
               CASE WHEN t.intent_status IS NOT NULL THEN t.gateway_status END,
               CASE WHEN t.intent_status IS NOT NULL THEN coalesce(t.amount, 0) ELSE 0 END,
               t.currency, coalesce(t.captured, 0), coalesce(t.refunded, 0),
               CASE WHEN t.intent_status IS NOT NULL THEN t.order_id END,
               CASE WHEN t.intent_status IS NOT NULL THEN t.customer END,
               t.account,
               CASE WHEN t.intent_status = 'failed' THEN t.failure_code END,
               CASE WHEN t.intent_status = 'failed' THEN t.failure_message END,
               CASE WHEN t.intent_status IS NOT NULL THEN t.at END,
               CASE WHEN t.intent_status IS NOT NULL THEN 1 ELSE 0 END
        FROM todo t LEFT JOIN upd ON upd.gateway_payment_id = t.payment_intent
        WHERE upd.id IS NULL
        RETURNING payments.id, payments.gateway_payment_id
    ), ledger AS (
        INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                                  gateway_transaction_id, source_event_id)
        SELECT pay.id, 'charge', t.captured, t.currency, 'succeeded', t.charge_id, t.event_id
        FROM todo t
        JOIN (SELECT upd.id, upd.gateway_payment_id FROM upd
              UNION ALL SELECT ins.id, ins.gateway_payment_id FROM ins) pay
          ON pay.gateway_payment_id = t.payment_intent
        WHERE t.charge_id IS NOT NULL AND coalesce(t.captured, 0) > 0
        ON CONFLICT (type, gateway_transaction_id) DO NOTHING
    )
    SELECT ev.ord, ev.event_id,
           CASE WHEN fresh.id IS NULL THEN 'duplicate'
                WHEN ev.payment_intent IS NULL THEN 'recorded'
                ELSE coalesce(upd.outcome, 'applied') END
    FROM ev LEFT JOIN fresh ON fresh.id = ev.event_id
            LEFT JOIN upd ON upd.event_id = ev.event_id;

    FOR r IN SELECT * FROM ps_stripe_batch_rows(p_events) b WHERE NOT b.fast ORDER BY b.ord LOOP
        ord := r.ord;
        event_id := r.event_id;
        outcome := ps_apply_stripe_event(r.event_id, r.type, r.account, r.created, r.livemode,
                                         r.message_id, r.payload, r.payment_intent,
                                         r.intent_status, r.gateway_status, r.amount,
                                         r.currency, r.captured, r.refunded, r.charge_id,
                                         r.order_id, r.customer, r.failure_code,
                                         r.failure_message, r.refunds);
        RETURN NEXT;
    END LOOP;
END $$;
