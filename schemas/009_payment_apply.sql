-- Payments applied a batch at a time, made cheaper; same rules, same
-- results.
--
-- The triggers that follow a payment to its order and its domain events
-- fire once per payment of a batch, and they were most of PostgreSQL's time
-- in a batch of payments of orders. As in 008, the SQL functions they call
-- are PL/pgSQL now: PostgreSQL 15 parses and plans a LANGUAGE sql body
-- every time a calling query starts, and a trigger's queries start once per
-- row.

CREATE OR REPLACE FUNCTION ps_outbox_add(p_source text, p_type text, p_aggregate text, p_data jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (aggregate, type, source, payload)
    VALUES (p_aggregate, p_type, p_source, ps_outbox_payload(p_type, p_aggregate, p_data));
    PERFORM pg_notify('ps_outbox', '');
END $$;

-- The data of a payment's domain events (007), its order read once: whom
-- to write to is the order's customer, else the billing customer the payment
-- was made for. ps_payment_contact, which read the order a second time for
-- that, goes.
CREATE OR REPLACE FUNCTION ps_payment_event_data(p payments) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
            'payment_id', p.id, 'order_id', p.order_id, 'order_number', o.number,
            'gateway', p.gateway, 'gateway_payment_id', p.gateway_payment_id,
            'amount_minor', p.amount_minor, 'currency', p.currency,
            'captured_minor', p.captured_minor, 'refunded_minor', p.refunded_minor,
            'email', coalesce(o.email, c.email),
            'customer_name', coalesce(o.customer_name, c.name))
        FROM (SELECT 1) x
        LEFT JOIN orders o ON o.id = p.order_id
        LEFT JOIN customers c ON p.customer IS NOT NULL
                             AND (c.id = p.customer OR c.stripe_customer_id = p.customer)
        LIMIT 1);
END $$;
DROP FUNCTION ps_payment_contact(payments);

-- An order follows its payments (004): the refund move is tried only when
-- the sums call for it, not once more for every payment that completes.
CREATE OR REPLACE FUNCTION ps_order_follow_payments() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_captured bigint;
    v_refunded bigint;
BEGIN
    SELECT coalesce(sum(captured_minor), 0), coalesce(sum(refunded_minor), 0)
      INTO v_captured, v_refunded
      FROM payments WHERE order_id = NEW.order_id AND intent_status = 'completed';
    IF v_captured > v_refunded THEN
        UPDATE orders SET status = 'paid', version = version + 1, updated_at = now()
         WHERE id = NEW.order_id AND status = 'pending' AND v_captured >= total_minor;
    ELSIF v_captured > 0 THEN
        UPDATE orders SET status = 'refunded', version = version + 1, updated_at = now()
         WHERE id = NEW.order_id AND ps_order_can_move(status, 'refunded');
    END IF;
    RETURN NULL;
END $$;

-- The set-based statements of a batch of Stripe events (002), planned anew
-- for each batch.
CREATE OR REPLACE FUNCTION ps_apply_stripe_batch(p_events jsonb)
RETURNS TABLE (ord bigint, event_id text, outcome text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    -- A payment made through the API learns its payment intent from the
    -- gateway's answer, and Stripe's webhook may come first. The intent names
    -- the payment in metadata.payment_id: the payment adopts the intent, so
    -- the event applies to it instead of making another.
    -- Both statements are dynamic, so planned for every batch with the
    -- tables as they are now: a plan kept for the session was made while
    -- payments was small and kept scanning all of it, batch after batch,
    -- long after it had grown (autovacuum, whose statistics would have
    -- invalidated it, comes too late).
    IF jsonb_path_exists(p_events, '$[*].payment_id') THEN
        EXECUTE $q$
        UPDATE payments p SET gateway_payment_id = b.payment_intent
        FROM ps_stripe_batch_rows($1) b
        WHERE b.payment_id IS NOT NULL AND b.payment_intent IS NOT NULL AND p.id = b.payment_id
          AND p.gateway_payment_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM payments q WHERE q.gateway_payment_id = b.payment_intent)
        $q$ USING p_events;
    END IF;

    RETURN QUERY EXECUTE $q$
    WITH ev AS MATERIALIZED (
        SELECT b.*, to_timestamp(b.created) AS at FROM ps_stripe_batch_rows($1) b
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
            LEFT JOIN upd ON upd.event_id = ev.event_id
    $q$ USING p_events;

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
