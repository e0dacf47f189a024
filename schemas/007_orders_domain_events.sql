-- Orders and payments tell the rest of the shop what happened to them:
-- domain events written to the outbox (006) in the transaction of the
-- change, for paystream-inventory and paystream-notifications. The types
-- and their data are listed in domain-events.md.

-- Who to write to about an order, and when an unpaid order lapses.
ALTER TABLE orders ADD COLUMN email text, ADD COLUMN customer_name text,
                   ADD COLUMN expires_at timestamptz;
ALTER TABLE orders DROP CONSTRAINT orders_status_check, ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'paid', 'processing', 'shipped', 'delivered', 'cancelled',
                      'expired', 'refunded'));
-- The pending orders that lapse, soonest first: the expiry sweep's order.
CREATE INDEX orders_expiring ON orders (expires_at) WHERE status = 'pending' AND expires_at IS NOT NULL;

CREATE OR REPLACE FUNCTION ps_order_can_move(from_status text, to_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE from_status
        WHEN 'pending'    THEN to_status IN ('paid', 'cancelled', 'expired')
        WHEN 'paid'       THEN to_status IN ('processing', 'refunded')
        WHEN 'processing' THEN to_status IN ('shipped', 'refunded')
        WHEN 'shipped'    THEN to_status IN ('delivered', 'refunded')
        WHEN 'delivered'  THEN to_status IN ('refunded')
        ELSE false
    END
$$;

-- The data of an order's domain events.
CREATE FUNCTION ps_order_event_data(p_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'order_id', o.id, 'number', o.number, 'status', o.status, 'actor', o.actor,
        'currency', o.currency, 'total_minor', o.total_minor,
        'email', o.email, 'customer_name', o.customer_name,
        'items', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'sku', i.product_id, 'name', i.name, 'quantity', i.quantity,
                      'unit_price_minor', i.unit_price_minor) ORDER BY i.line), '[]')
                  FROM order_items i WHERE i.order_id = o.id))
    FROM orders o WHERE o.id = p_id
$$;

-- Every move of an order's status is an event: order.paid, order.cancelled,
-- order.expired, order.refunded, ...
CREATE FUNCTION ps_order_status_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_outbox_add('payments', 'order.' || NEW.status, NEW.id, ps_order_event_data(NEW.id));
    RETURN NULL;
END $$;
CREATE TRIGGER orders_status_event AFTER UPDATE OF status ON orders
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION ps_order_status_event();

-- order.create takes a customer's email and name and a time to live;
-- order.create and a change of a pending order's items are events.
ALTER FUNCTION ps_order_command(text, text, text, boolean, jsonb) RENAME TO ps_order_command_base;
CREATE FUNCTION ps_order_command(p_type text, p_id text, p_actor text, p_admin boolean,
                                 p jsonb, OUT http_status integer, OUT result jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT c.http_status, c.result INTO http_status, result
    FROM ps_order_command_base(p_type, p_id, p_actor, p_admin, p) c;
    IF p_type = 'order.create' AND http_status = 201 THEN
        IF p ?| array['email', 'customer_name', 'expires_in'] THEN
            UPDATE orders SET email = p->>'email', customer_name = p->>'customer_name',
                              expires_at = now() + make_interval(secs => (p->>'expires_in')::integer)
            WHERE id = p_id;
            result := ps_order_json(p_id);
        END IF;
        PERFORM ps_outbox_add('payments', 'order.created', p_id, ps_order_event_data(p_id));
    ELSIF p_type = 'order.update' AND http_status = 200 AND p ? 'items' THEN
        PERFORM ps_outbox_add('payments', 'order.updated', p_id, ps_order_event_data(p_id));
    END IF;
END $$;

-- Moves up to p_limit pending orders whose time ran out, and that no
-- payment is still under way for, to expired. Returns how many.
CREATE FUNCTION ps_orders_expire(p_limit integer) RETURNS integer LANGUAGE sql AS $$
    WITH due AS (
        SELECT o.id FROM orders o
        WHERE o.status = 'pending' AND o.expires_at <= now()
          AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id
                          AND p.intent_status IN ('processing', 'completed'))
        ORDER BY o.expires_at LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE orders o SET status = 'expired', version = version + 1, updated_at = now()
        FROM due WHERE o.id = due.id RETURNING 1
    )
    SELECT count(*)::integer FROM moved
