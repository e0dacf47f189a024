-- Stripe events, payments, refunds, the ledger and dead letters.
--
-- A payment's lifecycle (intent_status) moves only along the state machine
-- of ps_payment_can_move, and only for an event at least as new as the last
-- one applied. What money did (captured_minor, refunded_minor) only grows.
-- The status dashboards read is derived from both, so the final state does
-- not depend on the order in which events arrive.

-- A new id of ours: the prefix, the time in microseconds (14 hex digits) and
-- 70 random bits. Ids made later sort later, so a key index takes new rows at
-- its right end instead of on a random page: inserts stay on a few hot pages
-- and write far less to the WAL than with random ids.
CREATE FUNCTION ps_new_id(prefix text) RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT prefix || lpad(to_hex((date_part('epoch', clock_timestamp()) * 1000000)::bigint), 14, '0')
                  || right(replace(gen_random_uuid()::text, '-', ''), 18)
$$;

CREATE TABLE stripe_events (
    id          text PRIMARY KEY,              -- evt_...
    type        text NOT NULL,
    account     text,                          -- acct_... for Connect events
    created     timestamptz NOT NULL,
    livemode    boolean NOT NULL DEFAULT false,
    message_id  text,                          -- envelope id of the first delivery
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

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

CREATE TABLE payments (
    id                 text PRIMARY KEY,
    order_id           text,
    gateway            text NOT NULL,
    gateway_payment_id text UNIQUE,            -- pi_... for Stripe
    intent_status      text NOT NULL DEFAULT 'pending'
        CHECK (intent_status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    status             text GENERATED ALWAYS AS (
        CASE WHEN intent_status = 'completed' AND refunded_minor > 0 THEN
            CASE WHEN refunded_minor >= captured_minor THEN 'refunded' ELSE 'partially_refunded' END
        ELSE intent_status END) STORED,
    gateway_status     text,                   -- Stripe's own status word
    amount_minor       bigint NOT NULL DEFAULT 0 CHECK (amount_minor >= 0),
    currency           char(3),
    captured_minor     bigint NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
    refunded_minor     bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    refunds_succeeded_minor bigint NOT NULL DEFAULT 0, -- sum of succeeded rows in refunds
    customer           text,
    account            text,
    failure_code       text,
    failure_message    text,
    last_event_at      timestamptz,            -- created time of the newest applied event
    version            bigint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT refund_within_capture CHECK (refunded_minor <= captured_minor)
);
CREATE INDEX payments_order ON payments (order_id) WHERE order_id IS NOT NULL;

CREATE TABLE refunds (
    id                text PRIMARY KEY,        -- re_... for Stripe
    payment_id        text NOT NULL REFERENCES payments (id),
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
    currency          char(3) NOT NULL,
    status            text NOT NULL
        CHECK (status IN ('pending', 'requires_action', 'succeeded', 'failed', 'canceled')),
    reason            text,
    last_event_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment ON refunds (payment_id);

CREATE FUNCTION ps_refund_can_move(from_status text, to_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE from_status
        WHEN 'pending'         THEN to_status IN ('requires_action', 'succeeded', 'failed', 'canceled')
        WHEN 'requires_action' THEN to_status IN ('pending', 'succeeded', 'failed', 'canceled')
        ELSE false
    END
$$;

-- The ledger: append-only rows of money moved. Charges minus refunds of a
-- payment always equal its captured minus refunded amounts.
CREATE TABLE transactions (
    id                     text PRIMARY KEY DEFAULT ps_new_id('txn_'),
    payment_id             text NOT NULL REFERENCES payments (id),
    type                   text NOT NULL CHECK (type IN ('charge', 'refund', 'void')),
    amount_minor           bigint NOT NULL CHECK (amount_minor > 0),
    currency               char(3) NOT NULL,
    status                 text NOT NULL,
    gateway_transaction_id text NOT NULL,      -- ch_... or re_...
    source_event_id        text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (type, gateway_transaction_id)
);
CREATE INDEX transactions_payment ON transactions (payment_id);

CREATE FUNCTION ps_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transactions is an append-only ledger: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION ps_ledger_append_only();

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    "partition" integer NOT NULL,
    "offset"    bigint NOT NULL,
    message_id  text,
    reason      text NOT NULL,
    payload     bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, "partition", "offset")
);

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

-- Applies one verified Stripe event exactly once. The caller extracts the
-- facts (all optional but the event's own fields); the function dedupes on
-- the event id, then moves the payment's lifecycle if the state machine and
-- the event's age allow, grows its money facts, appends ledger rows, and
-- records refunds. The payment row is written once per event. Returns
-- 'duplicate', 'recorded' (no payment involved), 'applied' or 'stale' (the
-- lifecycle move was refused; the money facts still count).
CREATE FUNCTION ps_apply_stripe_event(
    p_event_id text, p_type text, p_account text, p_created bigint, p_livemode boolean,
    p_message_id text, p_payload jsonb,
    p_payment_intent text, p_intent_status text, p_gateway_status text,
    p_amount bigint, p_currency text, p_captured bigint, p_refunded bigint,
    p_charge_id text, p_order_id text, p_customer text,
    p_failure_code text, p_failure_message text, p_refunds jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_at  timestamptz := to_timestamp(p_created);
    p     payments%ROWTYPE;
    v_new boolean;
    v_result text := 'applied';
BEGIN
    INSERT INTO stripe_events (id, type, account, created, livemode, message_id, payload)
    VALUES (p_event_id, p_type, p_account, v_at, p_livemode, p_message_id, p_payload)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'duplicate';
    END IF;
    IF p_payment_intent IS NULL THEN
        RETURN 'recorded';
    END IF;

    SELECT * INTO p FROM payments WHERE gateway_payment_id = p_payment_intent FOR UPDATE;
    v_new := NOT FOUND;
    IF v_new THEN
        p.id := ps_new_id('pay_');
        p.gateway := 'stripe';
        p.gateway_payment_id := p_payment_intent;
        p.intent_status := 'pending';
        p.amount_minor := 0;
        p.currency := p_currency;
        p.account := p_account;
        p.captured_minor := 0;
        p.refunded_minor := 0;
        p.refunds_succeeded_minor := 0;
        p.version := 0;
    END IF;

    IF p_intent_status IS NOT NULL THEN
        IF (p.last_event_at IS NULL OR p.last_event_at <= v_at)
           AND (p.intent_status = p_intent_status
                OR ps_payment_can_move(p.intent_status, p_intent_status)) THEN
            p.intent_status   := p_intent_status;
            p.gateway_status  := coalesce(p_gateway_status, p.gateway_status);
            p.amount_minor    := coalesce(p_amount, p.amount_minor);
            p.currency        := coalesce(p_currency, p.currency);
            p.order_id        := coalesce(p_order_id, p.order_id);
            p.customer        := coalesce(p_customer, p.customer);
            p.failure_code    := CASE WHEN p_intent_status = 'failed' THEN p_failure_code END;
            p.failure_message := CASE WHEN p_intent_status = 'failed' THEN p_failure_message END;
            p.last_event_at   := v_at;
            p.version         := p.version + 1;
        ELSE
            v_result := 'stale';
        END IF;
    END IF;

    -- Money facts only grow, whatever order their events arrive in.
    p.captured_minor := greatest(p.captured_minor, coalesce(p_captured, 0));
    p.refunded_minor := greatest(p.refunded_minor, coalesce(p_refunded, 0));
    p.currency := coalesce(p.currency, p_currency);

    IF v_new THEN
        INSERT INTO payments (id, order_id, gateway, gateway_payment_id, intent_status,
                              gateway_status, amount_minor, currency, captured_minor,
                              refunded_minor, refunds_succeeded_minor, customer, account,
                              failure_code, failure_message, last_event_at, version)
        VALUES (p.id, p.order_id, p.gateway, p.gateway_payment_id, p.intent_status,
                p.gateway_status, p.amount_minor, p.currency, p.captured_minor,
                p.refunded_minor, 0, p.customer, p.account,
                p.failure_code, p.failure_message, p.last_event_at, p.version);
    END IF;

    IF p_charge_id IS NOT NULL AND coalesce(p_captured, 0) > 0 THEN
        INSERT INTO transactions (payment_id, type, amount_minor, currency, status,
                                  gateway_transaction_id, source_event_id)
        VALUES (p.id, 'charge', p_captured, p_currency, 'succeeded', p_charge_id, p_event_id)
        ON CONFLICT (type, gateway_transaction_id) DO NOTHING;
    END IF;

    IF p_refunds IS NOT NULL THEN
        p.refunds_succeeded_minor := ps_apply_refunds(p.id, p_event_id, v_at, p_refunds);
    END IF;
    -- Refunds seen one by one count as soon as the capture covers them.
    p.refunded_minor := greatest(p.refunded_minor,
                                 least(p.captured_minor, p.refunds_succeeded_minor));

    IF NOT v_new OR p_refunds IS NOT NULL THEN
        UPDATE payments SET
            order_id = p.order_id, intent_status = p.intent_status,
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

CREATE VIEW dash_dead_letters AS
    SELECT topic, count(*) AS messages, max(created_at) AS latest FROM dead_letters GROUP BY topic;
