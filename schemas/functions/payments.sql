-- Payments: their state machines, the payment commands (create, and the
-- gateway calls of process and refund), the ledger, the API's views, the
-- domain events of payments and how an order follows its payments.
--
-- A command that calls the gateway is applied in two transactions around
-- the call. ps_gateway_begin checks the rules and records the call in
-- gateway_calls; the worker calls the gateway with an Idempotency-Key made
-- from the command id; ps_gateway_finish records what the gateway said.
-- When the worker dies between the two, the command is delivered again,
-- ps_gateway_begin finds its call and the gateway, asked again with the same
-- key, answers what it answered the first time: nothing is charged or
-- refunded twice.

-- Lifecycle states of a payment and the moves allowed between them. A
-- failed payment may be retried with another method; completed and
-- cancelled are final (refunds are money facts, not lifecycle moves).
CREATE FUNCTION ps_payment_can_move(from_status text, to_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE from_status
        WHEN 'pending'    THEN to_status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')
        WHEN 'processing' THEN to_status IN ('completed', 'failed', 'cancelled')
        WHEN 'failed'     THEN to_status IN ('pending', 'processing', 'completed', 'cancelled')
        ELSE false
    END
$$;

-- Refund states and the moves between them; succeeded, failed and
-- canceled are final.
CREATE FUNCTION ps_refund_can_move(from_status text, to_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE from_status
        WHEN 'pending'         THEN to_status IN ('requires_action', 'succeeded', 'failed', 'canceled')
        WHEN 'requires_action' THEN to_status IN ('pending', 'succeeded', 'failed', 'canceled')
        ELSE false
    END
$$;

-- Keeps transactions append-only.
CREATE FUNCTION ps_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transactions is an append-only ledger: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION ps_ledger_append_only();

-- A payment as the API shows it.
CREATE FUNCTION ps_payment_json(p_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'object', 'payment', 'order_id', p.order_id, 'status', p.status,
        'amount_minor', p.amount_minor, 'currency', p.currency,
        'captured_minor', p.captured_minor, 'refunded_minor', p.refunded_minor,
        'gateway', p.gateway, 'gateway_payment_id', p.gateway_payment_id,
        'gateway_status', p.gateway_status, 'payment_method', p.payment_method,
        'account', p.account, 'next_action', p.next_action,
        'failure_code', p.failure_code, 'failure_message', p.failure_message,
        'created_at', p.created_at, 'updated_at', p.updated_at)
    FROM payments p WHERE p.id = p_id
$$;

-- What may still be refunded of a payment: captured, less refunded, less
-- refunds the gateway has not finished (pending there, or in flight here).
CREATE FUNCTION ps_payment_refundable_minor(p_id text) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT p.captured_minor - p.refunded_minor
           - coalesce((SELECT sum(r.amount_minor) FROM refunds r
                       WHERE r.payment_id = p.id AND r.status IN ('pending', 'requires_action')), 0)
           - coalesce((SELECT sum(g.amount_minor) FROM gateway_calls g
                       WHERE g.payment_id = p.id AND g.kind = 'refund' AND g.finished_at IS NULL), 0)
    FROM payments p WHERE p.id = p_id
$$;

-- The payment p_id if p_actor may act on it, locked.
CREATE FUNCTION ps_payment_for(p_id text, p_actor text, p_admin boolean) RETURNS payments
LANGUAGE sql AS $$
    SELECT * FROM payments WHERE id = p_id AND (actor = p_actor OR p_admin) FOR UPDATE
$$;

-- payment.create: a pending payment for the whole open amount of an order,
-- in its currency, owned by the order's owner, on the gateway the worker
-- chose (p.gateway; p.gateway_refused when the one asked for is not the
-- actor's to use); optionally on behalf of a connected account that the actor may use
-- (ps_account_refusal). An order
-- the inventory rejected takes none. The only place a payment gets an
-- order: no event of Stripe's can claim one.
CREATE FUNCTION ps_payment_create(p_id text, p_actor text, p_admin boolean, p jsonb,
                                  OUT http_status integer, OUT result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    o      orders;
    v_open bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM payments WHERE id = p_id) THEN
        http_status := 409;
        result := ps_key_expired();
        RETURN;
    END IF;
    result := ps_account_refusal(p->>'account', true, p_actor, p_admin);
    IF result IS NOT NULL THEN
        http_status := CASE result->'error'->>'code' WHEN 'account_unknown' THEN 404 ELSE 409 END;
        RETURN;
    END IF;
    IF p ? 'gateway_refused' THEN
        http_status := 409;
        result := ps_error('gateway_unavailable', (p->>'gateway_asked') || ' is not available: '
                           || (p->>'gateway_refused'), 'payment_method');
        RETURN;
    END IF;
    o := ps_order_for(p->>'order_id', p_actor, p_admin);
    IF o.id IS NULL THEN
        http_status := 404;
        result := ps_error('resource_missing', 'no such order: ' || (p->>'order_id'), 'order_id');
        RETURN;
    END IF;
    IF o.status <> 'pending' THEN
        http_status := 409;
        result := ps_error('order_not_pending', 'order ' || o.id || ' is ' || o.status
                           || '; only a pending order takes a payment', 'order_id');
        RETURN;
    END IF;
    IF ps_order_stock(p->>'order_id') = 'rejected_out_of_stock' THEN
        http_status := 409;
        result := ps_error('order_out_of_stock', 'order ' || (p->>'order_id')
                           || ' asks for more than is in stock; it takes no payment', 'order_id');
        RETURN;
    END IF;
    IF o.currency <> upper(p->>'currency') THEN
        http_status := 400;
        result := ps_error('currency_mismatch', 'the order is in ' || o.currency, 'currency');
        RETURN;
    END IF;
    v_open := ps_order_open_minor(o.id);
    IF (p->>'amount_minor')::bigint <> v_open THEN
        http_status := 400;
        result := ps_error('amount_mismatch', 'the amount must equal the order''s open amount, '
                           || v_open || ' minor units of ' || o.currency, 'amount');
        RETURN;
    END IF;
    INSERT INTO payments (id, order_id, gateway, amount_minor, currency, actor, customer, account)
    VALUES (p_id, o.id, p->>'gateway', v_open, o.currency, o.actor, p->>'customer',
            p->>'account');
    http_status := 201;
    result := ps_payment_json(p_id);
END $$;

-- What the worker needs to make call g for payment p (Stripe-Account
-- from its account). A refund's description stays in paystream: Stripe's
-- refunds take only their three reasons.
-- capture_id is the charge that a refund gives back from (PayPal refunds a
-- capture, not an order); description the refund's reason in the caller's
-- words, for a gateway that takes it.
CREATE FUNCTION ps_gateway_call_json(g gateway_calls, p payments) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('kind', g.kind, 'gateway', g.gateway, 'amount_minor', g.amount_minor,
                              'currency', g.currency, 'payment_method', g.payment_method,
                              'reason', g.reason, 'description', g.description,
                              'payment_id', p.id, 'order_id', p.order_id,
                              'gateway_payment_id', p.gateway_payment_id, 'account', p.account,
                              'next_action', p.next_action,
                              'capture_id', (SELECT t.gateway_transaction_id FROM transactions t
                                             WHERE t.payment_id = p.id AND t.type = 'charge'
                                               AND t.status = 'succeeded'
                                             ORDER BY t.id DESC LIMIT 1))
$$;

-- Starts a command that calls the gateway (payment.process or
-- payment.refund), with the rules checked under the payment's lock.
-- Returns either the call to make (ps_gateway_call_json) or, when the rules
-- refuse it, the command is recorded as finished and call is NULL.
CREATE FUNCTION ps_gateway_begin(c jsonb, OUT call jsonb, OUT duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_id     text := c->>'command_id';
    v_pid    text := c->>'resource_id';
    v_admin  boolean := coalesce((c->>'admin')::boolean, false);
    v_charge boolean := c->>'type' = 'payment.process';
    p        payments;
    g        gateway_calls;
    v_amount bigint;
    v_status integer;
    v_result jsonb;
    v_order_status text;
BEGIN
    duplicate := EXISTS (SELECT 1 FROM commands WHERE id = v_id);
    IF duplicate THEN
        RETURN;
    END IF;
    p := ps_payment_for(v_pid, c->>'actor', v_admin);
    SELECT * INTO g FROM gateway_calls WHERE command_id = v_id;
    IF g.command_id IS NOT NULL AND g.finished_at IS NOT NULL THEN
        -- Finished, and its result expired: the gateway keeps an
        -- idempotency key only so long, so the call is never made again.
        PERFORM ps_command_record(c, 409, ps_key_expired());
        RETURN;
    ELSIF g.command_id IS NOT NULL THEN
        -- Delivered again after the call began: make the same call again.
        call := ps_gateway_call_json(g, p);
        RETURN;
    END IF;

    -- On behalf of a connected account, a charge needs the actor's link
    -- still; a refund, which gives money back, only the account being active.
    v_result := ps_account_refusal(p.account, v_charge, c->>'actor', v_admin OR NOT v_charge);
    IF v_result IS NOT NULL THEN
        v_status := CASE v_result->'error'->>'code' WHEN 'account_unknown' THEN 404 ELSE 409 END;
    ELSIF p.id IS NULL THEN
        v_status := 404;
        v_result := ps_error('resource_missing', 'no such payment: ' || v_pid, 'id');
    ELSIF c->>'type' = 'payment.process' THEN
        SELECT o.status INTO v_order_status FROM orders o WHERE o.id = p.order_id FOR SHARE;
        IF p.intent_status NOT IN ('pending', 'failed') THEN
            v_status := 409;
            v_result := ps_error('payment_not_processable', 'payment ' || p.id || ' is '
                                 || p.status || '; only a pending or failed payment is processed');
        ELSIF EXISTS (SELECT 1 FROM gateway_calls WHERE payment_id = p.id AND finished_at IS NULL) THEN
            v_status := 409;
            v_result := ps_error('payment_busy', 'payment ' || p.id || ' is being processed');
        ELSIF p.order_id IS NOT NULL AND v_order_status <> 'pending' THEN
            -- Held (FOR SHARE) until this commits: a sweep cannot cancel
            -- or expire the order under a charge that has begun.
            v_status := 409;
            v_result := ps_error('order_not_pending', 'order ' || p.order_id || ' is '
                                 || v_order_status || '; only a pending order takes a payment',
                                 'order_id');
        ELSIF p.order_id IS NOT NULL AND ps_order_stock(p.order_id) = 'rejected_out_of_stock' THEN
            v_status := 409;
            v_result := ps_error('order_out_of_stock', 'order ' || p.order_id
                                 || ' asks for more than is in stock; it takes no payment',
                                 'order_id');
        ELSE
            v_amount := p.amount_minor;
        END IF;
    ELSIF c->>'type' = 'payment.refund' THEN
        v_amount := coalesce((c->'params'->>'amount_minor')::bigint,
                             ps_payment_refundable_minor(p.id));
        IF p.intent_status <> 'completed' THEN
            v_status := 409;
            v_result := ps_error('payment_not_refundable', 'payment ' || p.id || ' is '
                                 || p.status || '; only a completed payment is refunded');
            v_amount := NULL;
        ELSIF v_amount <= 0 OR v_amount > ps_payment_refundable_minor(p.id) THEN
            v_status := 409;
            v_result := ps_error('refund_exceeds_captured',
                                 'at most ' || greatest(ps_payment_refundable_minor(p.id), 0)
                                 || ' minor units of ' || p.currency || ' can still be refunded',
                                 'amount');
            v_amount := NULL;
        END IF;
    ELSE
        RAISE EXCEPTION 'unknown gateway command %', c->>'type'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF v_amount IS NULL THEN
        PERFORM ps_command_record(c, v_status, v_result);
        RETURN;
    END IF;
    INSERT INTO gateway_calls (command_id, payment_id, kind, gateway, amount_minor, currency,
                               payment_method, reason, description, prior_status)
    VALUES (v_id, p.id, CASE c->>'type' WHEN 'payment.process' THEN 'charge' ELSE 'refund' END,
            p.gateway, v_amount, p.currency, c->'params'->>'payment_method',
            c->'params'->>'reason', c->'params'->>'description', p.intent_status)
    RETURNING * INTO g;
    IF g.kind = 'charge' THEN
        UPDATE payments SET intent_status = 'processing', payment_method = g.payment_method,
                            failure_code = NULL, failure_message = NULL,
                            version = version + 1, updated_at = now()
         WHERE id = p.id;
    END IF;
    call := ps_gateway_call_json(g, p);
END $$;

-- Brings payment p_id's refunded amounts up to its succeeded refunds:
-- refunded_minor only grows, and never past what was captured.
CREATE FUNCTION ps_payment_refunds_sum(p_id text) RETURNS void LANGUAGE sql AS $$
    UPDATE payments SET
        refunds_succeeded_minor = (SELECT coalesce(sum(amount_minor), 0) FROM refunds
                                   WHERE payment_id = p_id AND status = 'succeeded'),
        updated_at = now(), version = version + 1
     WHERE id = p_id;
    UPDATE payments SET refunded_minor = greatest(refunded_minor,
                                                  least(captured_minor, refunds_succeeded_minor))
     WHERE id = p_id;
$$;

-- Records the gateway's answer to the call of command c. o is {outcome:
-- succeeded | processing | requires_action | pending (a refund) | failed |
-- error, gateway_payment_id,
-- gateway_status, transaction_id (ch_ or re_), failure_code,
-- failure_message, http_status (for error)}. A gateway error (the request
-- was refused, nothing happened) leaves the payment as it was before the
-- call. Returns the HTTP status of the command.
CREATE FUNCTION ps_gateway_finish(c jsonb, o jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id     text := c->>'command_id';
    g        gateway_calls;
    p        payments;
    v_status integer;
    v_result jsonb;
    v_txn    text := o->>'transaction_id';
    v_state  text;
    v_from   text;
BEGIN
    SELECT * INTO g FROM gateway_calls WHERE command_id = v_id FOR UPDATE;
    IF g.finished_at IS NOT NULL OR EXISTS (SELECT 1 FROM commands WHERE id = v_id) THEN
        RETURN NULL; -- finished before
    END IF;
    SELECT * INTO p FROM payments WHERE id = g.payment_id FOR UPDATE;
    UPDATE gateway_calls SET finished_at = now() WHERE command_id = v_id;

    IF o->>'outcome' = 'error' THEN
        IF g.kind = 'charge' THEN
            UPDATE payments SET intent_status = g.prior_status, updated_at = now()
             WHERE id = p.id AND intent_status = 'processing';
        END IF;
        v_status := coalesce((o->>'http_status')::integer, 502);
        v_result := jsonb_build_object('error', jsonb_strip_nulls(jsonb_build_object(
            'type', CASE WHEN v_status >= 500 THEN 'api_error' ELSE 'invalid_request_error' END,
            'code', coalesce(o->>'failure_code', 'gateway_error'),
            'message', coalesce(o->>'failure_message', 'the payment gateway refused the request'))));
    ELSIF g.kind = 'charge' THEN
        -- The answer moves the payment along the state machine from where it
        -- was before the call ('processing' was only ours while the call was
        -- made), unless Stripe's webhooks for this intent moved it on already.
        v_state := CASE o->>'outcome' WHEN 'succeeded' THEN 'completed'
                                      WHEN 'failed' THEN 'failed'
                                      WHEN 'processing' THEN 'processing'
                                      ELSE 'pending' END;
        v_from := CASE WHEN p.intent_status = 'processing' THEN g.prior_status ELSE p.intent_status END;
        IF v_from <> v_state AND NOT ps_payment_can_move(v_from, v_state) THEN
            v_state := p.intent_status;
        END IF;
        UPDATE payments SET
            gateway_payment_id = coalesce(o->>'gateway_payment_id', gateway_payment_id),
            gateway_status = o->>'gateway_status',
            intent_status = v_state,
            captured_minor = CASE WHEN o->>'outcome' = 'succeeded'
                                  THEN greatest(captured_minor, g.amount_minor) ELSE captured_minor END,
            failure_code = o->>'failure_code', failure_message = o->>'failure_message',
            next_action = CASE WHEN v_state = 'pending' THEN o->'next_action' END,
            version = version + 1, updated_at = now()
         WHERE id = p.id;
        IF o->>'outcome' = 'succeeded' AND v_txn IS NOT NULL THEN
            INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                                      gateway_transaction_id)
            VALUES (p.id, 'charge', g.amount_minor, g.currency, 'succeeded', v_txn)
            ON CONFLICT (type, gateway_transaction_id) DO NOTHING;
        END IF;
        v_status := 200;
        v_result := ps_payment_json(p.id);
    ELSE
        IF o->>'outcome' IN ('succeeded', 'pending') THEN
            -- The webhook of the same refund may have come first: it keys on
            -- the id too. A pending refund reaches the ledger when Stripe's
            -- refund.updated says it succeeded (ps_apply_refunds).
            INSERT INTO refunds (id, payment_id, amount_minor, currency, status, reason,
                                 description)
            VALUES (v_txn, p.id, g.amount_minor, g.currency, o->>'outcome', g.reason,
                    g.description)
            ON CONFLICT (id) DO NOTHING;
            IF o->>'outcome' = 'succeeded' THEN
                INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                                          gateway_transaction_id)
                VALUES (p.id, 'refund', g.amount_minor, g.currency, 'succeeded', v_txn)
                ON CONFLICT (type, gateway_transaction_id) DO NOTHING;
            END IF;
            PERFORM ps_payment_refunds_sum(p.id);
            v_status := 200;
            v_result := ps_payment_json(p.id) || jsonb_build_object('refund', jsonb_build_object(
                'id', v_txn, 'amount_minor', g.amount_minor, 'currency', g.currency,
                'reason', g.reason, 'description', g.description, 'status', o->>'outcome'));
        ELSE
            v_status := 402;
            v_result := jsonb_build_object('error', jsonb_strip_nulls(jsonb_build_object(
                'type', 'card_error', 'code', coalesce(o->>'failure_code', 'refund_failed'),
                'message', coalesce(o->>'failure_message', 'the gateway did not refund'))));
        END IF;
    END IF;
    INSERT INTO commands (id, actor, type, resource_id, request_sha256, message_id,
                          http_status, result)
    VALUES (v_id, c->>'actor', c->>'type', c->>'resource_id', c->>'request_sha256',
            c->>'message_id', v_status, v_result);
    PERFORM pg_notify('ps_commands', v_id);
    RETURN v_status;
END $$;

-- One page of the payments p_actor may see, newest first, optionally of one
-- order: {"object":"list","data":[...],"has_more":bool}.
CREATE FUNCTION ps_payments_page(p_actor text, p_admin boolean, p_order_id text, p_after text,
                                 p_limit integer) RETURNS jsonb LANGUAGE sql STABLE AS $$
    WITH cursor_row AS (
        SELECT a.created_at, a.id FROM payments a
        WHERE a.id = p_after AND (a.actor = p_actor OR p_admin)
    ), page AS (
        SELECT p.id, p.created_at FROM payments p
        WHERE (p.actor = p_actor OR (p_admin AND p.actor IS NOT NULL))
          AND (p_order_id IS NULL OR p.order_id = p_order_id)
          AND (p_after IS NULL
               OR (p.created_at, p.id) < (SELECT c.created_at, c.id FROM cursor_row c))
        ORDER BY p.created_at DESC, p.id DESC
        LIMIT p_limit + 1
    ), shown AS (
        SELECT * FROM page ORDER BY created_at DESC, id DESC LIMIT p_limit
    )
    SELECT jsonb_build_object(
        'object', 'list',
        'data', coalesce((SELECT jsonb_agg(ps_payment_json(s.id) ORDER BY s.created_at DESC, s.id DESC)
                          FROM shown s), '[]'),
        'has_more', (SELECT count(*) FROM page) > p_limit)
$$;

-- Ledger rows of the payments p_actor may see, of one payment or all.
CREATE FUNCTION ps_transactions_page(p_actor text, p_admin boolean, p_payment_id text,
                                     p_id text, p_limit integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH rows AS (
        SELECT t.* FROM transactions t JOIN payments p ON p.id = t.payment_id
        WHERE (p.actor = p_actor OR (p_admin AND p.actor IS NOT NULL))
          AND (p_payment_id IS NULL OR t.payment_id = p_payment_id)
          AND (p_id IS NULL OR t.id = p_id)
        ORDER BY t.created_at DESC, t.id DESC
        LIMIT p_limit + 1
    ), shown AS (
        SELECT * FROM rows ORDER BY created_at DESC, id DESC LIMIT p_limit
    )
    SELECT jsonb_build_object(
        'object', 'list',
        'data', coalesce((SELECT jsonb_agg(jsonb_build_object(
                              'id', r.id, 'object', 'transaction', 'payment_id', r.payment_id,
                              'type', r.type, 'amount_minor', r.amount_minor,
                              'currency', r.currency, 'status', r.status,
                              'gateway_transaction_id', r.gateway_transaction_id,
                              'created_at', r.created_at)
                              ORDER BY r.created_at DESC, r.id DESC) FROM shown r), '[]'),
        'has_more', (SELECT count(*) FROM rows) > p_limit)
$$;

-- An order follows its payments: only its own (made through paystream:
-- they have an actor) and only in its currency count toward paid and
-- refunded.
CREATE FUNCTION ps_order_follow_payments() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_captured bigint;
    v_refunded bigint;
BEGIN
    SELECT coalesce(sum(captured_minor), 0), coalesce(sum(refunded_minor), 0)
      INTO v_captured, v_refunded
      FROM payments
     WHERE order_id = NEW.order_id AND intent_status = 'completed' AND actor IS NOT NULL
       AND currency = (SELECT o.currency FROM orders o WHERE o.id = NEW.order_id);
    IF v_captured > v_refunded THEN
        UPDATE orders SET status = 'paid', version = version + 1, updated_at = now()
         WHERE id = NEW.order_id AND status = 'pending' AND v_captured >= total_minor;
    ELSIF v_captured > 0 THEN
        UPDATE orders SET status = 'refunded', version = version + 1, updated_at = now()
         WHERE id = NEW.order_id AND ps_order_can_move(status, 'refunded');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER payments_move_order AFTER INSERT OR UPDATE OF intent_status, captured_minor, refunded_minor
    ON payments FOR EACH ROW WHEN (NEW.order_id IS NOT NULL)
    EXECUTE FUNCTION ps_order_follow_payments();

-- The data of a payment's domain events, its order read once: whom to
-- write to is the order's customer, else the billing customer the payment
-- was made for. PL/pgSQL, like the triggers' other functions: a trigger's
-- queries start once per row, and PostgreSQL parses and plans a LANGUAGE sql
-- body every time a calling query starts.
CREATE FUNCTION ps_payment_event_data(p payments) RETURNS jsonb
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

-- payment.failed, payment.refunded (each time more went back) and
-- checkout.voucher_issued (a delayed method's voucher, e.g. OXXO).
CREATE FUNCTION ps_payment_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_old_refunded bigint := CASE WHEN TG_OP = 'UPDATE' THEN OLD.refunded_minor ELSE 0 END;
    v_data jsonb;
BEGIN
    IF NEW.intent_status = 'failed'
       AND (TG_OP = 'INSERT' OR OLD.intent_status <> 'failed') THEN
        v_data := ps_payment_event_data(NEW) || jsonb_build_object(
            'failure_code', NEW.failure_code, 'failure_message', NEW.failure_message);
        PERFORM ps_outbox_add('payments', 'payment.failed', coalesce(NEW.order_id, NEW.id), v_data);
    END IF;
    IF NEW.refunded_minor > v_old_refunded THEN
        v_data := ps_payment_event_data(NEW) || jsonb_build_object(
            'amount_refunded_minor', NEW.refunded_minor - v_old_refunded,
            'fully_refunded', NEW.refunded_minor >= NEW.captured_minor);
        PERFORM ps_outbox_add('payments', 'payment.refunded', coalesce(NEW.order_id, NEW.id), v_data);
    END IF;
    IF NEW.voucher IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.voucher IS NULL) THEN
        v_data := ps_payment_event_data(NEW) || jsonb_build_object('voucher', NEW.voucher);
        PERFORM ps_outbox_add('payments', 'checkout.voucher_issued', coalesce(NEW.order_id, NEW.id),
                              v_data);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER payments_events AFTER INSERT OR UPDATE OF intent_status, refunded_minor, voucher
    ON payments FOR EACH ROW
    WHEN (NEW.intent_status = 'failed' OR NEW.refunded_minor > 0 OR NEW.voucher IS NOT NULL)
    EXECUTE FUNCTION ps_payment_events();

-- Dashboards: payments by status and currency.
CREATE VIEW dash_payments AS
    SELECT status, currency, count(*) AS payments, sum(amount_minor) AS amount_minor,
           sum(captured_minor) AS captured_minor, sum(refunded_minor) AS refunded_minor
    FROM payments GROUP BY status, currency;

-- Dashboards: every payment whose ledger does not balance with its facts
-- (should stay empty).
CREATE VIEW dash_ledger_mismatches AS
    SELECT p.id, p.captured_minor - p.refunded_minor AS expected_net_minor,
           coalesce(sum(CASE t.type WHEN 'charge' THEN t.amount_minor
                                    WHEN 'refund' THEN -t.amount_minor ELSE 0 END), 0) AS ledger_net_minor
    FROM payments p LEFT JOIN transactions t ON t.payment_id = p.id
    GROUP BY p.id, p.captured_minor, p.refunded_minor
    HAVING p.captured_minor - p.refunded_minor <>
           coalesce(sum(CASE t.type WHEN 'charge' THEN t.amount_minor
                                    WHEN 'refund' THEN -t.amount_minor ELSE 0 END), 0);

-- A dead letter's bytes as text, or NULL where they are not UTF-8 (or hold a
-- NUL): a message is dead-lettered as it came, so it may be neither, and
-- showing it must not fail because of the very fault that refused it.
CREATE FUNCTION ps_bytes_as_text(b bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN convert_from(b, 'UTF8');
EXCEPTION WHEN character_not_in_repertoire THEN
    RETURN NULL;
END $$;

-- Dashboards: dead letters by topic.
CREATE VIEW dash_dead_letters AS
    SELECT topic, count(*) AS messages, max(created_at) AS latest FROM dead_letters GROUP BY topic;