$$;

-- Who to write to about a payment: its order's customer, else the
-- billing customer it was made for.
CREATE FUNCTION ps_payment_contact(p payments, OUT email text, OUT customer_name text)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(o.email, c.email), coalesce(o.customer_name, c.name)
    FROM (SELECT 1) x
    LEFT JOIN orders o ON o.id = p.order_id
    LEFT JOIN customers c ON p.customer IS NOT NULL
                         AND (c.id = p.customer OR c.stripe_customer_id = p.customer)
    LIMIT 1
$$;

-- The data of a payment's domain events.
CREATE FUNCTION ps_payment_event_data(p payments) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'payment_id', p.id, 'order_id', p.order_id, 'order_number', o.number,
        'gateway', p.gateway, 'gateway_payment_id', p.gateway_payment_id,
        'amount_minor', p.amount_minor, 'currency', p.currency,
        'captured_minor', p.captured_minor, 'refunded_minor', p.refunded_minor,
        'email', k.email, 'customer_name', k.customer_name)
    FROM ps_payment_contact(p) k LEFT JOIN orders o ON o.id = p.order_id
$$;

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

-- ---------------------------------------------------------------------
-- Inventory (paystream-inventory)
--
-- stock counts the units on hand, reserved ones included; reserved, the
-- units held for pending orders. An order's lines are reserved when it is
-- created, committed (taken out of stock) when it is paid, released when
-- it is cancelled or expires, and put back on a full refund. The checks
-- below keep both counts whole whatever a worker does: two workers racing
-- for the last unit cannot both win.
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

-- Admin: adds a product or sets its name and units on hand. Stock below
-- what is reserved is refused (reserved_within_stock).
CREATE FUNCTION ps_product_put(p_sku text, p_name text, p_stock bigint) RETURNS products
LANGUAGE plpgsql AS $$
DECLARE
    v_old bigint;
    r     products;
BEGIN
    SELECT stock INTO v_old FROM products WHERE sku = p_sku FOR UPDATE;
    INSERT INTO products AS p (sku, name, stock) VALUES (p_sku, p_name, p_stock)
    ON CONFLICT (sku) DO UPDATE SET name = coalesce(EXCLUDED.name, p.name), stock = EXCLUDED.stock,
                                    version = p.version + 1, updated_at = now()
    RETURNING * INTO r;
    INSERT INTO stock_movements (sku, kind, stock_delta, reserved_delta, stock_after, reserved_after)
    VALUES (r.sku, 'set', r.stock - coalesce(v_old, 0), 0, r.stock, r.reserved);
    RETURN r;
END $$;

-- Moves the lines of p_order that are p_from to p_to and changes their
-- products' counts by the lines' quantities times p_stock and p_reserved
-- (-1, 0 or 1), with a movement of p_kind each. Returns the lines moved.
CREATE FUNCTION ps_stock_move(p_order text, p_from text, p_to text, p_kind text,
                              p_stock integer, p_reserved integer, p_message text)
