-- The tables of paystream: what the data looks like. What the system does
-- with it (functions, triggers, views) is in ../functions/, one file per
-- domain, re-applied whole whenever it changes. A change of shape is a new
-- numbered file here; a file here is never edited once released.

-- A new id of ours: the prefix, the time in microseconds (14 hex digits) and
-- 70 random bits. Ids made later sort later, so a key index takes new rows at
-- its right end instead of on a random page: inserts stay on a few hot pages
-- and write far less to the WAL than with random ids. It is defined here, with
-- the tables, because a table's default uses it.
CREATE FUNCTION ps_new_id(prefix text) RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT prefix || lpad(to_hex((date_part('epoch', clock_timestamp()) * 1000000)::bigint), 14, '0')
                  || right(replace(gen_random_uuid()::text, '-', ''), 18)
$$;

-- ---------------------------------------------------------------------
-- Stripe events, payments, refunds, the ledger

-- Every verified Stripe event, once. outcome says why one changed nothing
-- (livemode_mismatch, account_mismatch, ...: see functions/stripe.sql);
-- NULL for one the rules applied.
CREATE TABLE stripe_events (
    id          text PRIMARY KEY,              -- evt_...
    type        text NOT NULL,
    account     text,                          -- acct_... for Connect events
    created     timestamptz NOT NULL,
    livemode    boolean NOT NULL DEFAULT false,
    message_id  text,                          -- envelope id of the first delivery
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    outcome     text
);

