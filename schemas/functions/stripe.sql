-- Stripe's events: what a verified event may change, and applying a poll
-- batch of them exactly once in effect.

-- One element of a batch of Stripe events (see ps_stripe_batch_rows),
-- without its payload: statements that sort, hash and keep these rows would
-- copy 1.4-3 KB of JSON each time. The payload is taken from the batch's
-- payloads when its row is written.
CREATE TYPE ps_stripe_event_row AS (
    ord bigint,
    event_id text, type text,
    account text,           -- the connected account a Connect event speaks for
    connect boolean,        -- came to the Connect endpoint
    refusal text,           -- decided before the database: livemode_mismatch
    billing boolean,        -- carries billing facts (a session, subscription, invoice)
    created bigint, livemode boolean, message_id text,
    payment_intent text, intent_status text, gateway_status text,
    amount bigint, currency text, captured bigint, refunded bigint,
    charge_id text, customer text, failure_code text, failure_message text,
    refunds jsonb,
    payment_id text         -- metadata.payment_id: the payment paystream made the intent for
);

-- The events of a batch as rows, in log order (ord from 1). p_events is a
-- JSON array of objects whose keys are the row's fields (absent ones are
-- NULL; billing is the billing facts object itself). The payloads come
-- apart, as text (p_payloads, element ord): 2 KB parsed on its own costs
-- PostgreSQL a third of what it costs inside a batch's 1 MB of JSON.
CREATE FUNCTION ps_stripe_batch_rows(p_events jsonb) RETURNS SETOF ps_stripe_event_row
LANGUAGE sql STABLE AS $$
    SELECT e.ord, e.event_id, e.type, e.account, coalesce(e.connect, false), e.refusal,
           e.billing IS NOT NULL, e.created, coalesce(e.livemode, false), e.message_id,
           e.payment_intent, e.intent_status, e.gateway_status, e.amount,
           e.currency, e.captured, e.refunded, e.charge_id, e.customer, e.failure_code,
           e.failure_message, e.refunds, e.payment_id
    FROM ROWS FROM (jsonb_to_recordset(p_events) AS (
            event_id text, type text, account text, connect boolean, refusal text,
            billing jsonb, created bigint, livemode boolean, message_id text,
            payment_intent text, intent_status text, gateway_status text, amount bigint,
            currency text, captured bigint, refunded bigint, charge_id text, customer text,
            failure_code text, failure_message text, refunds jsonb, payment_id text))
         WITH ORDINALITY AS e(event_id, type, account, connect, refusal, billing, created,
            livemode, message_id, payment_intent, intent_status, gateway_status,
            amount, currency, captured, refunded, charge_id, customer, failure_code,
            failure_message, refunds, payment_id, ord)
$$;