RETURNS integer LANGUAGE sql AS $$
    WITH lines AS (
        UPDATE stock_reservations SET status = p_to, updated_at = now()
        WHERE order_id = p_order AND status = p_from RETURNING sku, quantity
    ), need AS (
        SELECT sku, sum(quantity) AS q, count(*) AS n FROM lines GROUP BY sku
    ), changed AS (
        UPDATE products p SET stock = p.stock + p_stock * n.q, reserved = p.reserved + p_reserved * n.q,
                              version = p.version + 1, updated_at = now()
        FROM need n WHERE p.sku = n.sku
        RETURNING p.sku, n.q, n.n, p.stock, p.reserved
    ), logged AS (
        INSERT INTO stock_movements (sku, kind, order_id, stock_delta, reserved_delta, stock_after,
                                     reserved_after, message_id)
        SELECT sku, p_kind, p_order, p_stock * q, p_reserved * q, stock, reserved, p_message
        FROM changed RETURNING 1
    )
    SELECT coalesce(sum(n), 0)::integer FROM changed
$$;

-- The lines of an order event's data: (line, sku, quantity).
CREATE FUNCTION ps_event_lines(d jsonb) RETURNS TABLE (line integer, sku text, quantity bigint)
LANGUAGE sql IMMUTABLE AS $$
    SELECT x.ord::integer, x.item->>'sku', (x.item->>'quantity')::bigint
    FROM jsonb_array_elements(d->'items') WITH ORDINALITY AS x(item, ord)
$$;

-- Reserves the lines of a new (or changed) order, all of them or none: an
-- order asking for more of a product than is free is rejected_out_of_stock
-- (and says so in an order.rejected_out_of_stock event); a line of an
-- unknown product is reported and the others go on without it.
CREATE FUNCTION ps_stock_reserve(d jsonb, p_message text, OUT outcome text, OUT note jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_order   text := d->>'order_id';
    v_short   jsonb;
    v_unknown jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('line', l.line, 'sku', l.sku) ORDER BY l.line) INTO v_unknown
    FROM ps_event_lines(d) l WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.sku = l.sku);
    SELECT jsonb_agg(jsonb_build_object('sku', p.sku, 'requested', n.q,
                                        'available', p.stock - p.reserved) ORDER BY p.sku) INTO v_short
    FROM (SELECT l.sku, sum(l.quantity) AS q FROM ps_event_lines(d) l GROUP BY l.sku) n
    JOIN products p ON p.sku = n.sku WHERE p.stock - p.reserved < n.q;

    INSERT INTO stock_reservations (order_id, line, sku, quantity, status)
    SELECT v_order, l.line, l.sku, l.quantity,
           CASE WHEN NOT EXISTS (SELECT 1 FROM products p WHERE p.sku = l.sku) THEN 'unknown_sku'
                WHEN v_short IS NOT NULL THEN 'rejected_out_of_stock'
                ELSE 'reserved' END
    FROM ps_event_lines(d) l
    ON CONFLICT (order_id, line) DO NOTHING;

    IF v_short IS NULL THEN
        -- Every product is locked (ps_apply_inventory_events) and was
        -- checked; the condition and reserved_within_stock hold anyway.
        WITH need AS (
            SELECT r.sku, sum(r.quantity) AS q FROM stock_reservations r
            WHERE r.order_id = v_order AND r.status = 'reserved' GROUP BY r.sku
        ), changed AS (
            UPDATE products p SET reserved = p.reserved + n.q, version = p.version + 1, updated_at = now()
            FROM need n WHERE p.sku = n.sku AND p.stock - p.reserved >= n.q
            RETURNING p.sku, n.q, p.stock, p.reserved
        )
        INSERT INTO stock_movements (sku, kind, order_id, stock_delta, reserved_delta, stock_after,
                                     reserved_after, message_id)
        SELECT c.sku, 'reserve', v_order, 0, c.q, c.stock, c.reserved, p_message FROM changed c;
        outcome := 'applied';
    ELSE
        PERFORM ps_outbox_add('inventory', 'order.rejected_out_of_stock', v_order,
                              jsonb_build_object('order_id', v_order, 'number', d->>'number',
                                                 'email', d->>'email', 'customer_name', d->>'customer_name',
                                                 'currency', d->>'currency', 'short', v_short));
        outcome := 'refused';
        note := jsonb_build_object('level', 'warn', 'msg', 'order rejected: out of stock',
                                   'fields', jsonb_build_object('order_id', v_order, 'short', v_short::text));
    END IF;
    IF v_unknown IS NOT NULL THEN
        note := jsonb_build_object('level', 'error', 'msg', 'order has lines of unknown products',
                                   'fields', jsonb_build_object('order_id', v_order,
                                                                'lines', v_unknown::text));
    END IF;
