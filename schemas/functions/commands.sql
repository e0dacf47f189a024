-- Commands: every write of the API is a command that the intake validates
-- and publishes and the payments worker applies, once, recording its result
-- in commands (the row is the dedupe: a command applied twice finds it).
-- The intake reads commands to answer GET /api/v1/commands/{id}, Prefer:
-- wait (woken by NOTIFY ps_commands) and retried Idempotency-Keys.

-- An error result: {"error": {type, code, message, param}}.
CREATE FUNCTION ps_error(p_code text, p_message text, p_param text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('error', jsonb_strip_nulls(jsonb_build_object(
        'type', 'invalid_request_error', 'code', p_code, 'message', p_message, 'param', p_param)))
$$;

-- The result of a command whose resource (or gateway call) exists while the
-- command is not in commands: its Idempotency-Key was used before, longer
-- ago than commands keeps it (PAYSTREAM_IDEMPOTENCY_HOURS; see
-- retention.sql). Nothing is made or called again.
CREATE FUNCTION ps_key_expired() RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT ps_error('idempotency_key_expired',
                    'this Idempotency-Key was used longer ago than its result is kept; '
                    || 'send a new request with a new key', 'Idempotency-Key')
$$;

-- Records command c's result and announces it (see ps_apply_commands).
CREATE FUNCTION ps_command_record(c jsonb, p_status integer, p_result jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO commands (id, actor, type, resource_id, request_sha256, message_id, http_status,
                          result)
    VALUES (c->>'command_id', c->>'actor', c->>'type', c->>'resource_id', c->>'request_sha256',
            c->>'message_id', p_status, p_result);
    SELECT pg_notify('ps_commands', c->>'command_id');
$$;

-- The commands of a batch as rows, in log order (ord from 1).
CREATE FUNCTION ps_command_rows(p_commands jsonb)
RETURNS TABLE (ord bigint, command_id text, type text, resource_id text, request_sha256 text,
               actor text, admin boolean, message_id text, params jsonb)
LANGUAGE sql IMMUTABLE AS $$
    SELECT x.ord, x.command_id, x.type, x.resource_id, x.request_sha256, x.actor,
           coalesce(x.admin, false), x.message_id, x.params
    FROM ROWS FROM (jsonb_to_recordset(p_commands)
             AS (command_id text, type text, resource_id text, request_sha256 text,
                 actor text, admin boolean, message_id text, params jsonb))
         WITH ORDINALITY AS x(command_id, type, resource_id, request_sha256, actor, admin,
                              message_id, params, ord)
$$;

-- Applies a batch of commands ({command_id, type, resource_id,
-- request_sha256, actor, admin, message_id, params}) that need no gateway
-- call (order.*, payment.create, product.put), each once: a command whose
-- id is already in commands is a duplicate and changes nothing, and one
-- the rules refuse (403, 404, 409) is still applied, its result being that
-- error. Every applied command is announced on the ps_commands channel at
-- commit.
--
-- Most of a batch of shop traffic is order.create of orders nothing else in
-- the batch touches: those go first, one statement per table
-- (ps_order_create_batch); the others follow one by one in log order.
CREATE FUNCTION ps_apply_commands(p_commands jsonb)
RETURNS TABLE (ord bigint, command_id text, outcome text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_alone bigint[] := ps_order_creates_alone(p_commands);
    c       record;
    r       record;
BEGIN
    IF cardinality(v_alone) > 0 THEN
        PERFORM ps_order_create_batch(p_commands, v_alone);
        RETURN QUERY SELECT b.ord, b.command_id, 'applied'::text
                     FROM ps_command_rows(p_commands) b WHERE b.ord = ANY (v_alone);
    END IF;
    FOR c IN SELECT * FROM ps_command_rows(p_commands) b
             WHERE NOT b.ord = ANY (v_alone) ORDER BY b.ord LOOP
        ord := c.ord;
        command_id := c.command_id;
        IF EXISTS (SELECT 1 FROM commands k WHERE k.id = c.command_id) THEN
            outcome := 'duplicate';
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF c.type LIKE 'order.%' THEN
            r := ps_order_command(c.type, c.resource_id, c.actor, c.admin, c.params);
        ELSIF c.type = 'payment.create' THEN
            r := ps_payment_create(c.resource_id, c.actor, c.admin, c.params);
        ELSIF c.type = 'product.put' THEN
            r := ps_product_command(c.resource_id, c.admin, c.params);
        ELSE
            RAISE EXCEPTION 'unknown command type %', c.type USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM ps_command_record(to_jsonb(c), r.http_status, r.result);
        outcome := CASE WHEN r.http_status < 300 THEN 'applied' ELSE 'refused' END;
        RETURN NEXT;
    END LOOP;
END $$;
