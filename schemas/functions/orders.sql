-- Orders: their state machine, the order commands, the API's views of them,
-- the domain events they raise and their expiry. An order is paid by its
-- own payments (payments.sql follows them to it).

-- Order states and the moves between them: paid by its payments, fulfilled,
-- refunded once every captured amount went back, or cancelled or expired
-- while pending.
CREATE FUNCTION ps_order_can_move(from_status text, to_status text) RETURNS boolean
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

-- An order as the API shows it, with its customer, expiry and where its
-- stock stands.
CREATE FUNCTION ps_order_json(p_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT jsonb_build_object(
        'id', o.id, 'object', 'order', 'number', o.number, 'status', o.status,
        'currency', o.currency, 'total_minor', o.total_minor,
        'items', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'product_id', i.product_id, 'name', i.name, 'quantity', i.quantity,
                      'unit_price_minor', i.unit_price_minor,
                      'line_total_minor', i.line_total_minor) ORDER BY i.line), '[]')
                  FROM order_items i WHERE i.order_id = o.id),
        'shipping_address', o.shipping_address, 'billing_address', o.billing_address,
        'metadata', o.metadata, 'version', o.version,
        'created_at', o.created_at, 'updated_at', o.updated_at,
        'email', o.email, 'customer_name', o.customer_name, 'expires_at', o.expires_at,
        'stock', ps_order_stock(o.id), 'cancellation_reason', o.cancellation_reason)
    FROM orders o WHERE o.id = p_id);
END $$;

-- The data of an order's domain events (domain-events.md).
CREATE FUNCTION ps_order_event_data(p_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT jsonb_build_object(
        'order_id', o.id, 'number', o.number, 'status', o.status, 'actor', o.actor,
        'cancellation_reason', o.cancellation_reason,
        'currency', o.currency, 'total_minor', o.total_minor,
        'email', o.email, 'customer_name', o.customer_name,
        'items', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'sku', i.product_id, 'name', i.name, 'quantity', i.quantity,
                      'unit_price_minor', i.unit_price_minor) ORDER BY i.line), '[]')
                  FROM order_items i WHERE i.order_id = o.id))
    FROM orders o WHERE o.id = p_id);
END $$;

