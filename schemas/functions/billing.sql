-- Billing: customers and their open balance, metered usage, threshold
-- invoices, Checkout Sessions that pay the balance, and Stripe's
-- subscriptions and invoices.
--
-- The balance is what a customer owes: usage adds to it, a paid balance
-- session takes its amount off once. Each Stripe object keeps the furthest
-- state its events have shown, by a rank that only grows (and, between
-- states of equal rank, the newest event), so the end state does not depend
-- on the order in which Stripe's events arrive.

-- Checkout Session states, furthest last.
CREATE FUNCTION ps_checkout_rank(state text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE state WHEN 'open' THEN 0 WHEN 'expired' THEN 1 WHEN 'awaiting_payment' THEN 2
                      WHEN 'payment_failed' THEN 3 WHEN 'paid' THEN 4 END
$$;

-- Subscription states; canceled and incomplete_expired are final.
CREATE FUNCTION ps_subscription_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE status WHEN 'incomplete' THEN 0 WHEN 'trialing' THEN 1 WHEN 'active' THEN 2
                       WHEN 'past_due' THEN 3 WHEN 'unpaid' THEN 4 WHEN 'paused' THEN 5
                       WHEN 'incomplete_expired' THEN 9 WHEN 'canceled' THEN 10 ELSE 0 END
$$;

-- Invoice states; paid and void are final.
CREATE FUNCTION ps_invoice_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE status WHEN 'draft' THEN 0 WHEN 'open' THEN 1 WHEN 'uncollectible' THEN 2
                       WHEN 'paid' THEN 3 WHEN 'void' THEN 3 END
$$;

-- What a customer may still put into a new balance session: the balance
-- less the sessions still open or awaiting their payment.
CREATE FUNCTION ps_customer_payable_minor(p_id text) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT c.balance_minor - coalesce((SELECT sum(s.amount_minor) FROM checkout_sessions s
                                       WHERE s.customer_id = c.id AND s.purpose = 'balance'
                                         AND s.state IN ('open', 'awaiting_payment')), 0)
    FROM customers c WHERE c.id = p_id
$$;

-- A customer as the API shows it: the balance, this month's usage by meter,
-- open invoices and recent balance payments.
CREATE FUNCTION ps_customer_json(p_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c.id, 'object', 'customer', 'email', c.email, 'name', c.name,
        'stripe_customer_id', c.stripe_customer_id, 'gateway', c.gateway,
        'balance_minor', c.balance_minor, 'currency', c.currency,
        'payable_minor', greatest(ps_customer_payable_minor(c.id), 0),
        'usage_this_period', jsonb_build_object(
            'start', date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
            'meters', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                               'meter', u.meter, 'quantity', u.quantity, 'amount_minor', u.amount)
                               ORDER BY u.meter), '[]')
                       FROM (SELECT meter, sum(quantity) AS quantity, sum(amount_minor) AS amount
                             FROM usage_records
                             WHERE customer_id = c.id
                               AND occurred_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                             GROUP BY meter) u)),
        'open_invoices', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                  'id', i.id, 'source', i.source, 'status', i.status,
                                  'amount_due_minor', i.amount_due_minor, 'currency', i.currency,
                                  'created_at', i.created_at) ORDER BY i.created_at DESC), '[]')
                          FROM invoices i WHERE i.customer_id = c.id AND i.status = 'open'),
        'recent_payments', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                    'session_id', s.id, 'state', s.state,
                                    'amount_minor', s.amount_minor, 'currency', s.currency,
                                    'created_at', s.created_at) ORDER BY s.created_at DESC), '[]')
                            FROM (SELECT * FROM checkout_sessions
                                  WHERE customer_id = c.id AND purpose = 'balance'
                                  ORDER BY created_at DESC LIMIT 10) s),
        'created_at', c.created_at, 'updated_at', c.updated_at)
    FROM customers c WHERE c.id = p_id
$$;