-- A payment's lifecycle (intent_status) moves only along its state machine;
-- what money did (captured_minor, refunded_minor) only grows. The status
-- dashboards read is derived from both.
CREATE TABLE payments (
    id                 text PRIMARY KEY,
    order_id           text,                   -- set only by payment.create
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
    account            text,                   -- acct_...: made on behalf of that account
    failure_code       text,
    failure_message    text,
    last_event_at      timestamptz,            -- created time of the newest applied event
    version            bigint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    actor              text,                   -- the owner, for API payments
    payment_method     text,                   -- pm_... of the last charge attempt
    voucher            jsonb,                  -- a delayed method's voucher (OXXO)
    CONSTRAINT refund_within_capture CHECK (refunded_minor <= captured_minor)
);
CREATE INDEX payments_order ON payments (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX payments_by_actor ON payments (actor, created_at DESC, id DESC) WHERE actor IS NOT NULL;

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

-- The ledger: append-only rows of money moved (a trigger refuses updates and
-- deletes). Charges minus refunds of a payment always equal its captured
-- minus refunded amounts.
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

-- A call to a payment gateway, recorded before it is made and finished with
-- its answer: a command delivered again repeats the call with the same
-- idempotency key instead of making another.
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

-- Messages that could not be applied, with the reason; each is also on its
-- topic's .dlq twin.
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

-- ---------------------------------------------------------------------
-- Orders, the API keys that act on them, and the commands that change them

-- API keys: the key itself is never stored, only its SHA-256. Its 160
-- random bits make a slow hash pointless. A key of a sandbox (_dev_) id
-- runs on the sandbox gateway.
CREATE TABLE api_keys (
    id            text PRIMARY KEY,            -- psk_live_<16 hex> or psk_dev_<16 hex>
    secret_sha256 text NOT NULL,               -- hex SHA-256 of the whole key
    actor         text NOT NULL,               -- the user the key acts for
    sandbox       boolean NOT NULL,
    admin         boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE SEQUENCE order_numbers;

CREATE TABLE orders (
    id               text PRIMARY KEY,
    number           text NOT NULL UNIQUE
        DEFAULT 'PS-' || lpad(nextval('order_numbers')::text, 8, '0'),
    actor            text NOT NULL,            -- the owner
    status           text NOT NULL DEFAULT 'pending',
    currency         char(3) NOT NULL,
    total_minor      bigint NOT NULL CHECK (total_minor >= 0),
    shipping_address jsonb,
    billing_address  jsonb,
    metadata         jsonb,
    version          bigint NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    email            text,                     -- whom its emails go to
    customer_name    text,
    expires_at       timestamptz,              -- when it lapses unpaid
    CONSTRAINT orders_status_check
        CHECK (status IN ('pending', 'paid', 'processing', 'shipped', 'delivered', 'cancelled',
                          'expired', 'refunded'))
);
-- A user's orders, newest first: the list endpoint's order and cursor.
CREATE INDEX orders_by_actor ON orders (actor, created_at DESC, id DESC);
-- The pending orders that lapse, soonest first: the expiry sweep's order.
CREATE INDEX orders_expiring ON orders (expires_at) WHERE status = 'pending' AND expires_at IS NOT NULL;

CREATE TABLE order_items (
    order_id         text NOT NULL REFERENCES orders (id),
    line             integer NOT NULL,
    product_id       text NOT NULL,
    name             text,
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
    line_total_minor bigint NOT NULL CHECK (line_total_minor = quantity * unit_price_minor),
    PRIMARY KEY (order_id, line)
);

-- Every applied command with its result: the row is the dedupe (a command
-- applied twice finds it) and what the API answers for it.
CREATE TABLE commands (
    id             text PRIMARY KEY,           -- cmd_...
    actor          text NOT NULL,
    type           text NOT NULL,              -- order.create, ...
    resource_id    text,
    request_sha256 text NOT NULL,              -- of the request, to tell a reused Idempotency-Key
    message_id     text,
    http_status    smallint NOT NULL,          -- what the API answers for it
    result         jsonb NOT NULL,             -- the resource, or {"error": {...}}
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------
-- Billing: customers and their open balance, metered usage, threshold
-- invoices, Checkout Sessions, Stripe's subscriptions and invoices

CREATE TABLE customers (
    id                 text PRIMARY KEY,        -- the user id (JWT sub or API key owner)
    email              text NOT NULL,
    name               text,
    gateway            text NOT NULL,           -- stripe, or sandbox (offline)
    stripe_customer_id text NOT NULL UNIQUE,    -- cus_...; cus_sandbox_... for the sandbox
    balance_minor      bigint NOT NULL DEFAULT 0, -- owed; below zero is credit
    currency           char(3) NOT NULL,
    version            bigint NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- A usage record is unique per customer and identifier: a record sent again
-- is the same record. Stripe wants its meter event identifiers unique in
-- the whole account, so the one reported there is derived from both.
CREATE TABLE usage_records (
    customer_id       text NOT NULL REFERENCES customers (id),
    identifier        text NOT NULL,
    meter             text NOT NULL,
    quantity          bigint NOT NULL CHECK (quantity > 0),
    unit_price_minor  bigint NOT NULL CHECK (unit_price_minor >= 0),
    amount_minor      bigint NOT NULL CHECK (amount_minor = quantity * unit_price_minor),
    currency          char(3) NOT NULL,
    occurred_at       timestamptz NOT NULL,
    message_id        text,
    stripe_identifier text NOT NULL UNIQUE,
    -- pending: to report to Stripe; reported; local: a sandbox customer's;
    -- failed: Stripe refused it (last_error says why)
    meter_status      text NOT NULL CHECK (meter_status IN ('pending', 'reported', 'local', 'failed')),
    report_attempts   integer NOT NULL DEFAULT 0,
    next_report_at    timestamptz NOT NULL DEFAULT now(),
    last_error        text,
    reported_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, identifier)
);
CREATE INDEX usage_to_report ON usage_records (next_report_at) WHERE meter_status = 'pending';
CREATE INDEX usage_by_time ON usage_records (customer_id, occurred_at);

-- Stripe's invoices (in_...) and the threshold invoices of ours (inv_...).
CREATE TABLE invoices (
    id                 text PRIMARY KEY,
    source             text NOT NULL CHECK (source IN ('stripe', 'threshold')),
    customer_id        text,                    -- ours, when known
    stripe_customer_id text,
    subscription_id    text,
    status             text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'uncollectible', 'void')),
    amount_due_minor   bigint NOT NULL DEFAULT 0 CHECK (amount_due_minor >= 0),
    amount_paid_minor  bigint NOT NULL DEFAULT 0 CHECK (amount_paid_minor >= 0),
    currency           char(3),
    number             text,
    hosted_invoice_url text,
    attempt_count      integer NOT NULL DEFAULT 0,
    last_event_at      timestamptz,
    version            bigint NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- At most one open threshold invoice per customer: the database itself
-- refuses a second one for the same crossing.
CREATE UNIQUE INDEX invoices_one_open_threshold ON invoices (customer_id)
    WHERE source = 'threshold' AND status = 'open';
CREATE INDEX invoices_customer ON invoices (customer_id, created_at DESC);

CREATE TABLE subscriptions (
    id                   text PRIMARY KEY,      -- sub_...
    customer_id          text,
    stripe_customer_id   text,
    status               text NOT NULL,
    price_id             text,
    quantity             bigint,
    current_period_start timestamptz,
    current_period_end   timestamptz,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    canceled_at          timestamptz,
    last_event_at        timestamptz NOT NULL,
    version              bigint NOT NULL DEFAULT 1,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- state: open; expired; awaiting_payment (completed, paid later, e.g. an
-- OXXO voucher); payment_failed; paid. A session paystream made has its
-- command_id; only such a session pays a balance.
CREATE TABLE checkout_sessions (
    id                 text PRIMARY KEY,        -- cs_...
    purpose            text NOT NULL CHECK (purpose IN ('balance', 'order', 'other')),
    customer_id        text,
    stripe_customer_id text,
    order_id           text,
    payment_intent     text,
    gateway            text NOT NULL DEFAULT 'stripe',
    state              text NOT NULL
        CHECK (state IN ('open', 'expired', 'awaiting_payment', 'payment_failed', 'paid')),
    stripe_status      text,                    -- Stripe's status and payment_status words
    payment_status     text,
    amount_minor       bigint NOT NULL CHECK (amount_minor >= 0),
    currency           char(3) NOT NULL,
    url                text,
    command_id         text,
    balance_applied    boolean NOT NULL DEFAULT false, -- its payment lowered the balance
    last_event_at      timestamptz,
    version            bigint NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkout_sessions_customer ON checkout_sessions (customer_id, created_at DESC);

-- ---------------------------------------------------------------------
-- Stripe Connect: connected accounts, their bank accounts and cards, their
-- persons (ids and verification only), and an audit log of every event.
-- Each piece of an account's state keeps the created time (Unix seconds)
-- of the event that last set it.

CREATE TABLE connected_accounts (
    id                      text PRIMARY KEY,          -- acct_...
    is_active               boolean NOT NULL DEFAULT true,
    stripe_charges_enabled  boolean NOT NULL DEFAULT false, -- as Stripe last said
    stripe_payouts_enabled  boolean NOT NULL DEFAULT false,
    charges_enabled         boolean GENERATED ALWAYS AS (is_active AND stripe_charges_enabled) STORED,
    payouts_enabled         boolean GENERATED ALWAYS AS (is_active AND stripe_payouts_enabled) STORED,
    details_submitted       boolean NOT NULL DEFAULT false,
    capabilities            jsonb NOT NULL DEFAULT '{}',   -- name -> {status, at}
    currently_due           jsonb NOT NULL DEFAULT '[]',   -- requirements.currently_due
    disabled_reason         text,                          -- requirements.disabled_reason
    country                 text,
    default_currency        text,
    state                   text GENERATED ALWAYS AS (
        CASE WHEN NOT is_active THEN 'deauthorized'
             WHEN stripe_charges_enabled AND stripe_payouts_enabled THEN 'active'
             WHEN NOT details_submitted AND disabled_reason IS NULL THEN 'onboarding'
             ELSE 'restricted' END) STORED,
    -- created (Unix seconds) of the event that last set each piece
    synced_at               bigint NOT NULL DEFAULT 0,     -- details, requirements
    charges_at              bigint NOT NULL DEFAULT 0,
    payouts_at              bigint NOT NULL DEFAULT 0,
    authorization_at        bigint NOT NULL DEFAULT 0,
    onboarded_at            timestamptz,
    deauthorized_at         timestamptz,
    version                 bigint NOT NULL DEFAULT 0,     -- changes applied
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- Bank accounts and cards that payouts go to. Never a full number: last4,
-- bank name or brand. A deleted one stays as a tombstone so that a late
-- event cannot bring it back.
CREATE TABLE external_accounts (
    id                   text PRIMARY KEY,             -- ba_... or card_...
    account              text NOT NULL REFERENCES connected_accounts (id),
    object               text NOT NULL,                -- bank_account or card
    last4                text,
    bank_name            text,
    brand                text,
    country              text,
    currency             text,
    status               text,
    default_for_currency boolean NOT NULL DEFAULT false,
    deleted              boolean NOT NULL DEFAULT false,
    event_at             bigint NOT NULL DEFAULT 0,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX external_accounts_account ON external_accounts (account) WHERE NOT deleted;

-- Persons of an account, for the audit only: no name, no birth date, no
-- address, no id number.
CREATE TABLE account_persons (
    id                  text PRIMARY KEY,              -- person_...
    account             text NOT NULL REFERENCES connected_accounts (id),
    relationship        jsonb NOT NULL DEFAULT '{}',   -- representative, owner, director, executive
    verification_status text,
    deleted             boolean NOT NULL DEFAULT false,
    event_at            bigint NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Every Connect event once: its id is the dedupe key. changes says what
-- the event did (or why it did nothing), without personal data.
CREATE TABLE account_audit_log (
    event_id    text PRIMARY KEY,                      -- evt_...
    account     text,
    type        text NOT NULL,
    created     timestamptz NOT NULL,
    outcome     text NOT NULL
        CHECK (outcome IN ('applied', 'stale', 'unhandled', 'livemode_mismatch')),
    changes     jsonb NOT NULL DEFAULT '{}',
    message_id  text,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_audit_log_account ON account_audit_log (account, created);

-- Who may take payments on behalf of a connected account, besides admins
-- (paystream-admin accounts link ACCT --user U). The account may be linked
-- before its first event arrives.
CREATE TABLE account_links (
    account    text NOT NULL,                  -- acct_...
    actor      text NOT NULL,                  -- a user id
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, actor)
);

-- ---------------------------------------------------------------------
-- Domain events, written in the transaction of the change that causes them
-- and published to paystream.domain.events by a relay, in id order, which
-- keeps each aggregate's events in order. message_id is the envelope id of
-- every publication of the row, so a consumer dedupes a republished one.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    message_id   text NOT NULL DEFAULT gen_random_uuid()::text UNIQUE,
    aggregate    text NOT NULL,                         -- the Kafka key
    type         text NOT NULL,
    source       text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- ---------------------------------------------------------------------
-- Inventory (paystream-inventory). stock counts the units on hand, reserved
-- ones included; reserved, the units held for pending orders. The checks
-- keep both counts whole whatever a worker does: two workers racing for the
-- last unit cannot both win.

CREATE TABLE products (
    sku        text PRIMARY KEY CHECK (sku ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    stock      bigint NOT NULL CHECK (stock >= 0),
    reserved   bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    version    bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reserved_within_stock CHECK (reserved <= stock)
);

-- Each line of each order the worker saw, and where its units are:
-- reserved, committed (sold), released, restocked (sold, then refunded),
-- rejected_out_of_stock (the order asked for more than there was), or
-- unknown_sku.
CREATE TABLE stock_reservations (
    order_id   text NOT NULL,
    line       integer NOT NULL,
    sku        text NOT NULL,
    quantity   bigint NOT NULL CHECK (quantity > 0),
    status     text NOT NULL CHECK (status IN ('reserved', 'committed', 'released', 'restocked',
                                               'rejected_out_of_stock', 'unknown_sku')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, line)
);

-- Every change of a product's counts, append-only: what changed, why, and
-- the counts after it.
CREATE TABLE stock_movements (
    id             bigserial PRIMARY KEY,
    sku            text NOT NULL REFERENCES products (sku),
    kind           text NOT NULL CHECK (kind IN ('set', 'reserve', 'commit', 'release', 'restock')),
    order_id       text,
    stock_delta    bigint NOT NULL,
    reserved_delta bigint NOT NULL,
    stock_after    bigint NOT NULL,
    reserved_after bigint NOT NULL,
    message_id     text,                      -- the domain event that caused it
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_movements_sku ON stock_movements (sku, id);
CREATE RULE stock_movements_append_only_update AS ON UPDATE TO stock_movements DO INSTEAD NOTHING;
CREATE RULE stock_movements_append_only_delete AS ON DELETE TO stock_movements DO INSTEAD NOTHING;

-- The domain events the inventory worker applied: its dedupe.
CREATE TABLE inventory_inbox (
    message_id text PRIMARY KEY,
    type       text NOT NULL,
    outcome    text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------
-- Notifications (paystream-notifications)

-- Receivers of signed outbound webhooks: every domain event whose type is
-- in event_types ('*' for all) is posted to url, signed with secret.
CREATE TABLE webhook_subscribers (
    id          text PRIMARY KEY,
    url         text NOT NULL CHECK (url ~ '^https?://'),
    secret      text NOT NULL CHECK (length(secret) >= 16),
    event_types text[] NOT NULL DEFAULT '{*}',
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per message to send: an email (target: the address) or a
-- webhook (target: the subscriber). The unique key makes a domain event
-- delivered twice send nothing twice.
CREATE TABLE notifications (
    id          bigserial PRIMARY KEY,
    message_id  text NOT NULL,                 -- the domain event's
    event_type  text NOT NULL,
    aggregate   text NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('email', 'webhook')),
    target      text NOT NULL,
    template    text,                          -- of an email
    event       jsonb NOT NULL,                -- the domain event
    status      text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    next_try_at timestamptz NOT NULL DEFAULT now(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    UNIQUE (message_id, channel, target)
);
CREATE INDEX notifications_due ON notifications (next_try_at) WHERE status IN ('pending', 'sending');