-- Whether an event announcing lifecycle state to_status, created at, may move
-- a payment that is in from_status since last_at (the rule of
-- ps_apply_stripe_event).
CREATE FUNCTION ps_payment_moves(last_at timestamptz, from_status text, at timestamptz,
                                 to_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_status IS NOT NULL
       AND (last_at IS NULL OR last_at <= at)
       AND (from_status = to_status OR ps_payment_can_move(from_status, to_status))
$$;

-- Why event e must change nothing, or NULL when it may apply. p is the
-- payment its intent names, else (an event of the platform) the payment
-- without an intent that its metadata.payment_id names, else NULL. The
-- sender owns a payment when the payment's account is the event's (NULL for
-- the platform); a Connect event owns no payment paystream did not make.
CREATE FUNCTION ps_stripe_refusal(e ps_stripe_event_row, p payments) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(e.refusal, CASE
        WHEN e.connect AND (e.account IS NULL OR e.billing) THEN 'account_mismatch'
        WHEN e.payment_intent IS NULL THEN NULL
        WHEN p.id IS NULL THEN CASE WHEN e.connect THEN 'unknown_payment' END
        WHEN p.account IS DISTINCT FROM e.account THEN 'account_mismatch'
        WHEN e.currency <> p.currency THEN 'currency_mismatch'
        WHEN p.actor IS NOT NULL AND e.amount <> p.amount_minor THEN 'amount_mismatch'
    END)
$$;

-- 'refund_mismatch' when event e lists a refund that paystream holds for
-- another payment than p (the one it is about; no id: a new one), else
-- NULL. Stripe's refund ids are unique: such an event is not about its own
-- refunds, and must move none of them. PL/pgSQL: its query is planned once
-- per session; as LANGUAGE sql (a query, which PostgreSQL does not inline)
-- it was parsed and planned again in every batch that called it.
CREATE FUNCTION ps_stripe_refunds_refusal(e ps_stripe_event_row, p payments) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF e.payment_intent IS NOT NULL
       AND EXISTS (SELECT 1 FROM jsonb_to_recordset(e.refunds) AS x(id text)
                   JOIN refunds r ON r.id = x.id
                   WHERE r.payment_id IS DISTINCT FROM p.id) THEN
        RETURN 'refund_mismatch';
    END IF;
    RETURN NULL;
END $$;

-- The log line of an event that changed nothing for a reason of its own:
-- a warning with "alert" naming the reason, but for an event of the other
-- mode, which Stripe sends a live Connect endpoint as a matter of course.
-- STABLE, as jsonb_build_object is: PostgreSQL then inlines it, and most
-- outcomes never extract the event.
CREATE FUNCTION ps_stripe_note(e jsonb, p_outcome text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_outcome IS NULL OR p_outcome IN ('applied', 'stale', 'duplicate', 'recorded') THEN NULL
        WHEN p_outcome = 'livemode_mismatch' THEN jsonb_strip_nulls(jsonb_build_object(
            'level', 'info', 'msg', 'stripe event of the other mode recorded; it changed nothing',
            'event_id', e->>'event_id', 'type', e->>'type', 'account', e->>'account'))
        ELSE jsonb_strip_nulls(jsonb_build_object(
            'level', 'warn', 'msg', 'stripe event refused; it changed nothing', 'alert', p_outcome,
            'event_id', e->>'event_id', 'type', e->>'type', 'account', e->>'account',
            'payment_intent', e->>'payment_intent', 'payment_id', e->>'payment_id',
            'amount', e->>'amount', 'currency', e->>'currency'))
    END
$$;

-- Records the refunds of one event (a JSON array of {id, amount, currency,
-- status, reason}); a refund moves only along its state machine and only
-- for an event at least as new. A succeeded refund is appended to the
-- ledger once. Returns the payment's sum of succeeded refunds.
CREATE FUNCTION ps_apply_refunds(p_payment_id text, p_event_id text, p_at timestamptz,
                                 p_refunds jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_sum bigint;
BEGIN
    FOR r IN SELECT * FROM jsonb_to_recordset(p_refunds)
             AS x(id text, amount bigint, currency text, status text, reason text)
    LOOP
        INSERT INTO refunds (id, payment_id, amount_minor, currency, status, reason, last_event_at)
        VALUES (r.id, p_payment_id, r.amount, r.currency, r.status, r.reason, p_at)
        ON CONFLICT (id) DO UPDATE SET
            status = excluded.status, reason = coalesce(excluded.reason, refunds.reason),
            last_event_at = excluded.last_event_at, updated_at = now()
        WHERE refunds.last_event_at <= excluded.last_event_at
          AND ps_refund_can_move(refunds.status, excluded.status);
        -- The refund's stored status, not the event's, decides: a stale
        -- 'succeeded' after 'failed' must not reach the ledger.
        IF EXISTS (SELECT 1 FROM refunds WHERE id = r.id AND status = 'succeeded') THEN
            INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                                      gateway_transaction_id, source_event_id)
            VALUES (p_payment_id, 'refund', r.amount, r.currency, 'succeeded', r.id, p_event_id)
            ON CONFLICT (type, gateway_transaction_id) DO NOTHING;
        END IF;
    END LOOP;
    SELECT coalesce(sum(amount_minor), 0) INTO v_sum FROM refunds
     WHERE payment_id = p_payment_id AND status = 'succeeded';
    RETURN v_sum;
END $$;

-- The payment that event e (which names a payment intent) is about, locked:
-- the one with its intent, else (an event of the platform) the payment
-- without an intent that its metadata.payment_id names; all NULL if none.
CREATE FUNCTION ps_stripe_payment(e ps_stripe_event_row) RETURNS payments
LANGUAGE plpgsql AS $$
DECLARE
    p payments;
BEGIN
    SELECT * INTO p FROM payments WHERE gateway_payment_id = e.payment_intent FOR UPDATE;
    IF NOT FOUND AND e.payment_id IS NOT NULL AND NOT e.connect THEN
        SELECT * INTO p FROM payments
        WHERE id = e.payment_id AND gateway_payment_id IS NULL FOR UPDATE;
    END IF;
    RETURN p;
END $$;

-- Payment p after event e, which may change it (ps_stripe_refusal found no
-- reason not to), in memory: a new payment if p has no id, the intent
-- adopted, the lifecycle moved if the state machine and the event's age
-- allow (the version counts the moves: an event of a lifecycle state that
-- did not move it was stale), and the money facts, which only grow.
CREATE FUNCTION ps_stripe_fold(p payments, e ps_stripe_event_row) RETURNS payments
LANGUAGE plpgsql AS $$
DECLARE
    v_at timestamptz := to_timestamp(e.created);
BEGIN
    IF p.id IS NULL THEN
        p.id := ps_new_id('pay_');
        p.gateway := 'stripe';
        p.intent_status := 'pending';
        p.amount_minor := 0;
        p.currency := e.currency;
        p.captured_minor := 0;
        p.refunded_minor := 0;
        p.refunds_succeeded_minor := 0;
        p.version := 0;
    END IF;
    -- A payment made through the API learns its intent from the gateway's
    -- answer, and Stripe's webhook may come first: it adopts the intent.
    p.gateway_payment_id := e.payment_intent;
    IF ps_payment_moves(p.last_event_at, p.intent_status, v_at, e.intent_status) THEN
        p.intent_status   := e.intent_status;
        p.gateway_status  := coalesce(e.gateway_status, p.gateway_status);
        p.amount_minor    := coalesce(e.amount, p.amount_minor);
        p.currency        := coalesce(e.currency, p.currency);
        p.customer        := coalesce(e.customer, p.customer);
        p.failure_code    := CASE WHEN e.intent_status = 'failed' THEN e.failure_code END;
        p.failure_message := CASE WHEN e.intent_status = 'failed' THEN e.failure_message END;
        p.last_event_at   := v_at;
        p.version         := p.version + 1;
    END IF;
    p.captured_minor := greatest(p.captured_minor, coalesce(e.captured, 0));
    p.refunded_minor := greatest(p.refunded_minor, coalesce(e.refunded, 0));
    p.currency := coalesce(p.currency, e.currency);
    RETURN p;
END $$;

-- Refunds seen one by one count as soon as the capture covers them.
CREATE FUNCTION ps_payment_refunds_counted(p payments) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(p.refunded_minor, least(p.captured_minor, p.refunds_succeeded_minor))
$$;

-- Stores payments: p_new as new rows, p_old over the rows with their ids.
-- What events state and nothing else (an order, an account and an actor
-- are the API's). Set-based: a batch stores the payments its events
-- folded with one statement each way.
CREATE FUNCTION ps_payments_write(p_new payments[], p_old payments[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_new) > 0 THEN
        INSERT INTO payments (id, gateway, gateway_payment_id, intent_status, gateway_status,
                              amount_minor, currency, captured_minor, refunded_minor,
                              refunds_succeeded_minor, customer, account, failure_code,
                              failure_message, last_event_at, version)
        SELECT p.id, p.gateway, p.gateway_payment_id, p.intent_status, p.gateway_status,
               p.amount_minor, p.currency, p.captured_minor, p.refunded_minor,
               p.refunds_succeeded_minor, p.customer, NULL, p.failure_code, p.failure_message,
               p.last_event_at, p.version
        FROM unnest(p_new) WITH ORDINALITY AS p ORDER BY p.ordinality;
    END IF;
    IF cardinality(p_old) > 0 THEN
        UPDATE payments SET
            gateway_payment_id = p.gateway_payment_id, intent_status = p.intent_status,
            gateway_status = p.gateway_status, amount_minor = p.amount_minor,
            currency = p.currency, captured_minor = p.captured_minor,
            refunded_minor = p.refunded_minor, refunds_succeeded_minor = p.refunds_succeeded_minor,
            customer = p.customer, failure_code = p.failure_code,
            failure_message = p.failure_message, last_event_at = p.last_event_at,
            version = p.version, updated_at = now()
        FROM unnest(p_old) AS p WHERE payments.id = p.id;
    END IF;
END $$;

-- Stores payment p: a new row, or the one with its id.
CREATE FUNCTION ps_payment_write(p payments, p_new boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_new THEN
        PERFORM ps_payments_write(ARRAY[p], '{}');
    ELSE
        PERFORM ps_payments_write('{}', ARRAY[p]);
    END IF;
END $$;

-- Applies event e, which may change payment p (as stored; no id: none
-- yet), and stores what it changed: the payment, its charge in the ledger,
-- its refunds. Returns 'applied', or 'stale' when the event announced a
-- lifecycle state the payment could not move to (its money facts still
-- count).
CREATE FUNCTION ps_stripe_apply(p payments, e ps_stripe_event_row) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    q payments := ps_stripe_fold(p, e);
BEGIN
    IF p.id IS NULL THEN
        PERFORM ps_payment_write(q, true);
    END IF;
    IF e.charge_id IS NOT NULL AND coalesce(e.captured, 0) > 0 THEN
        INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                                  gateway_transaction_id, source_event_id)
        VALUES (q.id, 'charge', e.captured, e.currency, 'succeeded', e.charge_id, e.event_id)
        ON CONFLICT (type, gateway_transaction_id) DO NOTHING;
    END IF;
    IF e.refunds IS NOT NULL THEN
        q.refunds_succeeded_minor := ps_apply_refunds(q.id, e.event_id, to_timestamp(e.created),
                                                      e.refunds);
    END IF;
    q.refunded_minor := ps_payment_refunds_counted(q);
    IF p.id IS NOT NULL OR e.refunds IS NOT NULL THEN
        PERFORM ps_payment_write(q, false);
    END IF;
    RETURN CASE WHEN e.intent_status IS NOT NULL AND q.version = coalesce(p.version, 0)
                THEN 'stale' ELSE 'applied' END;
END $$;

-- Applies one Stripe event exactly once; the reference of
-- ps_apply_stripe_batch, which must give the same outcomes and tables. It
-- dedupes on the event id, refuses what the event's sender does not own
-- (ps_stripe_refusal, ps_stripe_refunds_refusal), then applies it
-- (ps_stripe_apply). A payment's order is never taken from an event.
-- Returns 'duplicate', a refusal, 'recorded' (no payment involved),
-- 'applied' or 'stale'.
CREATE FUNCTION ps_apply_stripe_event(e ps_stripe_event_row, p_payload text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    p         payments;
    v_refusal text;
BEGIN
    IF e.payment_intent IS NOT NULL THEN
        p := ps_stripe_payment(e);
    END IF;
    v_refusal := ps_stripe_refusal(e, p);
    IF v_refusal IS NULL AND e.refunds IS NOT NULL THEN
        v_refusal := ps_stripe_refunds_refusal(e, p);
    END IF;
    INSERT INTO stripe_event_log (id, type, account, created, livemode, message_id, body, outcome)
    VALUES (e.event_id, e.type, e.account, to_timestamp(e.created), e.livemode, e.message_id,
            p_payload, v_refusal)
    ON CONFLICT (id, created) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'duplicate';
    ELSIF v_refusal IS NOT NULL THEN
        RETURN v_refusal;
    ELSIF e.payment_intent IS NULL THEN
        RETURN 'recorded';
    END IF;
    RETURN ps_stripe_apply(p, e);
END $$;

-- Appends charges to the ledger in the order given (the i-th of each array
-- is one charge), each once: the first event to state a charge is its
-- source. PL/pgSQL: a batch calls it several times, and PostgreSQL would
-- parse and plan a LANGUAGE sql body at every call.
CREATE FUNCTION ps_ledger_add_charges(p_payment_ids text[], p_amounts bigint[],
                                      p_currencies text[], p_charge_ids text[],
                                      p_event_ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_payment_ids) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                              gateway_transaction_id, source_event_id)
    SELECT l.pay, 'charge', l.amount, l.cur, 'succeeded', l.charge, l.event
    FROM unnest(p_payment_ids, p_amounts, p_currencies, p_charge_ids, p_event_ids)
         WITH ORDINALITY AS l(pay, amount, cur, charge, event, n)
    ORDER BY l.n
    ON CONFLICT (type, gateway_transaction_id) DO NOTHING;
END $$;

-- Applies a batch (see ps_stripe_batch_rows) exactly once in effect and
-- returns each event's outcome, as ps_apply_stripe_event names them, with
-- the effect of applying its events one by one in log order. Stripe sends
-- several events per payment back to back, and a statement per event per
-- table was most of the cost: here the batch's events are recorded by one
-- INSERT, those that need no payment are answered by one query, a
-- payment's events are folded in log order in memory (ps_stripe_fold), the
-- payments so folded are stored together (ps_payments_write) and their
-- charges go to the ledger by one INSERT.
-- A payment is stored after an event wherever the triggers on payments
-- must see that step as the one-by-one apply shows it to them: a move into
-- or out of failed, more refunded, a payment of an order. An event's
-- refunds are written as it is folded (ps_apply_refunds): their state
-- machine lives in the refunds table.
--
-- Payments are taken in the order of their intents, so two workers that
-- share some (during a rebalance) lock them in the same order.
--
-- Its statements, and those of the functions and triggers it calls, use
-- their generic plans, made once per session with sequential scans off (so
-- they reach payments through its indexes whatever its size then). Left to
-- choose, PostgreSQL planned a payment's single-row write afresh at every
-- call, since a plan for an array of one looks cheaper than the generic
-- one: about 75 us each time.
CREATE FUNCTION ps_apply_stripe_batch(p_events jsonb, p_payloads text[])
RETURNS TABLE (ord bigint, event_id text, outcome text) LANGUAGE plpgsql
SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    r         record;
    e         ps_stripe_event_row;
    p         payments;     -- the payment being folded, as its events left it
    v_stored  payments;     -- the same as stored (id NULL: not stored yet)
    v_before  payments;
    v_fresh   bigint[];
    v_rows    ps_stripe_event_row[];  -- the batch's rows, read once
    v_refusal text;
    -- Payments whose events are folded, to store (new ones and the others)
    -- with one statement each way, before the ledger, which names them.
    w_new payments[] := '{}'; w_old payments[] := '{}'; w_ids text[] := '{}';
    -- Charges for the ledger, stored in log order of their payment's turn;
    -- the last l_mine are the payment's being folded.
    l_pay text[] := '{}'; l_amount bigint[] := '{}'; l_cur text[] := '{}';
    l_charge text[] := '{}'; l_event text[] := '{}'; l_mine integer := 0; l_keep integer;
    -- Events refused for a reason that depends on their payment.
    x_id text[] := '{}'; x_created timestamptz[] := '{}'; x_outcome text[] := '{}';
BEGIN
    v_rows := ARRAY(SELECT b FROM ps_stripe_batch_rows(p_events) b);
    -- Every event of the batch is recorded once: the first delivery of each
    -- in the batch, unless an earlier batch has it. An event about no
    -- payment is refused (or not) on its own facts here.
    WITH b AS (
        SELECT DISTINCT ON (b.event_id, b.created) b AS e, b.* FROM unnest(v_rows) b
        ORDER BY b.event_id, b.created, b.ord
    ), fresh AS (
        INSERT INTO stripe_event_log (id, type, account, created, livemode, message_id, body,
                                      outcome)
        -- The payload is taken after the sort, which then moves no
        -- payloads.
        SELECT b.event_id, b.type, b.account, to_timestamp(b.created), b.livemode, b.message_id,
               p_payloads[b.ord], b.outcome
        FROM (SELECT b.event_id, b.type, b.account, b.created, b.livemode, b.message_id, b.ord,
                     CASE WHEN b.payment_intent IS NULL THEN ps_stripe_refusal(b.e, NULL) END
                     AS outcome
              FROM b ORDER BY b.ord OFFSET 0) b
        ON CONFLICT (id, created) DO NOTHING
        RETURNING stripe_event_log.id, stripe_event_log.created
    )
    SELECT array_agg(b.ord) INTO v_fresh
    FROM b JOIN fresh ON fresh.id = b.event_id AND fresh.created = to_timestamp(b.created);

    -- Events delivered before and events about no payment: their outcomes
    -- need no payment, so no turn of the loop.
    RETURN QUERY
        SELECT b.ord, b.event_id,
               CASE WHEN f.ord IS NULL THEN 'duplicate'
                    ELSE coalesce(ps_stripe_refusal(b, NULL), 'recorded') END
        FROM unnest(v_rows) b
        LEFT JOIN unnest(v_fresh) AS f(ord) ON f.ord = b.ord
        WHERE f.ord IS NULL OR b.payment_intent IS NULL;
    FOR r IN SELECT b AS e
             FROM unnest(v_rows) b
             JOIN unnest(v_fresh) AS f(ord) ON f.ord = b.ord
             WHERE b.payment_intent IS NOT NULL
             ORDER BY b.payment_intent, b.ord LOOP
        e := r.e;
        ord := e.ord;
        event_id := e.event_id;
        IF p.gateway_payment_id IS DISTINCT FROM e.payment_intent
           AND p IS DISTINCT FROM v_stored THEN
            -- The next payment: the last one to be stored.
            IF v_stored.id IS NULL THEN
                w_new := w_new || p;
            ELSE
                w_old := w_old || p;
            END IF;
            w_ids := w_ids || p.id;
        END IF;
        IF p.gateway_payment_id IS DISTINCT FROM e.payment_intent OR p.id IS NULL THEN
            -- This one taken (none yet: perhaps the one metadata names,
            -- which must not be one still to be stored with another intent).
            IF e.payment_id = ANY (w_ids) THEN
                PERFORM ps_payments_write(w_new, w_old);
                w_new := '{}'; w_old := '{}'; w_ids := '{}';
            END IF;
            p := ps_stripe_payment(e);
            v_stored := p;
            l_mine := 0;
        END IF;
        v_refusal := ps_stripe_refusal(e, p);
        IF v_refusal IS NULL AND e.refunds IS NOT NULL THEN
            v_refusal := ps_stripe_refunds_refusal(e, p);
        END IF;
        IF v_refusal IS NOT NULL THEN
            x_id := x_id || e.event_id;
            x_created := x_created || to_timestamp(e.created);
            x_outcome := x_outcome || v_refusal;
            outcome := v_refusal;
            RETURN NEXT;
            CONTINUE;
        END IF;
        v_before := p;
        p := ps_stripe_fold(p, e);
        IF e.charge_id IS NOT NULL AND coalesce(e.captured, 0) > 0 THEN
            l_pay := l_pay || p.id;
            l_amount := l_amount || e.captured;
            l_cur := l_cur || e.currency::text;
            l_charge := l_charge || e.charge_id;
            l_event := l_event || e.event_id;
            l_mine := l_mine + 1;
        END IF;
        IF e.refunds IS NOT NULL THEN
            -- Its refunds and their ledger rows name the payment: a new one
            -- is stored first, as one by one it would be by now (folded by
            -- this event if it is the payment's first).
            IF v_stored.id IS NULL THEN
                v_stored := CASE WHEN v_before.id IS NULL THEN p ELSE v_before END;
                PERFORM ps_payment_write(v_stored, true);
            END IF;
            -- Its charges go to the ledger before its refunds.
            IF l_mine > 0 THEN
                l_keep := cardinality(l_pay) - l_mine;
                PERFORM ps_ledger_add_charges(l_pay[l_keep + 1:], l_amount[l_keep + 1:],
                                              l_cur[l_keep + 1:], l_charge[l_keep + 1:],
                                              l_event[l_keep + 1:]);
                l_pay := l_pay[:l_keep]; l_amount := l_amount[:l_keep];
                l_cur := l_cur[:l_keep]; l_charge := l_charge[:l_keep];
                l_event := l_event[:l_keep]; l_mine := 0;
            END IF;
            p.refunds_succeeded_minor := ps_apply_refunds(p.id, e.event_id,
                                                          to_timestamp(e.created), e.refunds);
        END IF;
        p.refunded_minor := ps_payment_refunds_counted(p);
        -- Where the triggers on payments must see this step. A payment not
        -- yet made (v_before all NULL) was not failed.
        IF p.order_id IS NOT NULL
           OR (p.intent_status = 'failed') <> coalesce(v_before.intent_status = 'failed', false)
           OR p.refunded_minor > coalesce(v_before.refunded_minor, 0) THEN
            PERFORM ps_payment_write(p, v_stored.id IS NULL);
            v_stored := p;
        END IF;
        outcome := CASE WHEN e.intent_status IS NOT NULL
                             AND p.version = coalesce(v_before.version, 0)
                        THEN 'stale' ELSE 'applied' END;
        RETURN NEXT;
    END LOOP;
    IF p IS DISTINCT FROM v_stored THEN
        PERFORM ps_payment_write(p, v_stored.id IS NULL);
    END IF;
    PERFORM ps_payments_write(w_new, w_old);
    PERFORM ps_ledger_add_charges(l_pay, l_amount, l_cur, l_charge, l_event);
    IF cardinality(x_id) > 0 THEN
        UPDATE stripe_event_log s SET outcome = x.outcome
        FROM unnest(x_id, x_created, x_outcome) AS x(id, created, outcome)
        WHERE s.id = x.id AND s.created = x.created;
    END IF;
END $$;

-- The whole batch of Stripe events: the payment facts through
-- ps_apply_stripe_batch, then, in log order, what only some events carry:
-- "billing" ({kind: checkout | subscription | invoice, ...}) and "voucher"
-- (next_action.oxxo_display_details of a payment intent). An event
-- delivered before, or refused, changes neither. Rows: (ord, event_id,
-- outcome, note), note being the log line of a refused event.
CREATE FUNCTION ps_apply_stripe_events(p_events jsonb, p_payloads text[])
RETURNS TABLE (ord bigint, event_id text, outcome text, note jsonb) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r record;
    v_outcome text;
BEGIN
    -- Most batches carry payment facts only: no loop for them.
    IF NOT jsonb_path_exists(p_events, '$[*] ? (exists(@.billing) || exists(@.voucher))') THEN
        RETURN QUERY SELECT b.ord, b.event_id, b.outcome,
                            ps_stripe_note(p_events -> (b.ord::integer - 1), b.outcome)
                     FROM ps_apply_stripe_batch(p_events, p_payloads) b;
        RETURN;
    END IF;
    FOR r IN
        WITH res AS MATERIALIZED (SELECT * FROM ps_apply_stripe_batch(p_events, p_payloads))
        SELECT res.ord AS n, res.event_id AS id, res.outcome AS result,
               p_events -> (res.ord::integer - 1) AS e
        FROM res ORDER BY res.ord
    LOOP
        v_outcome := r.result;
        IF v_outcome IN ('applied', 'stale', 'recorded') THEN
            IF r.e ? 'voucher' THEN
                UPDATE payments SET voucher = r.e->'voucher', updated_at = now()
                WHERE gateway_payment_id = r.e->>'payment_intent';
            END IF;
            IF r.e ? 'billing' THEN
                v_outcome := CASE r.e->'billing'->>'kind'
                    WHEN 'checkout' THEN ps_apply_checkout(r.e->'billing', to_timestamp((r.e->>'created')::bigint))
                    WHEN 'subscription' THEN ps_apply_subscription(r.e->'billing', to_timestamp((r.e->>'created')::bigint))
                    WHEN 'invoice' THEN ps_apply_invoice(r.e->'billing', to_timestamp((r.e->>'created')::bigint))
                END;
                IF v_outcome NOT IN ('applied', 'stale') THEN
                    UPDATE stripe_event_log SET outcome = v_outcome
                    WHERE id = r.id AND created = to_timestamp((r.e->>'created')::bigint);
                END IF;
            END IF;
        END IF;
        ord := r.n;
        event_id := r.id;
        outcome := v_outcome;
        note := ps_stripe_note(r.e, v_outcome);
        RETURN NEXT;
    END LOOP;
END $$;
