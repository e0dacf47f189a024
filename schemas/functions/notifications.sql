-- Notifications (paystream-notifications): the messages a domain event
-- warrants, and taking and finishing them.

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
