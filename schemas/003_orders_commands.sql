-- Orders, the API keys that act on them, and the commands that change them.
--
-- Every write of the API is a command: the intake validates it and publishes
-- it; the payments worker applies it (ps_apply_commands, in 004), once, and
-- records its result in commands (the row is the dedupe: a command applied
-- twice finds it). The
-- intake reads commands to answer GET /api/v1/commands/{id}, Prefer: wait
-- (woken by NOTIFY ps_commands) and retried Idempotency-Keys.

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

-- Order states of the shop and the moves between them: paid by a payment,
-- fulfilled, and refunded once every captured amount went back.
CREATE FUNCTION ps_order_can_move(from_status text, to_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE from_status
        WHEN 'pending'    THEN to_status IN ('paid', 'cancelled')
        WHEN 'paid'       THEN to_status IN ('processing', 'refunded')
        WHEN 'processing' THEN to_status IN ('shipped', 'refunded')
        WHEN 'shipped'    THEN to_status IN ('delivered', 'refunded')
        WHEN 'delivered'  THEN to_status IN ('refunded')
        ELSE false
    END
$$;

CREATE SEQUENCE order_numbers;

CREATE TABLE orders (
    id               text PRIMARY KEY,
    number           text NOT NULL UNIQUE
        DEFAULT 'PS-' || lpad(nextval('order_numbers')::text, 8, '0'),
    actor            text NOT NULL,            -- the owner
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paid', 'processing', 'shipped', 'delivered',
                          'cancelled', 'refunded')),
    currency         char(3) NOT NULL,
    total_minor      bigint NOT NULL CHECK (total_minor >= 0),
    shipping_address jsonb,
    billing_address  jsonb,
    metadata         jsonb,
    version          bigint NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- A user's orders, newest first: the list endpoint's order and cursor.
CREATE INDEX orders_by_actor ON orders (actor, created_at DESC, id DESC);

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

-- An order as the API shows it.
CREATE FUNCTION ps_order_json(p_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', o.id, 'object', 'order', 'number', o.number, 'status', o.status,
        'currency', o.currency, 'total_minor', o.total_minor,
        'items', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'product_id', i.product_id, 'name', i.name, 'quantity', i.quantity,
                      'unit_price_minor', i.unit_price_minor,
                      'line_total_minor', i.line_total_minor) ORDER BY i.line), '[]')
                  FROM order_items i WHERE i.order_id = o.id),
        'shipping_address', o.shipping_address, 'billing_address', o.billing_address,
        'metadata', o.metadata, 'version', o.version,
        'created_at', o.created_at, 'updated_at', o.updated_at)
    FROM orders o WHERE o.id = p_id
$$;

CREATE FUNCTION ps_error(p_code text, p_message text, p_param text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('error', jsonb_strip_nulls(jsonb_build_object(
        'type', 'invalid_request_error', 'code', p_code, 'message', p_message, 'param', p_param)))
$$;

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

-- Applies one order command; returns the HTTP status and the result.
CREATE FUNCTION ps_order_command(p_type text, p_id text, p_actor text, p_admin boolean,
                                 p jsonb, OUT http_status integer, OUT result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    o orders;
BEGIN
    IF p_type = 'order.create' THEN
        INSERT INTO orders (id, actor, currency, total_minor, shipping_address,
                            billing_address, metadata)
        VALUES (p_id, p_actor, p->>'currency', 0, p->'shipping_address',
                p->'billing_address', p->'metadata');
        UPDATE orders SET total_minor = ps_order_write_items(p_id, p->'items') WHERE id = p_id;
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
    ELSIF p_type = 'order.cancel' THEN
        IF NOT ps_order_can_move(o.status, 'cancelled') THEN
            http_status := 409;
            result := ps_error('order_not_cancellable',
                               'order ' || p_id || ' is ' || o.status || '; only a pending order can be cancelled');
            RETURN;
        END IF;
        UPDATE orders SET status = 'cancelled', version = version + 1, updated_at = now()
        WHERE id = p_id;
    ELSE
        RAISE EXCEPTION 'unknown order command %', p_type USING ERRCODE = 'invalid_parameter_value';
    END IF;
    http_status := 200;
    result := ps_order_json(p_id);
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
