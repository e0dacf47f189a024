-- Inventory (paystream-inventory): an order's lines are reserved when it
-- is created, committed (taken out of stock) when it is paid, released when
-- it is cancelled or expires, and put back on a full refund. The tables'
-- checks keep both counts whole whatever a worker does.
--
-- The functions called for every order of a batch are PL/pgSQL, not SQL:
-- PostgreSQL 15 parses and plans a LANGUAGE sql function's body each time a
-- query calling it starts, while PL/pgSQL keeps its plans for the session.

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

-- A product as the products API shows it.
CREATE FUNCTION ps_product_json(p products) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('object', 'product', 'sku', p.sku, 'name', p.name,
                              'stock', p.stock, 'reserved', p.reserved,
                              'available', p.stock - p.reserved, 'version', p.version,
                              'created_at', p.created_at, 'updated_at', p.updated_at)
$$;

-- GET /api/v1/products: a page of the catalog by sku, after p_after, for
-- admins (others see an empty list; the intake answers them 403 first).
-- p_filter is unused: every list page statement takes one.
CREATE FUNCTION ps_products_page(p_actor text, p_admin boolean, p_filter text, p_after text,
                                 p_limit integer) RETURNS jsonb LANGUAGE sql STABLE AS $$
    WITH page AS (
        SELECT p FROM products p
        WHERE p_admin AND (p_after IS NULL OR p.sku > p_after)
        ORDER BY p.sku LIMIT p_limit + 1
    ), shown AS (
        SELECT * FROM page ORDER BY (p).sku LIMIT p_limit
    )
    SELECT jsonb_build_object(
        'object', 'list',
        'data', coalesce((SELECT jsonb_agg(ps_product_json(s.p) ORDER BY (s.p).sku) FROM shown s),
                         '[]'),
        'has_more', (SELECT count(*) FROM page) > p_limit)
$$;