-- Opens a threshold invoice for customer p_id when its balance reached
-- p_threshold and none is open: one per crossing, however many usage
-- records crossed it.
CREATE FUNCTION ps_threshold_check(p_id text, p_threshold bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_threshold IS NULL OR p_threshold <= 0 THEN
        RETURN;
    END IF;
    INSERT INTO invoices (id, source, customer_id, stripe_customer_id, status, amount_due_minor,
                          currency)
    SELECT ps_new_id('inv_'), 'threshold', c.id, c.stripe_customer_id, 'open', c.balance_minor,
           c.currency
    FROM customers c
    WHERE c.id = p_id AND c.balance_minor >= p_threshold
    ON CONFLICT (customer_id) WHERE source = 'threshold' AND status = 'open' DO NOTHING;
END $$;

-- A paid balance session of p_paid pays toward the customer's open
-- threshold invoice; once paid in full it is settled, and the next crossing
-- opens a new one.
CREATE FUNCTION ps_threshold_settle(p_id text, p_paid bigint) RETURNS void LANGUAGE sql AS $$
    UPDATE invoices SET amount_paid_minor = least(amount_due_minor, amount_paid_minor + p_paid),
                        status = CASE WHEN amount_paid_minor + p_paid >= amount_due_minor
                                      THEN 'paid' ELSE status END,
                        version = version + 1, updated_at = now()
    WHERE customer_id = p_id AND source = 'threshold' AND status = 'open';
$$;

-- Applies a batch of usage records in log order, each once. p_records is a
-- JSON array of {customer, meter, quantity, unit_price_minor, currency,
-- occurred_at (unix seconds), identifier, threshold_minor, message_id} and,
-- for a record made through the API, the command's fields (command_id,
-- type, resource_id, request_sha256, actor). A record for a customer not
-- registered is refused: the command's result says so, and a message
-- straight from an upstream producer fails (and ends as a dead letter).
CREATE FUNCTION ps_apply_usage(p_records jsonb)
RETURNS TABLE (ord bigint, record_id text, outcome text) LANGUAGE plpgsql AS $$
DECLARE
    r        record;
    c        customers;
    v_fresh  boolean;
    v_result jsonb;
BEGIN
    FOR r IN SELECT x.value AS u, x.ord AS n
             FROM jsonb_array_elements(p_records) WITH ORDINALITY AS x(value, ord)
    LOOP
        ord := r.n;
        record_id := (r.u->>'customer') || '/' || (r.u->>'identifier');
        IF r.u ? 'command_id' AND EXISTS (SELECT 1 FROM commands WHERE id = r.u->>'command_id') THEN
            outcome := 'duplicate';
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT * INTO c FROM customers WHERE id = r.u->>'customer' FOR UPDATE;
        IF c.id IS NULL OR c.currency <> r.u->>'currency' THEN
            IF NOT r.u ? 'command_id' THEN
                RAISE EXCEPTION 'usage for %: %', r.u->>'customer',
                    CASE WHEN c.id IS NULL THEN 'no such customer'
                         ELSE 'the customer is billed in ' || c.currency END
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            PERFORM ps_command_record(r.u, 404, ps_error('customer_missing',
                'no customer ' || (r.u->>'customer') || ' in ' || (r.u->>'currency')
                || '; register with POST /api/v1/customers', 'customer'));
            outcome := 'refused';
            RETURN NEXT;
            CONTINUE;
        END IF;
        INSERT INTO usage_records (customer_id, identifier, meter, quantity, unit_price_minor,
                                   amount_minor, currency, occurred_at, message_id,
                                   stripe_identifier, meter_status)
        VALUES (c.id, r.u->>'identifier', r.u->>'meter', (r.u->>'quantity')::bigint,
                (r.u->>'unit_price_minor')::bigint,
                (r.u->>'quantity')::bigint * (r.u->>'unit_price_minor')::bigint, c.currency,
                to_timestamp((r.u->>'occurred_at')::bigint), r.u->>'message_id',
                'psu_' || left(encode(sha256(convert_to(c.id || E'\n' || (r.u->>'identifier'), 'UTF8')), 'hex'), 40),
                CASE WHEN c.gateway = 'stripe' THEN 'pending' ELSE 'local' END)
        ON CONFLICT (customer_id, identifier) DO NOTHING;
        v_fresh := FOUND;
        IF v_fresh THEN
            UPDATE customers SET balance_minor = balance_minor + (r.u->>'quantity')::bigint
                                                 * (r.u->>'unit_price_minor')::bigint,
                                 version = version + 1, updated_at = now()
            WHERE id = c.id;
            PERFORM ps_threshold_check(c.id, (r.u->>'threshold_minor')::bigint);
        END IF;
        IF r.u ? 'command_id' THEN
            SELECT jsonb_build_object('object', 'usage_record', 'customer', u.customer_id,
                                      'identifier', u.identifier, 'meter', u.meter,
                                      'quantity', u.quantity, 'unit_price_minor', u.unit_price_minor,
                                      'amount_minor', u.amount_minor, 'currency', u.currency,
                                      'timestamp', extract(epoch FROM u.occurred_at)::bigint,
                                      'duplicate', NOT v_fresh, 'created_at', u.created_at)
              INTO v_result
              FROM usage_records u WHERE u.customer_id = c.id AND u.identifier = r.u->>'identifier';
            PERFORM ps_command_record(r.u, CASE WHEN v_fresh THEN 201 ELSE 200 END, v_result);
        END IF;
        outcome := CASE WHEN v_fresh THEN 'applied' ELSE 'duplicate' END;
        RETURN NEXT;
    END LOOP;
