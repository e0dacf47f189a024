-- PayPal webhook events (paystream.paypal.events), applied by the payments
-- workers with the payments' state machine and ledger. An event only ever
-- changes a payment paystream made on the paypal gateway, found by its
-- PayPal order or capture, and only with the payment's own amount and
-- currency: a signed event is a fact about PayPal's objects, not a claim
-- on anything else. Each event is applied once (paypal_events is the
-- dedupe) and one older than the payment's newest applied event changes
-- nothing.

-- The payment an event concerns, locked: by its PayPal order, else by the
-- capture a refund gives back from.
CREATE FUNCTION ps_paypal_payment(e jsonb) RETURNS payments LANGUAGE plpgsql AS $$
DECLARE
    p payments;
BEGIN
    IF e->>'order_id' IS NOT NULL THEN
        SELECT * INTO p FROM payments
        WHERE gateway = 'paypal' AND gateway_payment_id = e->>'order_id' FOR UPDATE;
    END IF;
    IF p.id IS NULL AND e->>'capture_id' IS NOT NULL THEN
        SELECT * INTO p FROM payments
        WHERE gateway = 'paypal' AND id = (SELECT t.payment_id FROM transactions t
                                           WHERE t.type = 'charge'
                                             AND t.gateway_transaction_id = e->>'capture_id')
        FOR UPDATE;
    END IF;
    RETURN p;
END $$;

-- What event e ({type, created, order_id, capture_id, refund_id, status,
-- amount_minor, currency}) does to payment p; returns its outcome.
CREATE FUNCTION ps_paypal_effect(e jsonb, p payments) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_at    timestamptz := (e->>'created')::timestamptz;
    v_type  text := e->>'type';
    v_to    text;
    v_amt   bigint := (e->>'amount_minor')::bigint;
BEGIN
    IF p.id IS NULL THEN
        RETURN 'unknown_payment';
    END IF;
    IF e ? 'currency' AND upper(e->>'currency') <> upper(p.currency) THEN
        RETURN 'currency_mismatch';
    END IF;
    IF p.last_event_at IS NOT NULL AND v_at < p.last_event_at THEN
        RETURN 'stale';
    END IF;
    IF v_type = 'PAYMENT.CAPTURE.REFUNDED' THEN
        IF v_amt IS NULL OR v_amt <= 0 OR e->>'refund_id' IS NULL THEN
            RETURN 'recorded';
        END IF;
        INSERT INTO refunds AS r (id, payment_id, amount_minor, currency, status, last_event_at)
        VALUES (e->>'refund_id', p.id, v_amt, p.currency, 'succeeded', v_at)
        ON CONFLICT (id) DO UPDATE SET status = 'succeeded', last_event_at = v_at, updated_at = now()
        WHERE r.payment_id = p.id AND r.status <> 'succeeded';
        INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                                  gateway_transaction_id)
        SELECT p.id, 'refund', r.amount_minor, r.currency, 'succeeded', r.id
        FROM refunds r WHERE r.id = e->>'refund_id' AND r.payment_id = p.id
        ON CONFLICT (type, gateway_transaction_id) DO NOTHING;
        PERFORM ps_payment_refunds_sum(p.id);
        UPDATE payments SET last_event_at = v_at WHERE id = p.id;
        RETURN 'applied';
    END IF;
    v_to := CASE v_type WHEN 'PAYMENT.CAPTURE.COMPLETED' THEN 'completed'
                        WHEN 'PAYMENT.CAPTURE.PENDING' THEN 'processing'
                        WHEN 'PAYMENT.CAPTURE.DENIED' THEN 'failed'
                        WHEN 'PAYMENT.CAPTURE.DECLINED' THEN 'failed' END;
    IF v_type = 'CHECKOUT.ORDER.APPROVED' AND p.intent_status = 'pending' THEN
        UPDATE payments SET gateway_status = 'APPROVED', last_event_at = v_at,
                            version = version + 1, updated_at = now()
         WHERE id = p.id;
        RETURN 'applied';
    ELSIF v_to IS NULL THEN
        RETURN 'recorded';
    ELSIF v_to = 'completed' AND v_amt IS DISTINCT FROM p.amount_minor THEN
        RETURN 'amount_mismatch';
    ELSIF p.intent_status <> v_to AND NOT ps_payment_can_move(p.intent_status, v_to) THEN
        RETURN 'stale';
    END IF;
    UPDATE payments SET
        intent_status = v_to, gateway_status = e->>'status', last_event_at = v_at,
        captured_minor = CASE WHEN v_to = 'completed' THEN greatest(captured_minor, v_amt)
                              ELSE captured_minor END,
        failure_code = CASE WHEN v_to = 'failed' THEN 'capture_' || lower(e->>'status') END,
        failure_message = CASE WHEN v_to = 'failed' THEN 'PayPal did not capture the payment' END,
        next_action = CASE WHEN v_to = 'pending' THEN next_action END,
        version = version + 1, updated_at = now()
     WHERE id = p.id;
    IF v_to = 'completed' AND e->>'capture_id' IS NOT NULL THEN
        INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                                  gateway_transaction_id)
        VALUES (p.id, 'charge', v_amt, p.currency, 'succeeded', e->>'capture_id')
        ON CONFLICT (type, gateway_transaction_id) DO NOTHING;
    END IF;
    RETURN 'applied';
END $$;

-- Applies a batch of PayPal events ({message_id, event_id, ..., payload})
-- in log order, each once. Returns (ord, event_id, outcome, note): a
-- refusal is logged as an alert, as Stripe's are.
CREATE FUNCTION ps_apply_paypal_events(p_events jsonb)
RETURNS TABLE (ord bigint, event_id text, outcome text, note jsonb) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    e jsonb;
    p payments;
BEGIN
    FOR e, ord IN SELECT x.value, x.ordinality FROM jsonb_array_elements(p_events) WITH ORDINALITY x
    LOOP
        event_id := e->>'event_id';
        note := NULL;
        IF EXISTS (SELECT 1 FROM paypal_events v WHERE v.id = e->>'event_id') THEN
            outcome := 'duplicate';
            RETURN NEXT;
            CONTINUE;
        END IF;
        p := ps_paypal_payment(e);
        outcome := ps_paypal_effect(e, p);
        INSERT INTO paypal_events (id, type, created, resource_id, payment_id, outcome, payload)
        VALUES (e->>'event_id', e->>'type', (e->>'created')::timestamptz,
                coalesce(e->>'refund_id', e->>'capture_id', e->>'order_id'), p.id, outcome,
                e->'payload');
        IF outcome IN ('unknown_payment', 'currency_mismatch', 'amount_mismatch') THEN
            note := jsonb_build_object('level', 'warn', 'msg', 'paypal event refused',
                                       'fields', jsonb_build_object(
                                           'alert', outcome, 'event_id', e->>'event_id',
                                           'type', e->>'type', 'payment_id', p.id));
            outcome := 'refused';
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;