-- Writes an order's items (a JSON array of {product_id, name, quantity,
-- unit_price_minor}) and returns their total. The intake has checked them;
-- the table's constraints check again for commands that come straight
-- from Kafka.
CREATE FUNCTION ps_order_write_items(p_order_id text, p_items jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_total bigint;
BEGIN
    DELETE FROM order_items WHERE order_id = p_order_id;
    INSERT INTO order_items (order_id, line, product_id, name, quantity, unit_price_minor,
                             line_total_minor)
    SELECT p_order_id, x.ord, x.product_id, x.name, x.quantity, x.unit_price_minor,
           x.quantity * x.unit_price_minor
    FROM ROWS FROM (jsonb_to_recordset(p_items)
             AS (product_id text, name text, quantity integer, unit_price_minor bigint))
         WITH ORDINALITY AS x(product_id, name, quantity, unit_price_minor, ord);
    SELECT coalesce(sum(line_total_minor), 0) INTO v_total
    FROM order_items WHERE order_id = p_order_id;
    RETURN v_total;
END $$;

-- The order p_id if p_actor may act on it (its owner, or an admin), locked.
CREATE FUNCTION ps_order_for(p_id text, p_actor text, p_admin boolean) RETURNS orders
LANGUAGE sql AS $$
    SELECT * FROM orders WHERE id = p_id AND (actor = p_actor OR p_admin) FOR UPDATE
$$;

-- What is still to pay on an order: its total less what its live payments
-- (not failed, not cancelled) are for.
CREATE FUNCTION ps_order_open_minor(p_order_id text) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT o.total_minor - coalesce((SELECT sum(p.amount_minor) FROM payments p
                                     WHERE p.order_id = o.id
                                       AND p.intent_status IN ('pending', 'processing', 'completed')), 0)
    FROM orders o WHERE o.id = p_order_id
$$;

-- Applies one order command (order.create, order.update, order.cancel);
-- returns the HTTP status and the result. A new order takes its customer's
-- email and name and a time to live; a new order and a change of a pending
-- order's items are domain events (a move of its status is one too, by
-- ps_order_status_event).
CREATE FUNCTION ps_order_command(p_type text, p_id text, p_actor text, p_admin boolean,
                                 p jsonb, OUT http_status integer, OUT result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    o orders;
BEGIN
    IF p_type = 'order.create' AND EXISTS (SELECT 1 FROM orders WHERE id = p_id) THEN
        http_status := 409;
        result := ps_key_expired();
        RETURN;
    ELSIF p_type = 'order.create' THEN
        INSERT INTO orders (id, actor, currency, total_minor, shipping_address,
                            billing_address, metadata, email, customer_name, expires_at)
        VALUES (p_id, p_actor, p->>'currency', 0, p->'shipping_address',
                p->'billing_address', p->'metadata', p->>'email', p->>'customer_name',
                now() + make_interval(secs => (p->>'expires_in')::integer));
        UPDATE orders SET total_minor = ps_order_write_items(p_id, p->'items') WHERE id = p_id;
        PERFORM ps_outbox_add('payments', 'order.created', p_id, ps_order_event_data(p_id));
        http_status := 201;
        result := ps_order_json(p_id);
        RETURN;
    END IF;

    o := ps_order_for(p_id, p_actor, p_admin);
    IF o.id IS NULL THEN
        http_status := 404;
        result := ps_error('resource_missing', 'no such order: ' || p_id, 'id');
        RETURN;
    END IF;
    IF p_type = 'order.update' THEN
        IF o.status <> 'pending' THEN
            http_status := 409;
            result := ps_error('order_not_pending',
                               'order ' || p_id || ' is ' || o.status || '; only a pending order can be changed');
            RETURN;
        END IF;
        UPDATE orders SET
            total_minor = CASE WHEN p ? 'items' THEN ps_order_write_items(p_id, p->'items')
                               ELSE total_minor END,
            shipping_address = CASE WHEN p ? 'shipping_address' THEN p->'shipping_address'
                                    ELSE shipping_address END,
            billing_address = CASE WHEN p ? 'billing_address' THEN p->'billing_address'
                                   ELSE billing_address END,
            metadata = CASE WHEN p ? 'metadata' THEN p->'metadata' ELSE metadata END,
            version = version + 1, updated_at = now()
        WHERE id = p_id;
        IF p ? 'items' THEN
            PERFORM ps_outbox_add('payments', 'order.updated', p_id, ps_order_event_data(p_id));
        END IF;
    ELSIF p_type = 'order.cancel' THEN
        IF NOT ps_order_can_move(o.status, 'cancelled') THEN
            http_status := 409;
            result := ps_error('order_not_cancellable',
                               'order ' || p_id || ' is ' || o.status || '; only a pending order can be cancelled');
            RETURN;
        END IF;
        UPDATE orders SET status = 'cancelled', cancellation_reason = 'requested',
                          version = version + 1, updated_at = now()
        WHERE id = p_id;
    ELSE
        RAISE EXCEPTION 'unknown order command %', p_type USING ERRCODE = 'invalid_parameter_value';
    END IF;
    http_status := 200;
    result := ps_order_json(p_id);
END $$;

-- The ords of the order creates of a batch that may be applied together:
-- new commands (not seen before, once in the batch) of new orders that no
-- other command of the batch names.
CREATE FUNCTION ps_order_creates_alone(p_commands jsonb) RETURNS bigint[]
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        WITH b AS MATERIALIZED (SELECT * FROM ps_command_rows(p_commands)),
        named AS (
            SELECT id, count(*) AS n
            FROM (SELECT resource_id AS id FROM b
                  UNION ALL SELECT params->>'order_id' FROM b WHERE params ? 'order_id') x
            GROUP BY id
        ), ids AS (SELECT command_id, count(*) AS n FROM b GROUP BY command_id)
        SELECT coalesce(array_agg(b.ord ORDER BY b.ord), '{}')
        FROM b JOIN named ON named.id = b.resource_id JOIN ids USING (command_id)
        WHERE b.type = 'order.create' AND named.n = 1 AND ids.n = 1
          -- Probes by key, never hashed: see ps_apply_inventory_events.
          AND (SELECT k.id FROM commands k WHERE k.id = b.command_id) IS NULL
          AND (SELECT o.id FROM orders o WHERE o.id = b.resource_id) IS NULL);
END $$;