-- The product.put command of PUT /api/v1/products/{sku}: sets a product's
-- stock, and its name when one is given (a new product without one is
-- named after its sku), as paystream-admin products put does. Only an
-- admin may, and never below the units pending orders hold: the table's
-- check would refuse it, and the command would end as a dead letter
-- instead of an answer.
CREATE FUNCTION ps_product_command(p_sku text, p_admin boolean, p jsonb,
                                   OUT http_status integer, OUT result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_old products;
BEGIN
    IF NOT p_admin THEN
        http_status := 403;
        result := ps_error('admin_only', 'products are changed by admin keys only');
        RETURN;
    END IF;
    SELECT * INTO v_old FROM products WHERE sku = p_sku FOR UPDATE;
    IF (p->>'stock')::bigint < coalesce(v_old.reserved, 0) THEN
        http_status := 409;
        result := ps_error('stock_below_reserved', 'pending orders hold ' || v_old.reserved
                           || ' units of ' || p_sku || '; stock cannot be set below that',
                           'stock');
        RETURN;
    END IF;
    http_status := 200;
    result := ps_product_json(ps_product_put(p_sku, coalesce(p->>'name', v_old.name, p_sku),
                                             (p->>'stock')::bigint));
END $$;

-- Moves the lines of p_order that are p_from to p_to and changes their
-- products' counts by the lines' quantities times p_stock and p_reserved
-- (-1, 0 or 1), with a movement of p_kind each. Returns the lines moved.
CREATE FUNCTION ps_stock_move(p_order text, p_from text, p_to text, p_kind text,
                                         p_stock integer, p_reserved integer, p_message text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_moved integer;
BEGIN
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
    SELECT coalesce(sum(n), 0)::integer INTO v_moved FROM changed;
    RETURN v_moved;
END $$;

-- The lines of an order event's data: (line, sku, quantity).
CREATE FUNCTION ps_event_lines(d jsonb) RETURNS TABLE (line integer, sku text, quantity bigint)
LANGUAGE sql IMMUTABLE AS $$
    SELECT x.ord::integer, x.item->>'sku', (x.item->>'quantity')::bigint
    FROM jsonb_array_elements(d->'items') WITH ORDINALITY AS x(item, ord)
$$;

-- The domain events of a batch as rows, in log order (ord from 1).
CREATE FUNCTION ps_inventory_rows(p_events jsonb)
RETURNS TABLE (ord bigint, message_id text, type text, order_id text, data jsonb, at timestamptz)
LANGUAGE sql IMMUTABLE AS $$
    SELECT x.ordinality, x.value->>'message_id', x.value->>'type', x.value->'data'->>'order_id',
           x.value->'data', ps_message_at(x.value)
    FROM jsonb_array_elements(p_events) WITH ORDINALITY x
$$;

-- Reserves the order.created events p_lo..p_hi of a batch, each order all
-- of its lines or none, in log order, as ps_stock_reserve did one by one:
-- an order asking more of a product than is free then is
-- rejected_out_of_stock (with an order.rejected_out_of_stock event), a line
-- of an unknown product is reported and the others go on without it. The
-- caller has locked the products. p_inbox records the events in
-- inventory_inbox. Returns each event's outcome and note.
--
-- What is known of each event is kept in arrays indexed by its place in
-- the run, and products are looked up by key, line by line: the planner
-- cannot tell how many rows a JSON array holds, and the joins and hashed
-- lookups it picks for one row are repeated for every event.
CREATE FUNCTION ps_stock_reserve_run(p_events jsonb, p_lo bigint, p_hi bigint, p_inbox boolean)
RETURNS TABLE (ord bigint, message_id text, outcome text, note jsonb) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    -- Each order's demand of each known product, ordered by (ord, sku): the
    -- event, the product's dense index and what was free of it before.
    a_ord      bigint[];
    a_order    text[];
    a_msg      text[];
    a_sku      text[];
    a_q        bigint[];
    a_idx      integer[];
    a_free     bigint[];
    v_free     bigint[] := '{}';      -- free units by product index, as the run goes
    v_take     integer[] := '{}';     -- the a_ positions reserved
    -- By place in the run (ord - p_lo + 1): what a rejected order lacked,
    -- and the lines of unknown products.
    v_short    jsonb[] := array_fill(NULL::jsonb, ARRAY[(p_hi - p_lo + 1)::integer]);
    v_unknown  jsonb[];
    v_lacked   jsonb;
    v_fits     boolean;
    v_moves    bigint;
    n          integer;
    i          integer := 1;
    j          integer;
BEGIN
    SELECT array_agg(d.ord ORDER BY d.ord, d.sku), array_agg(d.order_id ORDER BY d.ord, d.sku),
           array_agg(d.message_id ORDER BY d.ord, d.sku), array_agg(d.sku ORDER BY d.ord, d.sku),
           array_agg(d.q ORDER BY d.ord, d.sku), array_agg(d.idx ORDER BY d.ord, d.sku),
           array_agg(d.free ORDER BY d.ord, d.sku)
    INTO a_ord, a_order, a_msg, a_sku, a_q, a_idx, a_free
    FROM (SELECT g.*, dense_rank() OVER (ORDER BY g.sku) AS idx
          FROM (SELECT e.ord, e.order_id, e.message_id, l.sku, sum(l.quantity) AS q,
                       (SELECT p.stock - p.reserved FROM products p WHERE p.sku = l.sku) AS free
                FROM ps_inventory_rows(p_events) e, ps_event_lines(e.data) l
                WHERE e.ord BETWEEN p_lo AND p_hi
                GROUP BY e.ord, e.order_id, e.message_id, l.sku) g
          WHERE g.free IS NOT NULL) d;
    SELECT array_agg(u.lines ORDER BY u.ord) INTO v_unknown
    FROM (SELECT e.ord,
                 (SELECT jsonb_agg(jsonb_build_object('line', l.line, 'sku', l.sku) ORDER BY l.line)
                  FROM ps_event_lines(e.data) l
                  WHERE (SELECT p.sku FROM products p WHERE p.sku = l.sku) IS NULL) AS lines
          FROM ps_inventory_rows(p_events) e WHERE e.ord BETWEEN p_lo AND p_hi) u;

    n := coalesce(cardinality(a_ord), 0);
    FOR k IN 1..n LOOP
        v_free[a_idx[k]] := a_free[k];
    END LOOP;
    -- Order by order: all of its lines fit, or it is rejected.
    WHILE i <= n LOOP
        j := i;
        v_fits := true;
        WHILE j <= n AND a_ord[j] = a_ord[i] LOOP
            v_fits := v_fits AND v_free[a_idx[j]] >= a_q[j];
            j := j + 1;
        END LOOP;
        IF v_fits THEN
            FOR k IN i..j - 1 LOOP
                v_free[a_idx[k]] := v_free[a_idx[k]] - a_q[k];
                v_take := v_take || k;
            END LOOP;
        ELSE
            v_lacked := '[]';
            FOR k IN i..j - 1 LOOP
                IF v_free[a_idx[k]] < a_q[k] THEN
                    v_lacked := v_lacked || jsonb_build_object('sku', a_sku[k], 'requested', a_q[k],
                                                               'available', v_free[a_idx[k]]);
                END IF;
            END LOOP;
            v_short[a_ord[i] - p_lo + 1] := v_lacked;
        END IF;
        i := j;
    END LOOP;

    -- Every line and where it stands. An order seen before fails the
    -- batch here (the primary key) rather than being reserved twice.
    INSERT INTO stock_reservations (order_id, line, sku, quantity, status)
    SELECT e.order_id, l.line, l.sku, l.quantity,
           CASE WHEN (SELECT p.sku FROM products p WHERE p.sku = l.sku) IS NULL THEN 'unknown_sku'
                WHEN v_short[e.ord - p_lo + 1] IS NOT NULL THEN 'rejected_out_of_stock'
                ELSE 'reserved' END
    FROM ps_inventory_rows(p_events) e, ps_event_lines(e.data) l
    WHERE e.ord BETWEEN p_lo AND p_hi;

    -- The reserved lines move their products, with a movement per order
    -- and product. The products are locked and were counted above; the
    -- condition and reserved_within_stock hold anyway, and a product the
    -- condition turned away fails the batch.
    WITH taken AS (
        SELECT a_ord[k] AS ord, a_order[k] AS order_id, a_msg[k] AS message_id, a_sku[k] AS sku,
               a_q[k] AS q
        FROM unnest(v_take) AS k
    ), need AS (
        SELECT sku, sum(q) AS q FROM taken GROUP BY sku
    ), changed AS (
        UPDATE products p SET reserved = p.reserved + n.q, version = p.version + 1, updated_at = now()
        FROM need n WHERE p.sku = n.sku AND p.stock - p.reserved >= n.q
        RETURNING p.sku, p.stock, p.reserved, n.q
    )
    INSERT INTO stock_movements (sku, kind, order_id, stock_delta, reserved_delta, stock_after,
                                 reserved_after, message_id)
    SELECT t.sku, 'reserve', t.order_id, 0, t.q, c.stock,
           c.reserved - c.q + sum(t.q) OVER (PARTITION BY t.sku ORDER BY t.ord), t.message_id
    FROM taken t JOIN changed c ON c.sku = t.sku
    ORDER BY t.ord, t.sku;
    GET DIAGNOSTICS v_moves = ROW_COUNT;
    IF v_moves <> cardinality(v_take) THEN
        RAISE EXCEPTION 'stock changed under a reservation: % movements for % reserved lines',
            v_moves, cardinality(v_take) USING ERRCODE = 'serialization_failure';
    END IF;

    INSERT INTO outbox (aggregate, type, source, payload)
    SELECT e.order_id, 'order.rejected_out_of_stock', 'inventory',
           ps_outbox_payload('order.rejected_out_of_stock', e.order_id, jsonb_build_object(
               'order_id', e.order_id, 'number', e.data->>'number', 'email', e.data->>'email',
               'customer_name', e.data->>'customer_name', 'currency', e.data->>'currency',
               'short', v_short[e.ord - p_lo + 1]))
    FROM ps_inventory_rows(p_events) e
    WHERE e.ord BETWEEN p_lo AND p_hi AND v_short[e.ord - p_lo + 1] IS NOT NULL
    ORDER BY e.ord;
    IF FOUND THEN
        PERFORM pg_notify('ps_outbox', '');
    END IF;

    RETURN QUERY
    WITH res AS (
        SELECT e.ord, e.message_id, e.type, e.order_id, e.at, v_short[e.ord - p_lo + 1] AS short,
               v_unknown[e.ord - p_lo + 1] AS unknown,
               CASE WHEN v_short[e.ord - p_lo + 1] IS NULL THEN 'applied' ELSE 'refused' END AS outcome
        FROM ps_inventory_rows(p_events) e WHERE e.ord BETWEEN p_lo AND p_hi
    ), inbox AS (
        INSERT INTO inventory_inbox (message_id, type, outcome, message_at)
        SELECT res.message_id, res.type, res.outcome, res.at FROM res WHERE p_inbox
    )
    SELECT res.ord, res.message_id, res.outcome,
           CASE WHEN res.unknown IS NOT NULL THEN
                    jsonb_build_object('level', 'error', 'msg', 'order has lines of unknown products',
                                       'fields', jsonb_build_object('order_id', res.order_id,
                                                                    'lines', res.unknown::text))
                WHEN res.short IS NOT NULL THEN
                    jsonb_build_object('level', 'warn', 'msg', 'order rejected: out of stock',
                                       'fields', jsonb_build_object('order_id', res.order_id,
                                                                    'short', res.short::text))
           END
    FROM res;
END $$;

-- Applies one domain event ({message_id, type, data}) to stock, deduped on
-- its message id: an event the batch path of ps_apply_inventory_events left
-- to go alone (an order reserved as a run of one, with its inbox row
-- written here).
CREATE FUNCTION ps_apply_inventory_event(e jsonb, p_restock boolean, OUT outcome text, OUT note jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_type  text := e->>'type';
    v_msg   text := e->>'message_id';
    v_order text := e->'data'->>'order_id';
    v_at    timestamptz := ps_message_at(e);
    v_moved integer;
BEGIN
    INSERT INTO inventory_inbox (message_id, type, outcome, message_at)
    VALUES (v_msg, v_type, 'applied', v_at)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        outcome := 'duplicate';
        RETURN;
    END IF;
    outcome := 'applied';
    CASE v_type
    WHEN 'order.created' THEN
        SELECT r.outcome, r.note INTO outcome, note
        FROM ps_stock_reserve_run(jsonb_build_array(e), 1, 1, false) r;
    WHEN 'order.updated' THEN
        PERFORM ps_stock_move(v_order, 'reserved', 'released', 'release', 0, -1, v_msg);
        DELETE FROM stock_reservations
        WHERE order_id = v_order AND status IN ('released', 'rejected_out_of_stock', 'unknown_sku');
        SELECT r.outcome, r.note INTO outcome, note
        FROM ps_stock_reserve_run(jsonb_build_array(e), 1, 1, false) r;
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
        UPDATE inventory_inbox SET outcome = ps_apply_inventory_event.outcome
        WHERE message_id = v_msg AND message_at = v_at;
    END IF;
END $$;

-- Applies a batch of domain events ({message_id, type, data}) in order.
-- The products they touch are locked first, in one order, so two workers
-- applying batches at once wait for each other instead of deadlocking.
-- Runs of new orders' order.created events (not seen before, of orders
-- nothing else in the batch names) are reserved together; every other
-- event goes alone through ps_apply_inventory_event in its place.
-- Its statements use their generic plans: left to choose, PostgreSQL
-- planned the inbox's single-row update afresh for every event: a generic
-- plan prunes the partitions as it starts, not when made, so it is costed
-- with all of them.
CREATE FUNCTION ps_apply_inventory_events(p_events jsonb, p_restock boolean)
RETURNS TABLE (ord bigint, message_id text, outcome text, note jsonb) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_plain boolean[];
    v_n     integer;
    v_lo    integer;
    i       integer := 1;
    r       record;
BEGIN
    -- By key (= ANY of an array): a catalog can be large.
    PERFORM 1 FROM products
    WHERE sku = ANY (ARRAY(SELECT it->>'sku' FROM jsonb_array_elements(p_events) x,
                           jsonb_array_elements(CASE WHEN jsonb_typeof(x->'data'->'items') = 'array'
                                                     THEN x->'data'->'items' ELSE '[]' END) it))
    ORDER BY sku FOR UPDATE;

    -- Tables are probed by key with scalar subqueries, not EXISTS: the
    -- plans of this function last the session, and one made while a table
    -- was small would hash all of it for every batch ever after.
    SELECT array_agg(x.plain ORDER BY x.ord) INTO v_plain
    FROM (SELECT e.ord,
                 e.type = 'order.created' AND e.message_id IS NOT NULL AND e.order_id IS NOT NULL
                 AND jsonb_typeof(e.data->'items') = 'array'
                 AND count(*) OVER (PARTITION BY e.message_id) = 1
                 AND count(*) OVER (PARTITION BY e.order_id) = 1
                 AND (SELECT b.message_id FROM inventory_inbox b
                      WHERE b.message_id = e.message_id AND b.message_at = e.at) IS NULL
                 AND (SELECT s.line FROM stock_reservations s
                      WHERE s.order_id = e.order_id LIMIT 1) IS NULL
                 AS plain
          FROM ps_inventory_rows(p_events) e) x;
    v_n := coalesce(cardinality(v_plain), 0);

    WHILE i <= v_n LOOP
        IF v_plain[i] THEN
            v_lo := i;
            WHILE i <= v_n AND v_plain[i] LOOP
                i := i + 1;
            END LOOP;
            RETURN QUERY SELECT * FROM ps_stock_reserve_run(p_events, v_lo, i - 1, true);
        ELSE
            r := ps_apply_inventory_event(p_events->(i - 1), p_restock);
            ord := i;
            message_id := p_events->(i - 1)->>'message_id';
            outcome := r.outcome;
            note := r.note;
            RETURN NEXT;
            i := i + 1;
        END IF;
    END LOOP;
END $$;

-- Where an order's stock stands, for the API: reserved, committed,
-- released, restocked, rejected_out_of_stock; NULL until the inventory
-- worker saw the order, or when it has no known product.
CREATE FUNCTION ps_order_stock(p_id text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT CASE WHEN bool_or(status = 'rejected_out_of_stock') THEN 'rejected_out_of_stock'
                        ELSE min(status) FILTER (WHERE status <> 'unknown_sku') END
            FROM stock_reservations WHERE order_id = p_id);
END $$;

-- Dashboards: each product's counts and what is free to sell.
CREATE VIEW dash_stock AS
    SELECT sku, name, stock, reserved, stock - reserved AS available,
           (stock - reserved) = 0 AS sold_out, updated_at
    FROM products;
