-- Stripe Connect: applying the Connect endpoint's events to connected
-- accounts, their bank accounts and cards and their persons, and who may
-- take payments on behalf of an account.
--
-- Each piece of an account's state keeps the created time of the event
-- that last set it, and an event changes a piece only when it is newer; at
-- the same second a disabled flag or a lower capability status wins. So the
-- state an account ends in does not depend on the order its events arrive.
-- An account deauthorized stays inactive until an authorization newer than
-- the deauthorization, whatever account.updated says afterwards.

-- Capability statuses, lowest first: at the same second the lower wins.
CREATE FUNCTION ps_capability_rank(p_status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_status WHEN 'inactive' THEN 0 WHEN 'pending' THEN 1
                         WHEN 'unrequested' THEN 2 WHEN 'active' THEN 3 ELSE 0 END
$$;

-- A flag set by an event at p_at over one set at p_old_at: the newer wins,
-- and at the same second false wins.
CREATE FUNCTION ps_flag_merge(p_old boolean, p_old_at bigint, p_new boolean, p_at bigint)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_new IS NULL OR p_at < p_old_at THEN p_old
                WHEN p_at > p_old_at THEN p_new
                ELSE p_old AND p_new END
$$;

-- Capabilities p_caps (name -> status) seen at p_at merged into p_old
-- (name -> {status, at}).
CREATE FUNCTION ps_capabilities_merge(p_old jsonb, p_caps jsonb, p_at bigint)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT p_old || coalesce(jsonb_object_agg(c.key, jsonb_build_object('status', c.value, 'at', p_at)),
                             '{}')
    FROM jsonb_each_text(CASE WHEN jsonb_typeof(p_caps) = 'object' THEN p_caps ELSE '{}' END) c
    WHERE p_old->c.key IS NULL
       OR (p_old->c.key->>'at')::bigint < p_at
       OR ((p_old->c.key->>'at')::bigint = p_at
           AND ps_capability_rank(c.value) < ps_capability_rank(p_old->c.key->>'status'))
$$;

-- An account as the API shows it: its state, its payout destinations and
-- its latest audit entries.
CREATE FUNCTION ps_account_json(p_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', a.id, 'object', 'connected_account', 'state', a.state,
        'is_active', a.is_active, 'charges_enabled', a.charges_enabled,
        'payouts_enabled', a.payouts_enabled, 'details_submitted', a.details_submitted,
        'capabilities', (SELECT coalesce(jsonb_object_agg(k, a.capabilities->k->'status'), '{}')
                         FROM jsonb_object_keys(a.capabilities) k),
        'requirements', jsonb_build_object('currently_due', a.currently_due,
                                           'disabled_reason', a.disabled_reason),
        'country', a.country, 'default_currency', a.default_currency,
        'onboarded_at', a.onboarded_at, 'deauthorized_at', a.deauthorized_at,
        'version', a.version, 'updated_at', a.updated_at,
        'external_accounts', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'id', e.id, 'object', e.object, 'last4', e.last4, 'bank_name', e.bank_name,
                       'brand', e.brand, 'country', e.country, 'currency', e.currency,
                       'status', e.status, 'default_for_currency', e.default_for_currency)
                       ORDER BY e.id), '[]')
            FROM external_accounts e WHERE e.account = a.id AND NOT e.deleted),
        'persons', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'id', p.id, 'relationship', p.relationship,
                       'verification_status', p.verification_status) ORDER BY p.id), '[]')
            FROM account_persons p WHERE p.account = a.id AND NOT p.deleted),
        'recent_events', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'event_id', l.event_id, 'type', l.type, 'created', l.created,
                       'outcome', l.outcome, 'changes', l.changes) ORDER BY l.created DESC), '[]')
            FROM (SELECT * FROM account_audit_log WHERE account = a.id
                  ORDER BY created DESC, applied_at DESC LIMIT 20) l))
    FROM connected_accounts a WHERE a.id = p_id
$$;

