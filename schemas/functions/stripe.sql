-- Stripe's events: what a verified event may change, and applying a poll
-- batch of them exactly once in effect.

-- One element of a batch of Stripe events (see ps_stripe_batch_rows),
-- without its payload: statements that sort, hash and keep these rows would
-- copy 1.4-3 KB of JSON each time. The payload is taken from the batch's
-- payloads when its row is written (ps_stripe_payload).
CREATE TYPE ps_stripe_event_row AS (
    ord bigint,
    fast boolean,           -- the set-based path of ps_apply_stripe_batch may apply it
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
    SELECT e.ord,
           -- The event id too: the same id could come again with other facts.
           e.refunds IS NULL
             AND count(*) OVER (PARTITION BY coalesce(e.payment_intent, e.event_id)) = 1
             AND count(*) OVER (PARTITION BY e.event_id) = 1,
           e.event_id, e.type, e.account, coalesce(e.connect, false), e.refusal,
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

-- The payload of the batch's event ord (from 1).
CREATE FUNCTION ps_stripe_payload(p_payloads text[], p_ord bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_payloads[p_ord]::jsonb
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

-- The log line of an event that changed nothing for a reason of its own:
-- a warning with "alert" naming the reason, but for an event of the other
-- mode, which Stripe sends a live Connect endpoint as a matter of course.
CREATE FUNCTION ps_stripe_note(e jsonb, p_outcome text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
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

-- Applies one Stripe event exactly once; the reference of the set-based
-- ps_apply_stripe_batch, which must give the same outcomes and tables. It
-- dedupes on the event id, refuses what the event's sender does not own
-- (ps_stripe_refusal), then moves the payment's lifecycle if the state
-- machine and the event's age allow, grows its money facts, appends ledger
-- rows, and records refunds. A payment's order is never taken from an event.
-- Returns 'duplicate', a refusal, 'recorded' (no payment involved),
-- 'applied' or 'stale' (the lifecycle move was refused; the money facts
-- still count).
CREATE FUNCTION ps_apply_stripe_event(e ps_stripe_event_row, p_payload jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_at      timestamptz := to_timestamp(e.created);
    p         payments;
    v_new     boolean;
    v_refusal text;
    v_result  text := 'applied';
BEGIN
    IF e.payment_intent IS NOT NULL THEN
        SELECT * INTO p FROM payments WHERE gateway_payment_id = e.payment_intent FOR UPDATE;
        IF NOT FOUND AND e.payment_id IS NOT NULL AND NOT e.connect THEN
            SELECT * INTO p FROM payments
            WHERE id = e.payment_id AND gateway_payment_id IS NULL FOR UPDATE;
        END IF;
    END IF;
    v_refusal := ps_stripe_refusal(e, p);
    INSERT INTO stripe_events (id, type, account, created, livemode, message_id, payload, outcome)
    VALUES (e.event_id, e.type, e.account, v_at, e.livemode, e.message_id, p_payload, v_refusal)
    ON CONFLICT (id, created) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'duplicate';
    ELSIF v_refusal IS NOT NULL THEN
        RETURN v_refusal;
    ELSIF e.payment_intent IS NULL THEN
        RETURN 'recorded';
    END IF;

    v_new := p.id IS NULL;
    IF v_new THEN
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

    IF e.intent_status IS NOT NULL THEN
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
        ELSE
            v_result := 'stale';
        END IF;
    END IF;

    -- Money facts only grow, whatever order their events arrive in.
    p.captured_minor := greatest(p.captured_minor, coalesce(e.captured, 0));
    p.refunded_minor := greatest(p.refunded_minor, coalesce(e.refunded, 0));
    p.currency := coalesce(p.currency, e.currency);

    IF v_new THEN
        INSERT INTO payments (id, gateway, gateway_payment_id, intent_status, gateway_status,
                              amount_minor, currency, captured_minor, refunded_minor,
                              refunds_succeeded_minor, customer, account, failure_code,
                              failure_message, last_event_at, version)
        VALUES (p.id, p.gateway, p.gateway_payment_id, p.intent_status, p.gateway_status,
                p.amount_minor, p.currency, p.captured_minor, p.refunded_minor, 0, p.customer,
                NULL, p.failure_code, p.failure_message, p.last_event_at, p.version);
    END IF;

    IF e.charge_id IS NOT NULL AND coalesce(e.captured, 0) > 0 THEN
        INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                                  gateway_transaction_id, source_event_id)
        VALUES (p.id, 'charge', e.captured, e.currency, 'succeeded', e.charge_id, e.event_id)
        ON CONFLICT (type, gateway_transaction_id) DO NOTHING;
    END IF;

    IF e.refunds IS NOT NULL THEN
        p.refunds_succeeded_minor := ps_apply_refunds(p.id, e.event_id, v_at, e.refunds);
    END IF;
    -- Refunds seen one by one count as soon as the capture covers them.
    p.refunded_minor := greatest(p.refunded_minor,
                                 least(p.captured_minor, p.refunds_succeeded_minor));

    IF NOT v_new OR e.refunds IS NOT NULL THEN
        UPDATE payments SET
            gateway_payment_id = p.gateway_payment_id, intent_status = p.intent_status,
            gateway_status = p.gateway_status, amount_minor = p.amount_minor,
            currency = p.currency, captured_minor = p.captured_minor,
            refunded_minor = p.refunded_minor, refunds_succeeded_minor = p.refunds_succeeded_minor,
            customer = p.customer, failure_code = p.failure_code,
            failure_message = p.failure_message, last_event_at = p.last_event_at,
            version = p.version, updated_at = now()
        WHERE id = p.id;
    END IF;
    RETURN v_result;
END $$;

-- Applies a batch (see ps_stripe_batch_rows) exactly once in effect and
-- returns each event's outcome, as ps_apply_stripe_event names them.
-- Events about a payment no other event of the batch touches, and without
-- refunds, are applied set-based, one statement per table; the others go
-- through ps_apply_stripe_event one by one, in log order.
--
-- PL/pgSQL plans the main statement once per session. A plan made while
-- payments was small was a hash join over a sequential scan of all of it,
-- kept batch after batch long after the table had grown; planning it for
-- every batch instead took about half of PostgreSQL's time when batches are
-- small. So the statement names the batch's payment intents as an array for
-- the index, and the function runs with sequential scans off: a plan made
-- while the tables are small probes the indexes as one made later would.
CREATE FUNCTION ps_apply_stripe_batch(p_events jsonb, p_payloads text[])
RETURNS TABLE (ord bigint, event_id text, outcome text) LANGUAGE plpgsql
SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    r ps_stripe_event_row;
BEGIN
    -- A payment made through the API learns its payment intent from the
    -- gateway's answer, and Stripe's webhook may come first. The intent names
    -- the payment in metadata.payment_id: the payment adopts the intent, so
    -- the event applies to it instead of making another, if the event may
    -- change that payment at all. Rare, so planned for each batch: kept from
    -- a small table, its plan went through every payment still without an
    -- intent rather than by id.
    IF jsonb_path_exists(p_events, '$[*].payment_id') THEN
        EXECUTE $q$
        UPDATE payments p SET gateway_payment_id = b.payment_intent
        FROM ps_stripe_batch_rows($1) b
        WHERE b.payment_id IS NOT NULL AND b.payment_intent IS NOT NULL AND NOT b.connect
          AND p.id = b.payment_id AND p.gateway_payment_id IS NULL
          AND ps_stripe_refusal(b, p) IS NULL
          AND NOT EXISTS (SELECT 1 FROM payments q WHERE q.gateway_payment_id = b.payment_intent)
        $q$ USING p_events;
    END IF;

    RETURN QUERY
    WITH ev AS MATERIALIZED (
        SELECT b AS e, b.*, to_timestamp(b.created) AS at FROM ps_stripe_batch_rows(p_events) b
        WHERE b.fast
    ), pre AS MATERIALIZED (
        -- Each event with the payment it names as it was before this
        -- statement (the only event of the batch about it), and whether the
        -- event may change it. The batch's intents as an array: the index is
        -- probed for exactly these, whatever the size of payments.
        SELECT ev.*, p.id AS pid,
               ps_stripe_refusal(ev.e, CASE WHEN p.id IS NOT NULL THEN p ELSE c END) AS refused
        FROM ev
        LEFT JOIN payments p ON p.gateway_payment_id = ev.payment_intent
              AND p.gateway_payment_id = ANY (ARRAY(SELECT ev.payment_intent FROM ev
                                                    WHERE ev.payment_intent IS NOT NULL))
        LEFT JOIN payments c ON p.id IS NULL AND NOT ev.connect AND c.id = ev.payment_id
              AND c.gateway_payment_id IS NULL
    ), fresh AS (
        INSERT INTO stripe_events (id, type, account, created, livemode, message_id, payload,
                                   outcome)
        SELECT pre.event_id, pre.type, pre.account, pre.at, pre.livemode, pre.message_id,
               ps_stripe_payload(p_payloads, pre.ord), pre.refused
        FROM pre
        ON CONFLICT (id, created) DO NOTHING
        RETURNING stripe_events.id
    ), todo AS MATERIALIZED (
        -- The events to apply, each with its payment's id: the one it has,
        -- or the one it is about to get.
        SELECT pre.*, coalesce(pre.pid, ps_new_id('pay_')) AS pay_id
        FROM pre JOIN fresh ON fresh.id = pre.event_id
        WHERE pre.payment_intent IS NOT NULL AND pre.refused IS NULL
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
        WHERE p.id = t.pid
        -- A lifecycle event that did not move the payment was stale: had it
        -- moved, the row would now carry its time and status.
        RETURNING p.id, p.gateway_payment_id, t.event_id,
                  CASE WHEN t.intent_status IS NULL
                         OR (p.last_event_at = t.at AND p.intent_status = t.intent_status)
                       THEN 'applied' ELSE 'stale' END AS outcome
    ), ins AS (
        INSERT INTO payments (id, gateway, gateway_payment_id, intent_status, gateway_status,
                              amount_minor, currency, captured_minor, refunded_minor, customer,
                              failure_code, failure_message, last_event_at, version)
        SELECT t.pay_id, 'stripe', t.payment_intent,
               coalesce(t.intent_status, 'pending'),
               CASE WHEN t.intent_status IS NOT NULL THEN t.gateway_status END,
               CASE WHEN t.intent_status IS NOT NULL THEN coalesce(t.amount, 0) ELSE 0 END,
               t.currency, coalesce(t.captured, 0), coalesce(t.refunded, 0),
               CASE WHEN t.intent_status IS NOT NULL THEN t.customer END,
               CASE WHEN t.intent_status = 'failed' THEN t.failure_code END,
               CASE WHEN t.intent_status = 'failed' THEN t.failure_message END,
               CASE WHEN t.intent_status IS NOT NULL THEN t.at END,
               CASE WHEN t.intent_status IS NOT NULL THEN 1 ELSE 0 END
        FROM todo t WHERE t.pid IS NULL
    ), ledger AS (
        -- Every event of todo updates its payment or makes it in this
        -- statement; the foreign key is checked at its end.
        INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                                  gateway_transaction_id, source_event_id)
        SELECT t.pay_id, 'charge', t.captured, t.currency, 'succeeded', t.charge_id, t.event_id
        FROM todo t
        WHERE t.charge_id IS NOT NULL AND coalesce(t.captured, 0) > 0
        ON CONFLICT (type, gateway_transaction_id) DO NOTHING
    )
    SELECT pre.ord, pre.event_id,
           CASE WHEN fresh.id IS NULL THEN 'duplicate'
                WHEN pre.refused IS NOT NULL THEN pre.refused
                WHEN pre.payment_intent IS NULL THEN 'recorded'
                ELSE coalesce(upd.outcome, 'applied') END
    FROM pre LEFT JOIN fresh ON fresh.id = pre.event_id
             LEFT JOIN upd ON upd.event_id = pre.event_id;

    FOR r IN SELECT * FROM ps_stripe_batch_rows(p_events) b WHERE NOT b.fast ORDER BY b.ord LOOP
        ord := r.ord;
        event_id := r.event_id;
        outcome := ps_apply_stripe_event(r, ps_stripe_payload(p_payloads, r.ord));
        RETURN NEXT;
    END LOOP;
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
                    UPDATE stripe_events SET outcome = v_outcome
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