END $$;

-- customer.create and checkout.create are applied around a call to the
-- gateway, like payment.process (payments.sql): ps_billing_begin checks the
-- rules and returns the call to make, ps_billing_finish records the answer.
-- Both calls carry the command id as Stripe's Idempotency-Key, and nothing
-- is written before the answer: a command delivered again after a crash
-- makes the same call, gets the same customer or session, and records it.
CREATE FUNCTION ps_billing_begin(c jsonb, OUT call jsonb, OUT duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    cu       customers;
    v_amount bigint := (c->'params'->>'amount_minor')::bigint;
    v_open   bigint;
BEGIN
    duplicate := EXISTS (SELECT 1 FROM commands WHERE id = c->>'command_id');
    IF duplicate THEN
        RETURN;
    END IF;
    SELECT * INTO cu FROM customers WHERE id = c->>'resource_id' FOR UPDATE;
    IF c->>'type' = 'customer.create' THEN
        IF cu.id IS NOT NULL THEN
            PERFORM ps_command_record(c, 409, ps_error('customer_exists',
                'you are registered as a customer already; see GET /api/v1/customers/me'));
            RETURN;
        END IF;
        call := jsonb_build_object('kind', 'customer', 'gateway', c->'params'->>'gateway',
                                   'customer_id', c->>'resource_id',
                                   'email', c->'params'->>'email', 'name', c->'params'->>'name');
    ELSIF c->>'type' = 'checkout.create' THEN
        IF cu.id IS NULL THEN
            PERFORM ps_command_record(c, 404, ps_error('customer_missing',
                'register as a customer first with POST /api/v1/customers'));
            RETURN;
        END IF;
        v_open := ps_customer_payable_minor(cu.id);
        IF cu.currency <> c->'params'->>'currency' OR v_amount <= 0 OR v_amount > v_open THEN
            PERFORM ps_command_record(c, 400, ps_error('amount_exceeds_balance',
                'the amount must be above zero and at most the open balance, '
                || greatest(v_open, 0) || ' minor units of ' || cu.currency, 'amount'));
            RETURN;
        END IF;
        call := jsonb_build_object('kind', 'checkout',
                                   'gateway', CASE WHEN (c->'params'->>'sandbox')::boolean
                                                   THEN 'sandbox' ELSE cu.gateway END,
                                   'customer_id', cu.id, 'stripe_customer_id', cu.stripe_customer_id,
                                   'amount_minor', v_amount, 'currency', cu.currency);
    ELSE
        RAISE EXCEPTION 'unknown billing command %', c->>'type'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

-- Records the gateway's answer o to the call of command c: {outcome:
-- succeeded | error, gateway, gateway_customer_id (a customer), session_id,
-- url, expires_at (a session), failure_code, failure_message, http_status}.
CREATE FUNCTION ps_billing_finish(c jsonb, o jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_status integer;
    v_result jsonb;
    v_sid    text := o->>'session_id';
BEGIN
    IF EXISTS (SELECT 1 FROM commands WHERE id = c->>'command_id') THEN
        RETURN NULL;
    END IF;
    IF o->>'outcome' <> 'succeeded' THEN
        v_status := coalesce((o->>'http_status')::integer, 502);
        v_result := jsonb_build_object('error', jsonb_strip_nulls(jsonb_build_object(
            'type', CASE WHEN v_status >= 500 THEN 'api_error' ELSE 'invalid_request_error' END,
            'code', coalesce(o->>'failure_code', 'gateway_error'),
            'message', coalesce(o->>'failure_message', 'the payment gateway refused the request'))));
    ELSIF c->>'type' = 'customer.create' THEN
        INSERT INTO customers (id, email, name, gateway, stripe_customer_id, currency)
        VALUES (c->>'resource_id', c->'params'->>'email', c->'params'->>'name', o->>'gateway',
                o->>'gateway_customer_id', c->'params'->>'currency');
        v_status := 201;
        v_result := ps_customer_json(c->>'resource_id');
    ELSE
        -- Stripe's events about the session may have come first.
        INSERT INTO checkout_sessions (id, purpose, customer_id, stripe_customer_id, gateway, state,
                                       amount_minor, currency, url, command_id)
        SELECT v_sid, 'balance', cu.id, cu.stripe_customer_id, o->>'gateway', 'open',
               (c->'params'->>'amount_minor')::bigint, cu.currency, o->>'url', c->>'command_id'
        FROM customers cu WHERE cu.id = c->>'resource_id'
        ON CONFLICT (id) DO UPDATE SET url = excluded.url, command_id = excluded.command_id,
                                       gateway = excluded.gateway;
        v_status := 200;
        v_result := jsonb_strip_nulls(jsonb_build_object(
            'object', 'checkout_session', 'session_id', v_sid, 'url', o->>'url',
            'amount_minor', (c->'params'->>'amount_minor')::bigint,
            'currency', c->'params'->>'currency', 'gateway', o->>'gateway',
            'expires_at', (o->>'expires_at')::bigint));
    END IF;
    PERFORM ps_command_record(c, v_status, v_result);
    RETURN v_status;
END $$;

-- A Checkout Session event: f is {session_id, state, stripe_status,
-- payment_status, amount, currency, stripe_customer, customer_id, purpose,
-- order_id, payment_intent}. A session paystream did not create is recorded
-- only when it claims nothing (purpose "other"): one that names a balance,
-- a customer or an order is refused, since anyone with a Stripe account can
-- write that metadata. Ours keeps its furthest state, and only for the
-- amount and currency it was made for; the first time it is paid, it
-- lowers its customer's balance, once.
CREATE FUNCTION ps_apply_checkout(f jsonb, p_at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    s        checkout_sessions;
    v_ours   boolean;
BEGIN
    SELECT * INTO s FROM checkout_sessions WHERE id = f->>'session_id' FOR UPDATE;
    IF s.id IS NULL THEN
        IF f->>'purpose' = 'balance' OR f ? 'order_id' OR f ? 'customer_id' THEN
            RETURN 'unknown_session';
        END IF;
        INSERT INTO checkout_sessions (id, purpose, customer_id, stripe_customer_id,
                                       payment_intent, state, stripe_status, payment_status,
                                       amount_minor, currency, last_event_at)
        VALUES (f->>'session_id', 'other',
                (SELECT id FROM customers WHERE stripe_customer_id = f->>'stripe_customer'),
                f->>'stripe_customer', f->>'payment_intent', f->>'state', f->>'stripe_status',
                f->>'payment_status', coalesce((f->>'amount')::bigint, 0), f->>'currency', p_at);
        RETURN 'applied';
    END IF;
    v_ours := s.command_id IS NOT NULL;
    IF v_ours AND f->>'currency' <> s.currency THEN
        RETURN 'currency_mismatch';
    ELSIF v_ours AND (f->>'amount')::bigint <> s.amount_minor THEN
        RETURN 'amount_mismatch';
    END IF;
    UPDATE checkout_sessions SET
        state = CASE WHEN ps_checkout_rank(f->>'state') > ps_checkout_rank(state)
                     THEN f->>'state' ELSE state END,
        stripe_status = CASE WHEN ps_checkout_rank(f->>'state') >= ps_checkout_rank(state)
                             THEN f->>'stripe_status' ELSE stripe_status END,
        payment_status = CASE WHEN ps_checkout_rank(f->>'state') >= ps_checkout_rank(state)
                              THEN f->>'payment_status' ELSE payment_status END,
        amount_minor = CASE WHEN NOT v_ours AND f ? 'amount' THEN (f->>'amount')::bigint
                            ELSE amount_minor END,
        payment_intent = coalesce(payment_intent, f->>'payment_intent'),
        last_event_at = greatest(last_event_at, p_at),
        version = version + 1, updated_at = now()
    WHERE id = s.id
    RETURNING * INTO s;

    IF s.state = 'paid' AND v_ours AND s.purpose = 'balance' AND NOT s.balance_applied THEN
        UPDATE checkout_sessions SET balance_applied = true WHERE id = s.id;
        UPDATE customers SET balance_minor = balance_minor - s.amount_minor,
                             version = version + 1, updated_at = now()
        WHERE id = s.customer_id AND currency = s.currency;
        PERFORM ps_threshold_settle(s.customer_id, s.amount_minor);
    END IF;
    RETURN CASE WHEN s.state = f->>'state' THEN 'applied' ELSE 'stale' END;
END $$;

-- A subscription event: f is {id, status, stripe_customer, price_id,
-- quantity, current_period_start, current_period_end (unix seconds),
-- cancel_at_period_end, canceled_at}. The newest event wins; at the same
-- time the further status; nothing leaves a final status.
CREATE FUNCTION ps_apply_subscription(f jsonb, p_at timestamptz) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s subscriptions;
BEGIN
    INSERT INTO subscriptions AS x (id, customer_id, stripe_customer_id, status, price_id,
                                    quantity, current_period_start, current_period_end,
                                    cancel_at_period_end, canceled_at, last_event_at)
    VALUES (f->>'id', (SELECT id FROM customers WHERE stripe_customer_id = f->>'stripe_customer'),
            f->>'stripe_customer', f->>'status', f->>'price_id', (f->>'quantity')::bigint,
            to_timestamp((f->>'current_period_start')::bigint),
            to_timestamp((f->>'current_period_end')::bigint),
            coalesce((f->>'cancel_at_period_end')::boolean, false),
            to_timestamp((f->>'canceled_at')::bigint), p_at)
    ON CONFLICT (id) DO UPDATE SET
        status = excluded.status, price_id = coalesce(excluded.price_id, x.price_id),
        quantity = coalesce(excluded.quantity, x.quantity),
        current_period_start = coalesce(excluded.current_period_start, x.current_period_start),
        current_period_end = coalesce(excluded.current_period_end, x.current_period_end),
        cancel_at_period_end = excluded.cancel_at_period_end,
        canceled_at = coalesce(excluded.canceled_at, x.canceled_at),
        customer_id = coalesce(x.customer_id, excluded.customer_id),
        last_event_at = excluded.last_event_at, version = x.version + 1, updated_at = now()
    WHERE ps_subscription_rank(x.status) < 9
      AND (x.last_event_at < excluded.last_event_at
           OR (x.last_event_at = excluded.last_event_at
               AND ps_subscription_rank(excluded.status) >= ps_subscription_rank(x.status)))
    RETURNING x.* INTO s;
    RETURN CASE WHEN s.id IS NULL THEN 'stale' ELSE 'applied' END;
END $$;

-- An invoice event: f is {id, status, stripe_customer, subscription,
-- amount_due, amount_paid, currency, number, hosted_invoice_url,
-- attempt_count}. The further status wins, and at the same status the
-- newest event; nothing leaves paid or void.
CREATE FUNCTION ps_apply_invoice(f jsonb, p_at timestamptz) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    i invoices;
BEGIN
    INSERT INTO invoices AS x (id, source, customer_id, stripe_customer_id, subscription_id,
                               status, amount_due_minor, amount_paid_minor, currency, number,
                               hosted_invoice_url, attempt_count, last_event_at)
    VALUES (f->>'id', 'stripe',
            (SELECT id FROM customers WHERE stripe_customer_id = f->>'stripe_customer'),
            f->>'stripe_customer', f->>'subscription', f->>'status',
            coalesce((f->>'amount_due')::bigint, 0), coalesce((f->>'amount_paid')::bigint, 0),
            f->>'currency', f->>'number', f->>'hosted_invoice_url',
            coalesce((f->>'attempt_count')::integer, 0), p_at)
    ON CONFLICT (id) DO UPDATE SET
        status = excluded.status, amount_due_minor = excluded.amount_due_minor,
        amount_paid_minor = greatest(x.amount_paid_minor, excluded.amount_paid_minor),
        currency = coalesce(excluded.currency, x.currency),
        number = coalesce(excluded.number, x.number),
        hosted_invoice_url = coalesce(excluded.hosted_invoice_url, x.hosted_invoice_url),
        attempt_count = greatest(x.attempt_count, excluded.attempt_count),
        subscription_id = coalesce(x.subscription_id, excluded.subscription_id),
        customer_id = coalesce(x.customer_id, excluded.customer_id),
        last_event_at = greatest(x.last_event_at, excluded.last_event_at),
        version = x.version + 1, updated_at = now()
    WHERE x.status NOT IN ('paid', 'void')
      AND (ps_invoice_rank(excluded.status) > ps_invoice_rank(x.status)
           OR (ps_invoice_rank(excluded.status) = ps_invoice_rank(x.status)
               AND x.last_event_at <= excluded.last_event_at))
    RETURNING x.* INTO i;
    RETURN CASE WHEN i.id IS NULL THEN 'stale' ELSE 'applied' END;
END $$;

-- Dashboards: customers, balances, open invoices and usage not yet taken
-- by Stripe, per billing currency.
CREATE VIEW dash_billing AS
    SELECT c.currency, count(*) AS customers, sum(c.balance_minor) AS balance_minor,
           (SELECT count(*) FROM invoices i WHERE i.status = 'open') AS open_invoices,
           (SELECT count(*) FROM usage_records u WHERE u.meter_status = 'pending') AS usage_unreported,
           (SELECT count(*) FROM usage_records u WHERE u.meter_status = 'failed') AS usage_report_failed
    FROM customers c GROUP BY c.currency;
