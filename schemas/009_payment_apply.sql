-- Payments applied a batch at a time, made cheaper; same rules, same
-- results.
--
-- The triggers that follow a payment to its order and its domain events
-- fire once per payment of a batch, and they were most of PostgreSQL's time
-- in a batch of payments of orders. As in 008, the SQL functions they call
-- are PL/pgSQL now: PostgreSQL 15 parses and plans a LANGUAGE sql body
-- every time a calling query starts, and a trigger's queries start once per
-- row.

CREATE OR REPLACE FUNCTION ps_outbox_add(p_source text, p_type text, p_aggregate text, p_data jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (aggregate, type, source, payload)
    VALUES (p_aggregate, p_type, p_source, ps_outbox_payload(p_type, p_aggregate, p_data));
    PERFORM pg_notify('ps_outbox', '');
END $$;

-- The data of a payment's domain events (007), its order read once: whom
-- to write to is the order's customer, else the billing customer the payment
-- was made for. ps_payment_contact, which read the order a second time for
-- that, goes.
CREATE OR REPLACE FUNCTION ps_payment_event_data(p payments) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
            'payment_id', p.id, 'order_id', p.order_id, 'order_number', o.number,
            'gateway', p.gateway, 'gateway_payment_id', p.gateway_payment_id,
            'amount_minor', p.amount_minor, 'currency', p.currency,
            'captured_minor', p.captured_minor, 'refunded_minor', p.refunded_minor,
            'email', coalesce(o.email, c.email),
            'customer_name', coalesce(o.customer_name, c.name))
        FROM (SELECT 1) x
        LEFT JOIN orders o ON o.id = p.order_id
        LEFT JOIN customers c ON p.customer IS NOT NULL
                             AND (c.id = p.customer OR c.stripe_customer_id = p.customer)
        LIMIT 1);
END $$;
DROP FUNCTION ps_payment_contact(payments);

-- An order follows its payments (004): the refund move is tried only when
-- the sums call for it, not once more for every payment that completes.
CREATE OR REPLACE FUNCTION ps_order_follow_payments() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_captured bigint;
    v_refunded bigint;
BEGIN
    SELECT coalesce(sum(captured_minor), 0), coalesce(sum(refunded_minor), 0)
      INTO v_captured, v_refunded
      FROM payments WHERE order_id = NEW.order_id AND intent_status = 'completed';
    IF v_captured > v_refunded THEN
        UPDATE orders SET status = 'paid', version = version + 1, updated_at = now()
         WHERE id = NEW.order_id AND status = 'pending' AND v_captured >= total_minor;
    ELSIF v_captured > 0 THEN
        UPDATE orders SET status = 'refunded', version = version + 1, updated_at = now()
         WHERE id = NEW.order_id AND ps_order_can_move(status, 'refunded');
    END IF;
    RETURN NULL;
END $$;