-- Creates the orders of the commands p_ords of a batch as ps_order_command
-- does, one statement per table: the order with its total, customer and
-- expiry, its items, its order.created event and the command's result.
CREATE FUNCTION ps_order_create_batch(p_commands jsonb, p_ords bigint[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- In log order, so that order numbers follow it.
    INSERT INTO orders (id, actor, currency, total_minor, shipping_address, billing_address,
                        metadata, email, customer_name, expires_at)
    SELECT b.resource_id, b.actor, b.params->>'currency',
           (SELECT coalesce(sum(i.quantity * i.unit_price_minor), 0)
            FROM jsonb_to_recordset(b.params->'items') AS i(quantity integer, unit_price_minor bigint)),
           b.params->'shipping_address', b.params->'billing_address', b.params->'metadata',
           b.params->>'email', b.params->>'customer_name',
           now() + make_interval(secs => (b.params->>'expires_in')::integer)
    FROM ps_command_rows(p_commands) b WHERE b.ord = ANY (p_ords) ORDER BY b.ord;

    INSERT INTO order_items (order_id, line, product_id, name, quantity, unit_price_minor,
                             line_total_minor)
    SELECT b.resource_id, x.ord, x.product_id, x.name, x.quantity, x.unit_price_minor,
           x.quantity * x.unit_price_minor
    FROM ps_command_rows(p_commands) b,
         ROWS FROM (jsonb_to_recordset(b.params->'items')
             AS (product_id text, name text, quantity integer, unit_price_minor bigint))
         WITH ORDINALITY AS x(product_id, name, quantity, unit_price_minor, ord)
    WHERE b.ord = ANY (p_ords);

    INSERT INTO outbox (aggregate, type, source, payload)
    SELECT b.resource_id, 'order.created', 'payments',
           ps_outbox_payload('order.created', b.resource_id, ps_order_event_data(b.resource_id))
    FROM ps_command_rows(p_commands) b WHERE b.ord = ANY (p_ords) ORDER BY b.ord;

    INSERT INTO commands (id, actor, type, resource_id, request_sha256, message_id, http_status,
                          result)
    SELECT b.command_id, b.actor, b.type, b.resource_id, b.request_sha256, b.message_id, 201,
           ps_order_json(b.resource_id)
    FROM ps_command_rows(p_commands) b WHERE b.ord = ANY (p_ords);

    PERFORM pg_notify('ps_commands', b.command_id)
    FROM ps_command_rows(p_commands) b WHERE b.ord = ANY (p_ords);
    PERFORM pg_notify('ps_outbox', '');
END $$;

-- One page of the orders p_actor may see (all of them for an admin), newest
-- first, optionally of one status and after the order p_after (a cursor
-- from an earlier page): {"object":"list","data":[...],"has_more":bool}.
CREATE FUNCTION ps_orders_page(p_actor text, p_admin boolean, p_status text, p_after text,
                               p_limit integer) RETURNS jsonb LANGUAGE sql STABLE AS $$
    WITH cursor_row AS (
        SELECT a.created_at, a.id FROM orders a
        WHERE a.id = p_after AND (a.actor = p_actor OR p_admin)
    ), page AS (
        SELECT o.id, o.created_at FROM orders o
        WHERE (o.actor = p_actor OR p_admin)
          AND (p_status IS NULL OR o.status = p_status)
          AND (p_after IS NULL
               OR (o.created_at, o.id) < (SELECT c.created_at, c.id FROM cursor_row c))
        ORDER BY o.created_at DESC, o.id DESC
        LIMIT p_limit + 1
    ), shown AS (
        SELECT * FROM page ORDER BY created_at DESC, id DESC LIMIT p_limit
    )
    SELECT jsonb_build_object(
        'object', 'list',
        'data', coalesce((SELECT jsonb_agg(ps_order_json(s.id) ORDER BY s.created_at DESC, s.id DESC)
                          FROM shown s), '[]'),
        'has_more', (SELECT count(*) FROM page) > p_limit)
$$;

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

-- Cancels (reason out_of_stock) up to p_limit pending orders whose lines
-- the inventory rejected out of stock: they would otherwise wait for stock
-- that is not coming until they expire, or forever without an expiry. As
-- with expiry, an order with a payment under way or taken is left alone:
-- the inventory has logged it for an operator to settle. A payment being
-- started holds its order (ps_gateway_begin), so none starts on an order
-- this cancels.
CREATE FUNCTION ps_orders_cancel_out_of_stock(p_limit integer) RETURNS integer
LANGUAGE sql AS $$
    WITH due AS (
        SELECT o.id FROM orders o
        WHERE o.id IN (SELECT r.order_id FROM stock_reservations r
                       WHERE r.status = 'rejected_out_of_stock')
          AND o.status = 'pending'
          AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id
                          AND p.intent_status IN ('processing', 'completed'))
        LIMIT p_limit
        FOR UPDATE OF o SKIP LOCKED
    ), moved AS (
        UPDATE orders o SET status = 'cancelled', cancellation_reason = 'out_of_stock',
                            version = version + 1, updated_at = now()
        FROM due WHERE o.id = due.id RETURNING 1
    )
    SELECT count(*)::integer FROM moved
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
