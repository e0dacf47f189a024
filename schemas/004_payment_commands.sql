-- Payments of orders through API commands: create, process (a charge at the
-- gateway) and refund.
--
-- A command that calls the gateway is applied in two transactions around
-- the call. ps_gateway_begin checks the rules and records the call in
-- gateway_calls; the worker calls the gateway with an Idempotency-Key made
-- from the command id; ps_gateway_finish records what the gateway said.
-- When the worker dies between the two, the command is delivered again,
-- ps_gateway_begin finds its call and the gateway, asked again with the same
-- key, answers what it answered the first time: nothing is charged or
-- refunded twice.

ALTER TABLE payments ADD COLUMN actor text;          -- the owner, for API payments
ALTER TABLE payments ADD COLUMN payment_method text; -- pm_... of the last charge attempt

CREATE TABLE gateway_calls (
    command_id     text PRIMARY KEY,
    payment_id     text NOT NULL REFERENCES payments (id),
    kind           text NOT NULL CHECK (kind IN ('charge', 'refund')),
    gateway        text NOT NULL,
    amount_minor   bigint NOT NULL CHECK (amount_minor > 0),
    currency       char(3) NOT NULL,
    payment_method text,
    reason         text,
    prior_status   text NOT NULL,                -- the payment's lifecycle state before the call
    finished_at    timestamptz,                  -- NULL while the call is in flight
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gateway_calls_payment ON gateway_calls (payment_id);

-- A payment as the API shows it.
CREATE FUNCTION ps_payment_json(p_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'object', 'payment', 'order_id', p.order_id, 'status', p.status,
        'amount_minor', p.amount_minor, 'currency', p.currency,
        'captured_minor', p.captured_minor, 'refunded_minor', p.refunded_minor,
        'gateway', p.gateway, 'gateway_payment_id', p.gateway_payment_id,
        'gateway_status', p.gateway_status, 'payment_method', p.payment_method,
        'failure_code', p.failure_code, 'failure_message', p.failure_message,
        'created_at', p.created_at, 'updated_at', p.updated_at)
    FROM payments p WHERE p.id = p_id
$$;

-- What is still to pay on an order: its total less what its live payments
-- (not failed, not cancelled) are for.
CREATE FUNCTION ps_order_open_minor(p_order_id text) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT o.total_minor - coalesce((SELECT sum(p.amount_minor) FROM payments p
                                     WHERE p.order_id = o.id
                                       AND p.intent_status IN ('pending', 'processing', 'completed')), 0)
    FROM orders o WHERE o.id = p_order_id
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

-- An order follows its payments: paid once completed payments cover its
-- total, refunded once everything captured went back.
CREATE FUNCTION ps_order_follow_payments() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_captured bigint;
    v_refunded bigint;
BEGIN
    SELECT coalesce(sum(captured_minor), 0), coalesce(sum(refunded_minor), 0)
      INTO v_captured, v_refunded
      FROM payments WHERE order_id = NEW.order_id AND intent_status = 'completed';
    UPDATE orders SET status = 'paid', version = version + 1, updated_at = now()
     WHERE id = NEW.order_id AND status = 'pending' AND v_captured >= total_minor
       AND v_captured > v_refunded;
    UPDATE orders SET status = 'refunded', version = version + 1, updated_at = now()
     WHERE id = NEW.order_id AND ps_order_can_move(status, 'refunded')
       AND v_captured > 0 AND v_refunded >= v_captured;
    RETURN NULL;
END $$;
CREATE TRIGGER payments_move_order AFTER INSERT OR UPDATE OF intent_status, captured_minor, refunded_minor
    ON payments FOR EACH ROW WHEN (NEW.order_id IS NOT NULL)
    EXECUTE FUNCTION ps_order_follow_payments();

-- The payment p_id if p_actor may act on it, locked.
CREATE FUNCTION ps_payment_for(p_id text, p_actor text, p_admin boolean) RETURNS payments
LANGUAGE sql AS $$
    SELECT * FROM payments WHERE id = p_id AND (actor = p_actor OR p_admin) FOR UPDATE
$$;

-- payment.create: a pending payment for the whole open amount of an order.
CREATE FUNCTION ps_payment_create(p_id text, p_actor text, p_admin boolean, p jsonb,
                                  OUT http_status integer, OUT result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    o orders;
    v_open bigint;
BEGIN
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
    INSERT INTO payments (id, order_id, gateway, amount_minor, currency, actor, customer)
    VALUES (p_id, o.id, p->>'gateway', v_open, o.currency, o.actor, p->>'customer');
    http_status := 201;
    result := ps_payment_json(p_id);
END $$;

-- What the worker needs to make call g for payment p.
CREATE FUNCTION ps_gateway_call_json(g gateway_calls, p payments) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('kind', g.kind, 'gateway', g.gateway, 'amount_minor', g.amount_minor,
                              'currency', g.currency, 'payment_method', g.payment_method,
                              'reason', g.reason, 'payment_id', p.id, 'order_id', p.order_id,
                              'gateway_payment_id', p.gateway_payment_id)
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
    p        payments;
    g        gateway_calls;
    v_amount bigint;
    v_status integer;
    v_result jsonb;
BEGIN
    duplicate := EXISTS (SELECT 1 FROM commands WHERE id = v_id);
    IF duplicate THEN
        RETURN;
    END IF;
    p := ps_payment_for(v_pid, c->>'actor', coalesce((c->>'admin')::boolean, false));
    SELECT * INTO g FROM gateway_calls WHERE command_id = v_id;
    IF g.command_id IS NOT NULL THEN
        -- Delivered again after the call began: make the same call again.
        call := ps_gateway_call_json(g, p);
        RETURN;
    END IF;

    IF p.id IS NULL THEN
        v_status := 404;
        v_result := ps_error('resource_missing', 'no such payment: ' || v_pid, 'id');
    ELSIF c->>'type' = 'payment.process' THEN
        IF p.intent_status NOT IN ('pending', 'failed') THEN
            v_status := 409;
            v_result := ps_error('payment_not_processable', 'payment ' || p.id || ' is '
                                 || p.status || '; only a pending or failed payment is processed');
        ELSIF EXISTS (SELECT 1 FROM gateway_calls WHERE payment_id = p.id AND finished_at IS NULL) THEN
            v_status := 409;
            v_result := ps_error('payment_busy', 'payment ' || p.id || ' is being processed');
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
        INSERT INTO commands (id, actor, type, resource_id, request_sha256, message_id,
                              http_status, result)
        VALUES (v_id, c->>'actor', c->>'type', v_pid, c->>'request_sha256', c->>'message_id',
                v_status, v_result);
        PERFORM pg_notify('ps_commands', v_id);
        RETURN;
    END IF;
    INSERT INTO gateway_calls (command_id, payment_id, kind, gateway, amount_minor, currency,
                               payment_method, reason, prior_status)
    VALUES (v_id, p.id, CASE c->>'type' WHEN 'payment.process' THEN 'charge' ELSE 'refund' END,
            p.gateway, v_amount, p.currency, c->'params'->>'payment_method',
            c->'params'->>'reason', p.intent_status)
    RETURNING * INTO g;
    IF g.kind = 'charge' THEN
        UPDATE payments SET intent_status = 'processing', payment_method = g.payment_method,
                            failure_code = NULL, failure_message = NULL,
                            version = version + 1, updated_at = now()
         WHERE id = p.id;
    END IF;
    call := ps_gateway_call_json(g, p);
END $$;

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
            INSERT INTO refunds (id, payment_id, amount_minor, currency, status, reason)
            VALUES (v_txn, p.id, g.amount_minor, g.currency, o->>'outcome', g.reason)
            ON CONFLICT (id) DO NOTHING;
            IF o->>'outcome' = 'succeeded' THEN
                INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                                          gateway_transaction_id)
                VALUES (p.id, 'refund', g.amount_minor, g.currency, 'succeeded', v_txn)
                ON CONFLICT (type, gateway_transaction_id) DO NOTHING;
            END IF;
            UPDATE payments SET
                refunds_succeeded_minor = (SELECT coalesce(sum(amount_minor), 0) FROM refunds
                                           WHERE payment_id = p.id AND status = 'succeeded'),
                updated_at = now(), version = version + 1
             WHERE id = p.id;
            UPDATE payments SET refunded_minor = greatest(refunded_minor,
                                                          least(captured_minor, refunds_succeeded_minor))
             WHERE id = p.id;
            v_status := 200;
            v_result := ps_payment_json(p.id) || jsonb_build_object('refund', jsonb_build_object(
                'id', v_txn, 'amount_minor', g.amount_minor, 'currency', g.currency,
                'reason', g.reason, 'status', o->>'outcome'));
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

-- Applies a batch of commands that need no gateway call (order.*,
-- payment.create) in log order, each once: a command whose id
-- is already in commands is a duplicate and changes nothing. p_commands is a
-- JSON array of {command_id, type, resource_id, request_sha256, actor, admin,
-- message_id, params}. A command the rules refuse (404, 409) is still
-- applied: its result is that error. Every applied command is announced on
-- the ps_commands channel at commit.
CREATE FUNCTION ps_apply_commands(p_commands jsonb)
RETURNS TABLE (ord bigint, command_id text, outcome text) LANGUAGE plpgsql AS $$
DECLARE
    c record;
    r record;
BEGIN
    FOR c IN SELECT * FROM ROWS FROM (jsonb_to_recordset(p_commands)
                 AS (command_id text, type text, resource_id text, request_sha256 text,
                     actor text, admin boolean, message_id text, params jsonb))
             WITH ORDINALITY AS x(command_id, type, resource_id, request_sha256, actor, admin,
                                  message_id, params, ord)
    LOOP
        ord := c.ord;
        command_id := c.command_id;
        IF EXISTS (SELECT 1 FROM commands WHERE id = c.command_id) THEN
            outcome := 'duplicate';
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF c.type LIKE 'order.%' THEN
            r := ps_order_command(c.type, c.resource_id, c.actor, coalesce(c.admin, false), c.params);
        ELSIF c.type = 'payment.create' THEN
            r := ps_payment_create(c.resource_id, c.actor, coalesce(c.admin, false), c.params);
        ELSE
            RAISE EXCEPTION 'unknown command type %', c.type USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO commands (id, actor, type, resource_id, request_sha256, message_id,
                              http_status, result)
        VALUES (c.command_id, c.actor, c.type, c.resource_id, c.request_sha256, c.message_id,
                r.http_status, r.result);
        PERFORM pg_notify('ps_commands', c.command_id);
        outcome := CASE WHEN r.http_status < 300 THEN 'applied' ELSE 'refused' END;
        RETURN NEXT;
    END LOOP;
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
CREATE INDEX payments_by_actor ON payments (actor, created_at DESC, id DESC) WHERE actor IS NOT NULL;

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
        LIMIT p_limit
    )
    SELECT jsonb_build_object('object', 'list', 'data', coalesce(jsonb_agg(jsonb_build_object(
        'id', r.id, 'object', 'transaction', 'payment_id', r.payment_id, 'type', r.type,
        'amount_minor', r.amount_minor, 'currency', r.currency, 'status', r.status,
        'gateway_transaction_id', r.gateway_transaction_id, 'created_at', r.created_at)
        ORDER BY r.created_at DESC, r.id DESC), '[]'))
    FROM rows r
$$;