END $$;

-- Applies one domain event to stock.
CREATE FUNCTION ps_apply_inventory_event(e jsonb, p_restock boolean, OUT outcome text, OUT note jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_type  text := e->>'type';
    v_msg   text := e->>'message_id';
    v_order text := e->'data'->>'order_id';
    v_moved integer;
BEGIN
    INSERT INTO inventory_inbox (message_id, type, outcome) VALUES (v_msg, v_type, 'applied')
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        outcome := 'duplicate';
        RETURN;
    END IF;
    outcome := 'applied';
    CASE v_type
    WHEN 'order.created' THEN
        SELECT r.outcome, r.note INTO outcome, note FROM ps_stock_reserve(e->'data', v_msg) r;
    WHEN 'order.updated' THEN
        PERFORM ps_stock_move(v_order, 'reserved', 'released', 'release', 0, -1, v_msg);
        DELETE FROM stock_reservations
        WHERE order_id = v_order AND status IN ('released', 'rejected_out_of_stock', 'unknown_sku');
        SELECT r.outcome, r.note INTO outcome, note FROM ps_stock_reserve(e->'data', v_msg) r;
    WHEN 'order.paid' THEN
        v_moved := ps_stock_move(v_order, 'reserved', 'committed', 'commit', -1, -1, v_msg);
        IF EXISTS (SELECT 1 FROM stock_reservations
                   WHERE order_id = v_order AND status = 'rejected_out_of_stock') THEN
            note := jsonb_build_object('level', 'error',
                                       'msg', 'order paid that was rejected out of stock: refund or restock it',
                                       'fields', jsonb_build_object('order_id', v_order));
        END IF;
    WHEN 'order.cancelled', 'order.expired' THEN
        v_moved := ps_stock_move(v_order, 'reserved', 'released', 'release', 0, -1, v_msg);
    WHEN 'order.refunded' THEN
        IF p_restock THEN
            v_moved := ps_stock_move(v_order, 'committed', 'restocked', 'restock', 1, 0, v_msg);
        ELSE
            outcome := 'ignored';
        END IF;
    ELSE
        outcome := 'ignored';
    END CASE;
    IF outcome <> 'applied' THEN
        UPDATE inventory_inbox SET outcome = ps_apply_inventory_event.outcome WHERE message_id = v_msg;
    END IF;
END $$;

-- Applies a batch of domain events ({message_id, type, data}) in order.
-- The products they touch are locked first, in one order, so two workers
-- applying batches at once wait for each other instead of deadlocking.
CREATE FUNCTION ps_apply_inventory_events(p_events jsonb, p_restock boolean)
RETURNS TABLE (ord bigint, message_id text, outcome text, note jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    i bigint;
    r record;
BEGIN
    PERFORM 1 FROM products
    WHERE sku IN (SELECT it->>'sku' FROM jsonb_array_elements(p_events) x,
                  jsonb_array_elements(CASE WHEN jsonb_typeof(x->'data'->'items') = 'array'
                                            THEN x->'data'->'items' ELSE '[]' END) it)
    ORDER BY sku FOR UPDATE;
    FOR e, i IN SELECT x.value, x.ordinality FROM jsonb_array_elements(p_events) WITH ORDINALITY x LOOP
        r := ps_apply_inventory_event(e, p_restock);
        ord := i;
        message_id := e->>'message_id';
        outcome := r.outcome;
        note := r.note;
        RETURN NEXT;
    END LOOP;
END $$;

-- Where an order's stock stands, for the API: reserved, committed,
-- released, restocked, rejected_out_of_stock; NULL until the inventory
-- worker saw the order, or when it has no known product.
CREATE FUNCTION ps_order_stock(p_id text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN bool_or(status = 'rejected_out_of_stock') THEN 'rejected_out_of_stock'
                ELSE min(status) FILTER (WHERE status <> 'unknown_sku') END
    FROM stock_reservations WHERE order_id = p_id
$$;

-- The order as the API shows it, with its customer, expiry and stock.
ALTER FUNCTION ps_order_json(text) RENAME TO ps_order_json_base;
CREATE FUNCTION ps_order_json(p_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT ps_order_json_base(o.id) || jsonb_build_object(
        'email', o.email, 'customer_name', o.customer_name, 'expires_at', o.expires_at,
        'stock', ps_order_stock(o.id))
    FROM orders o WHERE o.id = p_id
$$;

-- A payment for an order that the inventory rejected is refused.
ALTER FUNCTION ps_payment_create(text, text, boolean, jsonb) RENAME TO ps_payment_create_in_stock;
CREATE FUNCTION ps_payment_create(p_id text, p_actor text, p_admin boolean, p jsonb,
                                  OUT http_status integer, OUT result jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    IF ps_order_stock(p->>'order_id') = 'rejected_out_of_stock' THEN
        http_status := 409;
        result := ps_error('order_out_of_stock', 'order ' || (p->>'order_id')
                           || ' asks for more than is in stock; it takes no payment', 'order_id');
        RETURN;
    END IF;
    SELECT c.http_status, c.result INTO http_status, result
    FROM ps_payment_create_in_stock(p_id, p_actor, p_admin, p) c;
END $$;

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

-- The email template for a domain event, and whom it goes to: the
-- customer, or the platform's admins (p_admins).
CREATE FUNCTION ps_email_for(e jsonb, p_admins text[], OUT template text, OUT recipients text[])
LANGUAGE sql IMMUTABLE AS $$
    SELECT t.template,
           CASE WHEN t.admins THEN p_admins
                WHEN e->'data'->>'email' IS NOT NULL THEN ARRAY[e->'data'->>'email'] END
    FROM (VALUES ('order.paid', 'order_confirmation', false),
                 ('payment.failed', 'payment_failed', false),
                 ('payment.refunded', 'refund_issued', false),
                 ('checkout.voucher_issued', 'oxxo_voucher', false),
                 ('order.rejected_out_of_stock', 'out_of_stock', false),
                 ('account.deauthorized', 'account_deauthorized', true),
                 ('account.no_external_accounts', 'account_no_external_accounts', true))
         AS t(type, template, admins)
    WHERE t.type = e->>'type'
$$;

-- Plans the messages of a batch of domain events ({message_id, type,
-- aggregate, ...}): the emails the event warrants (unless p_email is off)
-- and a webhook per subscriber that wants it. Returns (ord, message_id,
-- outcome, note).
CREATE FUNCTION ps_plan_notifications(p_events jsonb, p_admins text[], p_email boolean)
RETURNS TABLE (ord bigint, message_id text, outcome text, note jsonb) LANGUAGE sql AS $$
    WITH ev AS (
        SELECT x.value AS e, x.ordinality AS i FROM jsonb_array_elements(p_events) WITH ORDINALITY x
    ), planned AS (
        SELECT ev.i, ev.e, 'email' AS channel, r.addr AS target, m.template
        FROM ev, ps_email_for(ev.e, p_admins) m, unnest(m.recipients) AS r(addr)
        WHERE p_email
        UNION ALL
        SELECT ev.i, ev.e, 'webhook', s.id, NULL
        FROM ev JOIN webhook_subscribers s
          ON s.active AND (s.event_types && ARRAY['*', ev.e->>'type'])
    ), added AS (
        INSERT INTO notifications (message_id, event_type, aggregate, channel, target, template, event)
        SELECT e->>'message_id', e->>'type', e->>'aggregate', channel, target, template, e
        FROM planned ORDER BY i
        ON CONFLICT (message_id, channel, target) DO NOTHING
        RETURNING notifications.message_id
    )
    SELECT ev.i, ev.e->>'message_id',
           CASE WHEN EXISTS (SELECT 1 FROM added a WHERE a.message_id = ev.e->>'message_id') THEN 'applied'
                WHEN EXISTS (SELECT 1 FROM planned p WHERE p.i = ev.i) THEN 'duplicate'
                ELSE 'ignored' END,
           NULL::jsonb
    FROM ev ORDER BY ev.i
$$;

-- Takes up to p_limit messages that are due, one per target at most and
-- none of a target with a message still in flight, so a slow receiver
-- holds back only its own. A taken message is 'sending' until p_lease_ms
-- from now: a sender that dies with it lets it be taken again then.
CREATE FUNCTION ps_notifications_take(p_limit integer, p_lease_ms integer)
RETURNS TABLE (id bigint, channel text, target text, template text, event jsonb, attempts integer,
               url text, secret text)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT DISTINCT ON (n.target) n.id FROM notifications n
        WHERE n.status IN ('pending', 'sending') AND n.next_try_at <= now()
          AND NOT EXISTS (SELECT 1 FROM notifications s
                          WHERE s.target = n.target AND s.status = 'sending'
                            AND s.next_try_at > now())
        ORDER BY n.target, n.id
        LIMIT p_limit
    ), locked AS (
        -- Checked again on the row as it is now: a sender that took it
        -- since this statement began has made it 'sending' until later.
        SELECT n.id FROM notifications n JOIN due USING (id)
        WHERE n.status IN ('pending', 'sending') AND n.next_try_at <= now()
        FOR UPDATE OF n SKIP LOCKED
    ), taken AS (
        UPDATE notifications n SET status = 'sending', attempts = n.attempts + 1,
                                   next_try_at = now() + make_interval(secs => p_lease_ms / 1000.0)
        FROM locked WHERE n.id = locked.id
        RETURNING n.*
    )
    SELECT t.id, t.channel, t.target, t.template, t.event, t.attempts, s.url, s.secret
    FROM taken t LEFT JOIN webhook_subscribers s ON t.channel = 'webhook' AND s.id = t.target
$$;

-- Records the end of an attempt: sent, or (p_error) tried again after an
-- exponential backoff with jitter from p_base_ms up to p_max_ms, until
-- p_attempts attempts have failed.
CREATE FUNCTION ps_notification_done(p_id bigint, p_error text, p_attempts integer,
                                     p_base_ms bigint, p_max_ms bigint) RETURNS text
LANGUAGE sql AS $$
    UPDATE notifications SET
        status = CASE WHEN p_error IS NULL THEN 'sent'
                      WHEN attempts >= p_attempts THEN 'failed' ELSE 'pending' END,
        sent_at = CASE WHEN p_error IS NULL THEN now() END,
        last_error = left(p_error, 500),
        next_try_at = CASE WHEN p_error IS NULL OR attempts >= p_attempts THEN next_try_at
                           ELSE now() + make_interval(secs =>
                               least(p_max_ms, p_base_ms * 2 ^ least(attempts - 1, 30))
                               * (0.75 + random() * 0.5) / 1000.0) END
    WHERE id = p_id
    RETURNING status
$$;

-- Dashboards: messages by channel and status, and the oldest still due.
CREATE VIEW dash_notifications AS
    SELECT channel, status, count(*) AS messages, min(next_try_at) AS oldest_next_try,
           max(attempts) AS most_attempts
    FROM notifications GROUP BY channel, status;

-- Dashboards: each product's counts and what is free to sell.
CREATE VIEW dash_stock AS
    SELECT sku, name, stock, reserved, stock - reserved AS available,
           (stock - reserved) = 0 AS sold_out, updated_at
    FROM products;