-- The log line for a change of one event: {level, msg, fields...}.
CREATE FUNCTION ps_connect_note(p_level text, p_msg text, e jsonb, p_extra jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('level', p_level, 'msg', p_msg, 'event_id', e->>'event_id',
                              'type', e->>'type', 'account', e->>'account') || p_extra
$$;

-- account.updated: details, requirements, flags and capabilities, each
-- when newer. Returns what changed (names to new values), or NULL when the
-- event is older than the account's state and changed nothing.
CREATE FUNCTION ps_connect_account_updated(a connected_accounts, e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    o       jsonb := e->'object';
    v_at    bigint := (e->>'created')::bigint;
    n       connected_accounts;
    v_diff  jsonb := '{}';
BEGIN
    n := a;
    IF v_at >= a.synced_at THEN
        n.details_submitted := coalesce((o->>'details_submitted')::boolean, a.details_submitted);
        n.currently_due := coalesce(o->'requirements'->'currently_due', '[]');
        n.disabled_reason := o->'requirements'->>'disabled_reason';
        n.country := coalesce(o->>'country', a.country);
        n.default_currency := coalesce(upper(o->>'default_currency'), a.default_currency);
        n.synced_at := v_at;
    END IF;
    n.stripe_charges_enabled := ps_flag_merge(a.stripe_charges_enabled, a.charges_at,
                                              (o->>'charges_enabled')::boolean, v_at);
    n.charges_at := CASE WHEN o ? 'charges_enabled' THEN greatest(a.charges_at, v_at) ELSE a.charges_at END;
    n.stripe_payouts_enabled := ps_flag_merge(a.stripe_payouts_enabled, a.payouts_at,
                                              (o->>'payouts_enabled')::boolean, v_at);
    n.payouts_at := CASE WHEN o ? 'payouts_enabled' THEN greatest(a.payouts_at, v_at) ELSE a.payouts_at END;
    n.capabilities := ps_capabilities_merge(a.capabilities, o->'capabilities', v_at);

    IF n.details_submitted IS DISTINCT FROM a.details_submitted THEN
        v_diff := v_diff || jsonb_build_object('details_submitted', n.details_submitted);
    END IF;
    IF n.stripe_charges_enabled IS DISTINCT FROM a.stripe_charges_enabled THEN
        v_diff := v_diff || jsonb_build_object('charges_enabled', n.stripe_charges_enabled);
    END IF;
    IF n.stripe_payouts_enabled IS DISTINCT FROM a.stripe_payouts_enabled THEN
        v_diff := v_diff || jsonb_build_object('payouts_enabled', n.stripe_payouts_enabled);
    END IF;
    IF n.currently_due IS DISTINCT FROM a.currently_due THEN
        v_diff := v_diff || jsonb_build_object('currently_due', n.currently_due);
    END IF;
    IF n.disabled_reason IS DISTINCT FROM a.disabled_reason THEN
        v_diff := v_diff || jsonb_build_object('disabled_reason', n.disabled_reason);
    END IF;
    IF n.capabilities IS DISTINCT FROM a.capabilities THEN
        v_diff := v_diff || jsonb_build_object('capabilities',
            (SELECT jsonb_object_agg(k, n.capabilities->k->'status') FROM jsonb_object_keys(n.capabilities) k
             WHERE a.capabilities->k->'status' IS DISTINCT FROM n.capabilities->k->'status'));
    END IF;
    IF v_diff = '{}' AND v_at < greatest(a.synced_at, a.charges_at, a.payouts_at) THEN
        RETURN NULL; -- older than what is known, and nothing of it was news
    END IF;
    UPDATE connected_accounts SET
        details_submitted = n.details_submitted, currently_due = n.currently_due,
        disabled_reason = n.disabled_reason, country = n.country,
        default_currency = n.default_currency, synced_at = n.synced_at,
        stripe_charges_enabled = n.stripe_charges_enabled, charges_at = n.charges_at,
        stripe_payouts_enabled = n.stripe_payouts_enabled, payouts_at = n.payouts_at,
        capabilities = n.capabilities
    WHERE id = a.id;
    RETURN v_diff;
END $$;

-- capability.updated: card_payments drives charges, transfers payouts.
-- Returns what changed, or NULL for an older event that changed nothing.
CREATE FUNCTION ps_connect_capability_updated(a connected_accounts, e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_name   text := e->'object'->>'id';
    v_status text := e->'object'->>'status';
    v_at     bigint := (e->>'created')::bigint;
    v_caps   jsonb;
    v_diff   jsonb := '{}';
BEGIN
    v_caps := ps_capabilities_merge(a.capabilities, jsonb_build_object(v_name, v_status), v_at);
    IF v_caps->v_name->'status' IS DISTINCT FROM a.capabilities->v_name->'status' THEN
        v_diff := jsonb_build_object('capabilities', jsonb_build_object(v_name, v_status),
                                     'previous_status', a.capabilities->v_name->'status');
    END IF;
    IF v_name = 'card_payments' AND v_status IN ('active', 'inactive') THEN
        UPDATE connected_accounts SET
            stripe_charges_enabled = ps_flag_merge(stripe_charges_enabled, charges_at,
                                                   v_status = 'active', v_at),
            charges_at = greatest(charges_at, v_at)
        WHERE id = a.id;
    ELSIF v_name = 'transfers' AND v_status IN ('active', 'inactive') THEN
        UPDATE connected_accounts SET
            stripe_payouts_enabled = ps_flag_merge(stripe_payouts_enabled, payouts_at,
                                                   v_status = 'active', v_at),
            payouts_at = greatest(payouts_at, v_at)
        WHERE id = a.id;
    END IF;
    UPDATE connected_accounts SET capabilities = v_caps WHERE id = a.id;
    IF v_diff = '{}' AND v_at < coalesce((a.capabilities->v_name->>'at')::bigint, 0) THEN
        RETURN NULL;
    END IF;
    RETURN v_diff;
END $$;

-- account.external_account.*: keeps the payout destination, never a full
-- number. Returns what changed, or NULL for an event about a deleted one or
-- older than the last applied.
CREATE FUNCTION ps_connect_external_account(a connected_accounts, e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    o        jsonb := e->'object';
    v_at     bigint := (e->>'created')::bigint;
    v_delete boolean := e->>'type' = 'account.external_account.deleted';
    x        external_accounts;
BEGIN
    SELECT * INTO x FROM external_accounts WHERE id = o->>'id' FOR UPDATE;
    IF x.id IS NOT NULL AND (x.deleted OR (v_at < x.event_at AND NOT v_delete)) THEN
        RETURN NULL;
    END IF;
    INSERT INTO external_accounts AS t (id, account, object, last4, bank_name, brand, country,
                                        currency, status, default_for_currency, deleted, event_at)
    VALUES (o->>'id', a.id, coalesce(o->>'object', 'bank_account'), o->>'last4',
            o->>'bank_name', o->>'brand', o->>'country', upper(o->>'currency'), o->>'status',
            coalesce((o->>'default_for_currency')::boolean, false), v_delete, v_at)
    ON CONFLICT (id) DO UPDATE SET
        last4 = excluded.last4, bank_name = excluded.bank_name, brand = excluded.brand,
        country = excluded.country, currency = excluded.currency, status = excluded.status,
        default_for_currency = excluded.default_for_currency, deleted = excluded.deleted,
        event_at = greatest(t.event_at, excluded.event_at), updated_at = now();
    RETURN jsonb_build_object('external_account', o->>'id', 'object', o->>'object',
                              'last4', o->>'last4', 'status', o->>'status',
                              'deleted', v_delete);
END $$;

-- person.*: id, relationship flags and verification status only.
CREATE FUNCTION ps_connect_person(a connected_accounts, e jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    o        jsonb := e->'object';
    v_at     bigint := (e->>'created')::bigint;
    v_delete boolean := e->>'type' = 'person.deleted';
    v_rel    jsonb;
    p        account_persons;
BEGIN
    SELECT * INTO p FROM account_persons WHERE id = o->>'id' FOR UPDATE;
    IF p.id IS NOT NULL AND (p.deleted OR (v_at < p.event_at AND NOT v_delete)) THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(jsonb_object_agg(k, o->'relationship'->k), '{}') INTO v_rel
    FROM unnest(ARRAY['representative', 'owner', 'director', 'executive']) k
    WHERE jsonb_typeof(o->'relationship'->k) = 'boolean';
    INSERT INTO account_persons AS t (id, account, relationship, verification_status, deleted, event_at)
    VALUES (o->>'id', a.id, v_rel, o->'verification'->>'status', v_delete, v_at)
    ON CONFLICT (id) DO UPDATE SET
        relationship = excluded.relationship, verification_status = excluded.verification_status,
        deleted = excluded.deleted, event_at = greatest(t.event_at, excluded.event_at),
        updated_at = now();
    RETURN jsonb_build_object('person', o->>'id', 'relationship', v_rel,
                              'verification_status', o->'verification'->>'status',
                              'deleted', v_delete);
END $$;

-- Applies one Connect event, deduped on its id. e is {event_id, type,
-- account, created, message_id, object, previous_attributes, refusal}. Returns the
-- outcome and the log line to write.
CREATE FUNCTION ps_apply_connect_event(e jsonb, OUT outcome text, OUT note jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_type    text := e->>'type';
    v_account text := e->>'account';
    v_at      bigint := (e->>'created')::bigint;
    a         connected_accounts;
    b         connected_accounts;
    v_changes jsonb;
    v_handled boolean := true;
BEGIN
    -- An event of the other mode (e.refusal, set by the worker, which knows
    -- the system's mode) is audited and changes nothing.
    INSERT INTO account_audit_log (event_id, account, type, created, outcome, message_id)
    VALUES (e->>'event_id', v_account, v_type, to_timestamp(v_at),
            coalesce(e->>'refusal', 'unhandled'), e->>'message_id')
    ON CONFLICT (event_id, created) DO NOTHING;
    IF NOT FOUND THEN
        outcome := 'duplicate';
        RETURN;
    END IF;
    IF e->>'refusal' IS NOT NULL THEN
        outcome := e->>'refusal';
        note := ps_connect_note('info', 'connect event of the other mode audited; it changed nothing', e);
        RETURN;
    END IF;
    IF v_account IS NULL THEN
        note := ps_connect_note('warn', 'connect event without an account stored in the audit log', e);
        outcome := 'unhandled';
        RETURN;
    END IF;
    -- An event for an account not yet known makes it.
    INSERT INTO connected_accounts (id) VALUES (v_account) ON CONFLICT (id) DO NOTHING;
    SELECT * INTO a FROM connected_accounts WHERE id = v_account FOR UPDATE;

    IF v_type = 'account.updated' THEN
        v_changes := ps_connect_account_updated(a, e);
    ELSIF v_type = 'capability.updated' THEN
        v_changes := ps_connect_capability_updated(a, e);
    ELSIF v_type IN ('account.external_account.created', 'account.external_account.updated',
                     'account.external_account.deleted') THEN
        v_changes := ps_connect_external_account(a, e);
    ELSIF v_type IN ('person.created', 'person.updated', 'person.deleted') THEN
        v_changes := ps_connect_person(a, e);
    ELSIF v_type = 'account.application.deauthorized' THEN
        IF v_at >= a.authorization_at THEN
            UPDATE connected_accounts SET is_active = false, authorization_at = v_at,
                   deauthorized_at = coalesce(deauthorized_at, to_timestamp(v_at))
            WHERE id = v_account;
            v_changes := jsonb_build_object('is_active', false);
        END IF;
    ELSIF v_type = 'account.application.authorized' THEN
        IF v_at > a.authorization_at THEN
            UPDATE connected_accounts SET is_active = true, authorization_at = v_at,
                   deauthorized_at = NULL
            WHERE id = v_account;
            v_changes := jsonb_build_object('is_active', true);
        END IF;
    ELSE
        v_handled := false;
    END IF;

    IF NOT v_handled THEN
        outcome := 'unhandled';
        note := ps_connect_note('info', 'unhandled connect event type stored in the audit log', e);
        RETURN;
    END IF;
    IF v_changes IS NULL THEN
        outcome := 'stale';
        UPDATE account_audit_log SET outcome = 'stale'
        WHERE event_id = e->>'event_id' AND created = to_timestamp(v_at);
        note := ps_connect_note('debug', 'older connect event changed nothing', e);
        RETURN;
    END IF;

    outcome := 'applied';
    SELECT * INTO b FROM connected_accounts WHERE id = v_account;
    IF b IS DISTINCT FROM a THEN
        UPDATE connected_accounts SET version = version + 1, updated_at = now()
        WHERE id = v_account RETURNING * INTO b;
    END IF;
    UPDATE account_audit_log SET outcome = 'applied',
           changes = v_changes || CASE WHEN e ? 'previous_attributes'
               THEN jsonb_build_object('previous_attributes',
                                       (SELECT jsonb_agg(k ORDER BY k)
                                        FROM jsonb_object_keys(e->'previous_attributes') k))
               ELSE '{}' END
    WHERE event_id = e->>'event_id' AND created = to_timestamp(v_at);
    note := ps_connect_note('info', 'connect event applied', e,
                            jsonb_build_object('changes', v_changes, 'state', b.state));

    -- What the platform must hear about, once each.
    IF a.is_active AND NOT b.is_active THEN
        PERFORM ps_outbox_add('connect-accounts', 'account.deauthorized', v_account,
                              jsonb_build_object('account', v_account, 'deauthorized_at', b.deauthorized_at));
        note := ps_connect_note('warn', 'connected account deauthorized: charges and payouts disabled', e,
                                jsonb_build_object('state', b.state));
    END IF;
    IF b.onboarded_at IS NULL AND b.is_active AND b.details_submitted AND b.stripe_charges_enabled THEN
        UPDATE connected_accounts SET onboarded_at = to_timestamp(v_at) WHERE id = v_account;
        PERFORM ps_outbox_add('connect-accounts', 'account.onboarded', v_account,
                              jsonb_build_object('account', v_account,
                                                 'charges_enabled', b.charges_enabled,
                                                 'payouts_enabled', b.payouts_enabled));
    END IF;
    IF v_type = 'account.external_account.deleted'
       AND NOT EXISTS (SELECT 1 FROM external_accounts WHERE account = v_account AND NOT deleted) THEN
        PERFORM ps_outbox_add('connect-accounts', 'account.no_external_accounts', v_account,
                              jsonb_build_object('account', v_account,
                                                 'deleted', e->'object'->>'id'));
        note := ps_connect_note('error', 'connected account has no external account left: payouts will fail',
                                e, jsonb_build_object('deleted', e->'object'->>'id'));
    END IF;
END $$;

-- Applies a batch of Connect events (see ps_apply_connect_event) in log
-- order. Rows: (ord, event_id, outcome, note).
CREATE FUNCTION ps_apply_connect_events(p_events jsonb)
RETURNS TABLE (ord bigint, event_id text, outcome text, note jsonb) LANGUAGE plpgsql AS $$
DECLARE
    e   jsonb;
    i   bigint;
    r   record;
BEGIN
    FOR e, i IN SELECT x.value, x.ordinality FROM jsonb_array_elements(p_events) WITH ORDINALITY x LOOP
        r := ps_apply_connect_event(e);
        ord := i;
        event_id := e->>'event_id';
        outcome := r.outcome;
        note := r.note;
        RETURN NEXT;
    END LOOP;
END $$;

-- Why a payment call on behalf of p_account must not be made for p_actor,
-- or NULL. An actor that is no admin and not linked to the account
-- (account_links) gets the answer of an account that does not exist, word
-- for word: nothing about accounts leaks to them. Stripe would refuse an
-- inactive account with account_invalid; this says so first.
CREATE FUNCTION ps_account_refusal(p_account text, p_charge boolean, p_actor text,
                                   p_admin boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_account IS NULL THEN NULL
        WHEN a.id IS NULL OR NOT (p_admin OR EXISTS (SELECT 1 FROM account_links l
                                                     WHERE l.account = a.id AND l.actor = p_actor))
            THEN ps_error('account_unknown', 'no such connected account: ' || p_account, 'account')
        WHEN NOT a.is_active THEN ps_error('account_inactive', 'connected account ' || p_account
                                           || ' has deauthorized the platform; it takes no payments', 'account')
        WHEN p_charge AND NOT a.charges_enabled THEN
            ps_error('account_charges_disabled', 'connected account ' || p_account
                     || ' cannot take charges yet (' || a.state || ')', 'account')
        ELSE NULL END
    FROM (SELECT p_account) x LEFT JOIN connected_accounts a ON a.id = p_account
$$;

-- Dashboards: accounts by state, and the ones that cannot be paid out.
CREATE VIEW dash_accounts AS
SELECT 'state' AS kind, state AS name, count(*) AS accounts, NULL::text AS account
FROM connected_accounts GROUP BY state
UNION ALL
SELECT 'payouts_disabled', state, 1, id FROM connected_accounts WHERE NOT payouts_enabled
UNION ALL
SELECT 'no_external_account', state, 1, a.id FROM connected_accounts a
WHERE a.is_active AND NOT EXISTS (SELECT 1 FROM external_accounts e WHERE e.account = a.id AND NOT e.deleted);
