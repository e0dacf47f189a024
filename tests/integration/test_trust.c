/* Trust boundaries, attacked through the real endpoints: a signed event, an
 * API caller and a client address each get what they own and nothing more.
 * Every attack is tried first and must change nothing (orders, payments,
 * balances, sessions, stock, the outbox); the legitimate path is then shown
 * to work on the same objects, so the checks watch live machinery. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support.h"

static const char *const WAIT[] = {"Prefer: wait=30", NULL};

/* Posts an event of type about object to the platform endpoint (account
 * NULL) or, signed with its own secret, the Connect endpoint of account. */
static void post(const char *evt, const char *type, const char *account, int livemode,
                 const char *object)
{
    char *body = NULL;
    cr_assert_gt(asprintf(&body,
                          "{\"id\":\"%s\",\"object\":\"event\",\"type\":\"%s\",%s%s%s"
                          "\"created\":%lld,\"livemode\":%s,\"data\":{\"object\":%s}}",
                          evt, type, account ? "\"account\":\"" : "", account ? account : "",
                          account ? "\"," : "", (long long)time(NULL),
                          livemode ? "true" : "false", object),
                 0);
    ts_http_t r = ts_post_signed(account ? "/webhooks/stripe/connect" : "/webhooks/stripe", body,
                                 ts_env(account ? "STRIPE_CONNECT_WEBHOOK_SECRET"
                                                : "STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s: %s", evt, r.body);
    ts_http_free(&r);
    free(body);
}

/* Waits until the payments worker recorded evt, and asserts why it changed
 * nothing ("" for an event it applied). */
static void expect_outcome(const char *evt, const char *outcome)
{
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", evt, NULL),
              "%s is recorded", evt);
    char *got = ts_sql("SELECT coalesce(outcome, '') FROM stripe_events WHERE id = $1", evt, NULL);
    cr_assert_str_eq(got, outcome, "outcome of %s", evt);
    free(got);
}

/* Whether the payments worker wrote an alert line naming reason for evt. */
static int alerted(const char *evt, const char *reason)
{
    for (int i = 0; i < 100; i++) {
        int status;
        char *out = ts_sh(&status,
                          "grep -F -e '\"event_id\":\"%s\"' '%s'/logs/payments.log | "
                          "grep -c -F -e '\"alert\":\"%s\"'",
                          evt, ts_env("PAYSTREAM_RUN_DIR"), reason);
        int n = atoi(out);
        free(out);
        if (n > 0)
            return 1;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* A payment intent object; metadata is a JSON object or NULL. */
static char *intent(const char *pi, long amount, const char *currency, const char *status,
                    const char *metadata)
{
    char *out = NULL;
    cr_assert_gt(asprintf(&out,
                          "{\"id\":\"%s\",\"object\":\"payment_intent\",\"amount\":%ld,"
                          "\"amount_received\":%ld,\"currency\":\"%s\",\"status\":\"%s\","
                          "\"latest_charge\":\"ch_%s\"%s%s}",
                          pi, amount, strcmp(status, "succeeded") == 0 ? amount : 0, currency,
                          status, pi + 3, metadata ? ",\"metadata\":" : "",
                          metadata ? metadata : ""),
                 0);
    return out;
}

static void admin_cmd(const char *args)
{
    int status;
    free(ts_sh(&status, "'%s/services/admin/paystream-admin' %s", getenv("PAYSTREAM_BUILD_DIR"),
               args));
    cr_assert_eq(status, 0, "paystream-admin %s", args);
}

/* A product with stock units, and a pending order of user for two of them
 * at 12.50 EUR; waits until they are reserved. */
static char *stocked_order(const char *user, char *sku, size_t skulen)
{
    char args[160], body[512];
    ts_unique(sku, skulen, "sku_");
    snprintf(args, sizeof(args), "products put %s --stock 5 --name Lamp", sku);
    admin_cmd(args);
    snprintf(body, sizeof(body),
             "{\"currency\":\"eur\",\"email\":\"%s@example.com\",\"customer_name\":\"Ann\","
             "\"items\":[{\"product_id\":\"%s\",\"name\":\"Lamp\",\"quantity\":2,"
             "\"unit_price\":\"12.50\"}]}", user, sku);
    char *order = ts_call(user, "POST", "/api/v1/orders", body, 201, "id");
    cr_assert(ts_wait_sql("5/2", "SELECT stock || '/' || reserved FROM products WHERE sku = $1",
                          sku, NULL), "the order's units are reserved");
    return order;
}

/* Everything a paid order would have set off, for order and its sku: its
 * status, the payments that name it, its order.paid events, the stock
 * committed for it and its confirmation email. */
static char *order_effects(const char *order, const char *sku)
{
    return ts_sql("SELECT o.status || ' payments=' || (SELECT count(*) FROM payments WHERE order_id = o.id)"
                  " || ' paid_events=' || (SELECT count(*) FROM outbox WHERE aggregate = o.id AND type = 'order.paid')"
                  " || ' commits=' || (SELECT count(*) FROM stock_movements WHERE order_id = o.id AND kind = 'commit')"
                  " || ' stock=' || (SELECT stock || '/' || reserved FROM products WHERE sku = $2)"
                  " || ' emails=' || (SELECT count(*) FROM notifications WHERE aggregate = o.id AND event_type = 'order.paid')"
                  " FROM orders o WHERE o.id = $1", order, sku, NULL);
}

Test(trust, a_connected_accounts_intent_naming_a_platform_order_pays_nothing)
{
    char user[64], sku[64], attacker[64], pi[64], evt[64], meta[128];
    ts_unique(user, sizeof(user), "shopper_");
    char *order = stocked_order(user, sku, sizeof(sku));
    ts_unique(attacker, sizeof(attacker), "acct_seller_");
    snprintf(meta, sizeof(meta), "{\"order_id\":\"%s\"}", order);

    /* In the system's own mode and in the other one; in the order's currency
     * and amount, and in any other. */
    static const struct {
        long amount;
        const char *currency;
        int livemode;
        const char *outcome;
    } attacks[] = {
        {2500, "eur", 0, "unknown_payment"},
        {99999999, "jpy", 0, "unknown_payment"},
        {2500, "eur", 1, "livemode_mismatch"},
    };
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        ts_unique(pi, sizeof(pi), "pi_");
        ts_unique(evt, sizeof(evt), "evt_");
        char *obj = intent(pi, attacks[i].amount, attacks[i].currency, "succeeded", meta);
        post(evt, "payment_intent.succeeded", attacker, attacks[i].livemode, obj);
        expect_outcome(evt, attacks[i].outcome);
        char *n = ts_sql("SELECT count(*) FROM payments WHERE gateway_payment_id = $1", pi, NULL);
        cr_assert_str_eq(n, "0", "no payment is made from a Connect event");
        free(n);
        free(obj);
    }
    cr_assert(alerted(evt, "unknown_payment") == 0, "the other mode raises no alert");
    char *effects = order_effects(order, sku);
    cr_assert_str_eq(effects, "pending payments=0 paid_events=0 commits=0 stock=5/2 emails=0");
    free(effects);

    /* The order's own payment pays it: the same checks then see it all. */
    char body[256], path[160];
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"25.00\",\"currency\":\"eur\"}",
             order);
    char *payment = ts_call(user, "POST", "/api/v1/payments", body, 201, "id");
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    free(ts_call(user, "POST", path, "{\"payment_method\":\"pm_card_visa\"}", 200, "status"));
    cr_assert(ts_wait_sql("3/0", "SELECT stock || '/' || reserved FROM products WHERE sku = $1",
                          sku, NULL), "the stock is committed");
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM notifications WHERE aggregate = $1 "
                          "AND event_type = 'order.paid'", order, NULL));
    effects = order_effects(order, sku);
    cr_assert_str_eq(effects, "paid payments=1 paid_events=1 commits=1 stock=3/0 emails=1");
    free(effects);
    free(payment);
    free(order);
}

Test(trust, a_platform_intent_paystream_did_not_make_claims_no_order)
{
    char user[64], sku[64], pi[64], evt[64], meta[128];
    ts_unique(user, sizeof(user), "shopper_");
    char *order = stocked_order(user, sku, sizeof(sku));
    snprintf(meta, sizeof(meta), "{\"order_id\":\"%s\"}", order);
    ts_unique(pi, sizeof(pi), "pi_");
    ts_unique(evt, sizeof(evt), "evt_");
    char *obj = intent(pi, 2500, "eur", "succeeded", meta);
    post(evt, "payment_intent.succeeded", NULL, 0, obj);
    expect_outcome(evt, "");
    char *p = ts_sql("SELECT status || ' ' || coalesce(order_id, 'no order') FROM payments "
                     "WHERE gateway_payment_id = $1", pi, NULL);
    cr_assert_str_eq(p, "completed no order", "recorded as the platform's, for no order");
    char *effects = order_effects(order, sku);
    cr_assert_str_eq(effects, "pending payments=0 paid_events=0 commits=0 stock=5/2 emails=0");
    free(effects), free(p), free(obj), free(order);
}

Test(trust, an_intent_that_names_a_payment_must_carry_its_money)
{
    char user[64], sku[64], evt[64], meta[160], body[256];
    ts_unique(user, sizeof(user), "shopper_");
    char *order = stocked_order(user, sku, sizeof(sku));
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"25.00\",\"currency\":\"eur\"}",
             order);
    char *payment = ts_call(user, "POST", "/api/v1/payments", body, 201, "id");
    snprintf(meta, sizeof(meta), "{\"payment_id\":\"%s\",\"order_id\":\"%s\"}", payment, order);

    static const struct {
        long amount;
        const char *currency, *outcome;
    } cases[] = {
        {2500, "usd", "currency_mismatch"},
        {1, "eur", "amount_mismatch"},
        {2500, "eur", ""},
    };
    char pi[64];
    for (size_t i = 0; i < 3; i++) {
        ts_unique(pi, sizeof(pi), "pi_");
        ts_unique(evt, sizeof(evt), "evt_");
        char *obj = intent(pi, cases[i].amount, cases[i].currency, "succeeded", meta);
        post(evt, "payment_intent.succeeded", NULL, 0, obj);
        expect_outcome(evt, cases[i].outcome);
        if (*cases[i].outcome) {
            cr_assert(alerted(evt, cases[i].outcome), "an alert line for %s", evt);
            char *effects = order_effects(order, sku);
            cr_assert_str_eq(effects,
                             "pending payments=1 paid_events=0 commits=0 stock=5/2 emails=0");
            char *p = ts_sql("SELECT status || ' ' || coalesce(gateway_payment_id, 'no intent') "
                             "FROM payments WHERE id = $1", payment, NULL);
            cr_assert_str_eq(p, "pending no intent", "not adopted, not moved");
            free(p), free(effects);
        }
        free(obj);
    }
    /* The intent with the payment's money is adopted and pays the order. */
    char *p = ts_sql("SELECT status || ' ' || gateway_payment_id FROM payments WHERE id = $1",
                     payment, NULL);
    char expect[96];
    snprintf(expect, sizeof(expect), "completed %s", pi);
    cr_assert_str_eq(p, expect);
    cr_assert(ts_wait_sql("paid", "SELECT status FROM orders WHERE id = $1", order, NULL));
    free(p), free(payment), free(order);
}

/* A connected account that can take charges, linked to user. */
static void ready_account(char *account, size_t len, const char *user)
{
    char evt[64], obj[512], args[200];
    ts_unique(account, len, "acct_");
    ts_unique(evt, sizeof(evt), "evt_ready_");
    snprintf(obj, sizeof(obj),
             "{\"id\":\"%s\",\"object\":\"account\",\"charges_enabled\":true,"
             "\"payouts_enabled\":true,\"details_submitted\":true,"
             "\"capabilities\":{\"card_payments\":\"active\",\"transfers\":\"active\"},"
             "\"requirements\":{\"currently_due\":[],\"disabled_reason\":null}}", account);
    post(evt, "account.updated", account, 0, obj);
    cr_assert(ts_wait_sql("active", "SELECT state FROM connected_accounts WHERE id = $1", account,
                          NULL));
    if (user) {
        snprintf(args, sizeof(args), "accounts link %s --user %s", account, user);
        admin_cmd(args);
    }
}

/* An order of user's for 30.00 usd, paid by card through a payment made on
 * behalf of account: its order and payment ids and its intent (malloc'd). */
static char *account_payment(const char *user, const char *account, char **order,
                             char **payment)
{
    char body[256], path[160];
    *order = ts_call(user, "POST", "/api/v1/orders",
                     "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"sku_class\","
                     "\"quantity\":1,\"unit_price\":\"30.00\"}]}", 201, "id");
    snprintf(body, sizeof(body),
             "{\"order_id\":\"%s\",\"amount\":\"30.00\",\"currency\":\"usd\",\"account\":\"%s\"}",
             *order, account);
    *payment = ts_call(user, "POST", "/api/v1/payments", body, 201, "id");
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", *payment);
    free(ts_call(user, "POST", path, "{\"payment_method\":\"pm_card_visa\"}", 200, "status"));
    char *pi = ts_sql("SELECT gateway_payment_id FROM payments WHERE id = $1", *payment, NULL);
    cr_assert(pi && *pi);
    return pi;
}

/* Payment's status, its refunded minor units and its order's status. */
static char *payment_state(const char *payment)
{
    return ts_sql("SELECT p.status || ' ' || p.refunded_minor || ' ' || o.status "
                  "FROM payments p JOIN orders o ON o.id = p.order_id WHERE p.id = $1",
                  payment, NULL);
}

/* A charge object of pi, captured in full, listing one refund: re of
 * amount, in status. */
static char *charge_listing_refund(const char *pi, long captured, const char *re, long amount,
                                   const char *status)
{
    char *out = NULL;
    int succeeded = strcmp(status, "succeeded") == 0;
    cr_assert_gt(asprintf(&out,
                          "{\"id\":\"ch_%s\",\"object\":\"charge\",\"payment_intent\":\"%s\","
                          "\"amount\":%ld,\"amount_captured\":%ld,\"amount_refunded\":%ld,"
                          "\"captured\":true,\"currency\":\"usd\",\"refunds\":{\"data\":["
                          "{\"id\":\"%s\",\"amount\":%ld,\"currency\":\"usd\","
                          "\"status\":\"%s\"}]}}",
                          pi + 3, pi, captured, captured, succeeded ? amount : 0, re, amount,
                          status),
                 0);
    return out;
}

Test(trust, connect_events_apply_only_to_payments_made_for_their_account)
{
    char user[64], account[64], other[64], evt[64];
    ts_unique(user, sizeof(user), "buyer_");
    ready_account(account, sizeof(account), user);
    ready_account(other, sizeof(other), NULL);
    char *order, *payment, *pi = account_payment(user, account, &order, &payment);
    char re[64];
    snprintf(re, sizeof(re), "re_%s", pi + 3);
    char *obj = charge_listing_refund(pi, 3000, re, 3000, "succeeded");

    /* Another connected account, and the platform, about this account's
     * payment: neither owns it. */
    ts_unique(evt, sizeof(evt), "evt_");
    post(evt, "charge.refunded", other, 0, obj);
    expect_outcome(evt, "account_mismatch");
    cr_assert(alerted(evt, "account_mismatch"));
    ts_unique(evt, sizeof(evt), "evt_");
    post(evt, "charge.refunded", NULL, 0, obj);
    expect_outcome(evt, "account_mismatch");
    char *state = payment_state(payment);
    cr_assert_str_eq(state, "completed 0 paid");
    free(state);

    /* The account's own event about its own payment applies. */
    ts_unique(evt, sizeof(evt), "evt_");
    post(evt, "charge.refunded", account, 0, obj);
    expect_outcome(evt, "");
    state = payment_state(payment);
    cr_assert_str_eq(state, "refunded 3000 refunded");
    free(state), free(obj), free(pi), free(payment), free(order);
}

/* Stripe's refund ids are unique, so an event listing a refund that
 * paystream holds for another payment is not about its own: it changes
 * neither that refund nor the sender's ledger. */
Test(trust, an_event_cannot_move_a_refund_of_another_payment)
{
    char user[64], account[64], evt[64], victim[64], re[64], own_re[64];
    /* The victim: a platform payment with a pending refund. */
    ts_unique(victim, sizeof(victim), "pi_");
    ts_unique(re, sizeof(re), "re_");
    ts_unique(evt, sizeof(evt), "evt_");
    char *obj = intent(victim, 1500, "usd", "succeeded", NULL);
    post(evt, "payment_intent.succeeded", NULL, 0, obj);
    expect_outcome(evt, "");
    free(obj);
    obj = charge_listing_refund(victim, 1500, re, 1500, "pending");
    ts_unique(evt, sizeof(evt), "evt_");
    post(evt, "charge.refunded", NULL, 0, obj);
    expect_outcome(evt, "");
    free(obj);
    /* The sender: a connected account with a payment of its own. */
    ts_unique(user, sizeof(user), "seller_");
    ready_account(account, sizeof(account), user);
    char *order, *payment, *pi = account_payment(user, account, &order, &payment);

    /* Its own charge, listing the victim's refund as succeeded. */
    obj = charge_listing_refund(pi, 3000, re, 1500, "succeeded");
    ts_unique(evt, sizeof(evt), "evt_");
    post(evt, "charge.refunded", account, 0, obj);
    expect_outcome(evt, "refund_mismatch");
    cr_assert(alerted(evt, "refund_mismatch"));
    free(obj);
    char *state = ts_sql("SELECT r.status || ' ' || p.gateway_payment_id || ' ' || "
                         "p.refunded_minor || ' ' || (SELECT count(*) FROM transactions t "
                         "WHERE t.type = 'refund' AND t.gateway_transaction_id = r.id) "
                         "FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1",
                         re, NULL);
    char want[160];
    snprintf(want, sizeof(want), "pending %s 0 0", victim);
    cr_assert_str_eq(state, want, "the victim's refund is as it was, and in no ledger");
    free(state);
    state = payment_state(payment);
    cr_assert_str_eq(state, "completed 0 paid");
    free(state);

    /* Its own refund applies. */
    ts_unique(own_re, sizeof(own_re), "re_");
    obj = charge_listing_refund(pi, 3000, own_re, 3000, "succeeded");
    ts_unique(evt, sizeof(evt), "evt_");
    post(evt, "charge.refunded", account, 0, obj);
    expect_outcome(evt, "");
    state = payment_state(payment);
    cr_assert_str_eq(state, "refunded 3000 refunded");
    free(state), free(obj), free(pi), free(payment), free(order);
}

/* The customer's balance, in minor units. */
static char *balance(const char *user)
{
    return ts_sql("SELECT balance_minor FROM customers WHERE id = $1", user, NULL);
}

static char *session_object(const char *session, const char *user, long amount,
                            const char *currency)
{
    char *out = NULL;
    cr_assert_gt(asprintf(&out,
                          "{\"id\":\"%s\",\"object\":\"checkout.session\",\"mode\":\"payment\","
                          "\"status\":\"complete\",\"payment_status\":\"paid\","
                          "\"amount_total\":%ld,\"currency\":\"%s\",\"customer\":null,"
                          "\"metadata\":{\"customer_id\":\"%s\",\"purpose\":\"balance\"}}",
                          session, amount, currency, user),
                 0);
    return out;
}

Test(trust, only_a_session_paystream_made_pays_a_balance_and_only_for_its_amount)
{
    char user[64], attacker[64], evt[64], forged[64], body[200];
    ts_unique(user, sizeof(user), "saas_");
    snprintf(body, sizeof(body), "{\"email\":\"%s@example.com\",\"name\":\"Sam\"}", user);
    free(ts_call(user, "POST", "/api/v1/customers", body, 201, NULL));
    snprintf(body, sizeof(body), "{\"meter\":\"quantum_shot\",\"quantity\":200,\"identifier\":\"t-1\"}");
    free(ts_call(user, "POST", "/api/v1/usage", body, 201, NULL));
    char *bal = balance(user);
    cr_assert_str_eq(bal, "7000");
    free(bal);

    /* A connected account's own Checkout Session, with the customer's id in
     * its metadata: the connect-accounts worker audits it, nothing else. */
    ts_unique(attacker, sizeof(attacker), "acct_seller_");
    ts_unique(forged, sizeof(forged), "cs_forged_");
    ts_unique(evt, sizeof(evt), "evt_");
    char *obj = session_object(forged, user, 7000, "usd");
    post(evt, "checkout.session.completed", attacker, 0, obj);
    cr_assert(ts_wait_sql("unhandled", "SELECT outcome FROM account_audit_log WHERE event_id = $1",
                          evt, NULL));
    /* The same session sent to the platform endpoint: not one paystream made. */
    ts_unique(evt, sizeof(evt), "evt_");
    post(evt, "checkout.session.completed", NULL, 0, obj);
    expect_outcome(evt, "unknown_session");
    cr_assert(alerted(evt, "unknown_session"));
    free(obj);
    char *rows = ts_sql("SELECT count(*) FROM checkout_sessions WHERE id = $1", forged, NULL);
    cr_assert_str_eq(rows, "0", "no session of the customer's is made up");
    free(rows);

    /* The customer's own session, paid with other money. */
    ts_http_t r = ts_api("POST", "/billing/create-payment", user, NULL, "{\"amount\":\"50.00\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *sid = ts_json(r.body, "session_id");
    ts_http_free(&r);
    static const struct {
        long amount;
        const char *currency, *outcome;
    } cases[] = {{100, "usd", "amount_mismatch"}, {5000, "eur", "currency_mismatch"}, {5000, "usd", ""}};
    for (size_t i = 0; i < 3; i++) {
        ts_unique(evt, sizeof(evt), "evt_");
        obj = session_object(sid, user, cases[i].amount, cases[i].currency);
        post(evt, "checkout.session.completed", NULL, 0, obj);
        expect_outcome(evt, cases[i].outcome);
        free(obj);
        bal = balance(user);
        cr_assert_str_eq(bal, *cases[i].outcome ? "7000" : "2000", "after %s", evt);
        free(bal);
    }
    free(sid);
}

Test(trust, events_of_the_other_mode_change_nothing_on_either_endpoint)
{
    char account[64], evt[64], pi[64], obj[512];
    ready_account(account, sizeof(account), NULL);
    ts_unique(evt, sizeof(evt), "evt_");
    snprintf(obj, sizeof(obj),
             "{\"id\":\"%s\",\"object\":\"account\",\"charges_enabled\":false,"
             "\"payouts_enabled\":false,\"details_submitted\":true,"
             "\"requirements\":{\"currently_due\":[],\"disabled_reason\":\"rejected.fraud\"}}",
             account);
    post(evt, "account.updated", account, 1, obj);
    cr_assert(ts_wait_sql("livemode_mismatch",
                          "SELECT outcome FROM account_audit_log WHERE event_id = $1", evt, NULL));
    char *state = ts_sql("SELECT state || ' ' || charges_enabled FROM connected_accounts "
                         "WHERE id = $1", account, NULL);
    cr_assert_str_eq(state, "active true");
    free(state);

    ts_unique(pi, sizeof(pi), "pi_");
    ts_unique(evt, sizeof(evt), "evt_");
    char *intent_obj = intent(pi, 1000, "usd", "succeeded", NULL);
    post(evt, "payment_intent.succeeded", NULL, 1, intent_obj);
    expect_outcome(evt, "livemode_mismatch");
    char *n = ts_sql("SELECT count(*) FROM payments WHERE gateway_payment_id = $1", pi, NULL);
    cr_assert_str_eq(n, "0");
    free(n), free(intent_obj);
}

Test(trust, only_admins_and_linked_users_pay_on_behalf_of_an_account)
{
    char account[64], user[64], body[256], path[160], args[200];
    ts_unique(user, sizeof(user), "buyer_");
    ready_account(account, sizeof(account), NULL);
    char *order = ts_call(user, "POST", "/api/v1/orders",
                          "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"sku_class\","
                          "\"quantity\":1,\"unit_price\":\"30.00\"}]}", 201, "id");

    /* An account the user is not linked to looks exactly like one that does
     * not exist: in the intake's answer and in the worker's. */
    char *answers[2][2];
    const char *accounts[] = {account, "acct_never_connected_1234"};
    for (int a = 0; a < 2; a++) {
        snprintf(body, sizeof(body),
                 "{\"order_id\":\"%s\",\"amount\":\"30.00\",\"currency\":\"usd\",\"account\":\"%s\"}",
                 order, accounts[a]);
        for (int keyed = 0; keyed < 2; keyed++) {
            char bearer[1024], key[80];
            ts_bearer(bearer, sizeof(bearer), user, 0);
            ts_unique(key, sizeof(key), "Idempotency-Key: k");
            const char *headers[] = {bearer, "Prefer: wait=30", keyed ? key : NULL, NULL};
            ts_http_t r = ts_http("POST", "/api/v1/payments", headers, body, strlen(body));
            cr_assert_eq(r.status, 404, "%s", r.body);
            char *msg = ts_json(r.body, "error.message");
            char *code = ts_json(r.body, "error.code");
            cr_assert_str_eq(code, "account_unknown");
            /* The message names the account asked for, and nothing else. */
            char *at = strstr(msg, accounts[a]);
            cr_assert_not_null(at, "%s", msg);
            *at = '\0';
            answers[a][keyed] = msg;
            free(code);
            ts_http_free(&r);
        }
    }
    for (int keyed = 0; keyed < 2; keyed++) {
        cr_assert_str_eq(answers[0][keyed], answers[1][keyed]);
        free(answers[0][keyed]), free(answers[1][keyed]);
    }
    char *n = ts_sql("SELECT count(*) FROM payments WHERE order_id = $1", order, NULL);
    cr_assert_str_eq(n, "0");
    free(n);

    /* Linked, the user may; so may an admin, without a link. */
    snprintf(args, sizeof(args), "accounts link %s --user %s", account, user);
    admin_cmd(args);
    snprintf(body, sizeof(body),
             "{\"order_id\":\"%s\",\"amount\":\"30.00\",\"currency\":\"usd\",\"account\":\"%s\"}",
             order, account);
    char *payment = ts_call(user, "POST", "/api/v1/payments", body, 201, "id");
    /* Unlinked again before the charge: the charge is refused as well. */
    snprintf(args, sizeof(args), "accounts unlink %s --user %s", account, user);
    admin_cmd(args);
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    ts_http_t r = ts_api("POST", path, user, WAIT, "{\"payment_method\":\"pm_card_visa\"}");
    cr_assert_eq(r.status, 404, "%s", r.body);
    ts_http_free(&r);
    char *order2 = ts_call(user, "POST", "/api/v1/orders",
                           "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"sku_class\","
                           "\"quantity\":1,\"unit_price\":\"5.00\"}]}", 201, "id");
    snprintf(body, sizeof(body),
             "{\"order_id\":\"%s\",\"amount\":\"5.00\",\"currency\":\"usd\",\"account\":\"%s\"}",
             order2, account);
    char bearer[1024];
    ts_bearer(bearer, sizeof(bearer), "ops_admin", 1);
    const char *headers[] = {bearer, "Prefer: wait=30", NULL};
    r = ts_http("POST", "/api/v1/payments", headers, body, strlen(body));
    cr_assert_eq(r.status, 201, "an admin needs no link: %s", r.body);
    ts_http_free(&r);
    free(order2), free(payment), free(order);
}

Test(trust, names_that_could_break_an_email_are_refused)
{
    char user[64];
    ts_unique(user, sizeof(user), "namer_");
    char longname[260];
    memset(longname, 'a', 201);
    longname[201] = '\0';
    char *bodies[3];
    cr_assert_gt(asprintf(&bodies[0], "{\"currency\":\"usd\",\"customer_name\":\"Eve\\r\\nBcc: x@y.z\","
                          "\"items\":[{\"product_id\":\"s\",\"quantity\":1,\"unit_price\":\"1.00\"}]}"), 0);
    cr_assert_gt(asprintf(&bodies[1], "{\"currency\":\"usd\",\"customer_name\":\"%s\","
                          "\"items\":[{\"product_id\":\"s\",\"quantity\":1,\"unit_price\":\"1.00\"}]}",
                          longname), 0);
    cr_assert_gt(asprintf(&bodies[2], "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"s\","
                          "\"name\":\"Tea\\n--boundary\",\"quantity\":1,\"unit_price\":\"1.00\"}]}"), 0);
    const char *params[] = {"customer_name", "customer_name", "items[0].name"};
    for (int i = 0; i < 3; i++) {
        ts_http_t r = ts_api("POST", "/api/v1/orders", user, NULL, bodies[i]);
        cr_assert_eq(r.status, 400, "%s", r.body);
        char *param = ts_json(r.body, "error.param");
        cr_assert_str_eq(param, params[i]);
        free(param);
        ts_http_free(&r);
        free(bodies[i]);
    }
    char *n = ts_sql("SELECT count(*) FROM orders WHERE actor = $1", user, NULL);
    cr_assert_str_eq(n, "0");
    free(n);
}

/* The value of a counter without labels in the intake's metrics. */
static long metric(const char *name)
{
    ts_http_t r = ts_http_admin("/metrics");
    cr_assert_eq(r.status, 200);
    char line[96];
    snprintf(line, sizeof(line), "\n%s ", name);
    const char *at = strstr(r.body, line);
    long v = at ? atol(at + strlen(line)) : 0;
    ts_http_free(&r);
    return v;
}

static ts_http_t with_key(const char *source, const char *key)
{
    char auth[256];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    const char *headers[] = {auth, NULL};
    return ts_http_from(source, "GET", "/api/v1/orders", headers, NULL, 0);
}

Test(trust, bad_keys_are_looked_up_once_and_a_flood_of_them_is_limited_per_address)
{
    /* A revoked key retried in a loop: one query. */
    char *revoked = ts_api_key("looper", "--sandbox");
    int status;
    char id[64];
    snprintf(id, sizeof(id), "%.*s", (int)(strrchr(revoked, '_') - revoked), revoked);
    free(ts_sh(&status, "'%s/services/admin/paystream-admin' apikey revoke %s",
               getenv("PAYSTREAM_BUILD_DIR"), id));
    cr_assert_eq(status, 0);
    long before = metric("paystream_api_key_lookups_total");
    for (int i = 0; i < 5; i++) {
        ts_http_t r = with_key("127.0.0.9", revoked);
        cr_assert_eq(r.status, 401, "%s", r.body);
        ts_http_free(&r);
    }
    cr_assert_eq(metric("paystream_api_key_lookups_total") - before, 1);
    free(revoked);

    /* Random keys from one address: refused with 429 once its failures are
     * used up, and no longer looked up. */
    before = metric("paystream_api_key_lookups_total");
    int unauthorized = 0, limited = 0;
    char retry_after[16] = "";
    for (int i = 0; i < 60; i++) {
        char shaped[160];
        snprintf(shaped, sizeof(shaped), "psk_live_%016x_%040d", (unsigned)i * 2654435761u, i);
        ts_http_t r = with_key("127.0.0.10", shaped);
        if (r.status == 401)
            unauthorized++;
        if (r.status == 429) {
            limited++;
            char *h = ts_header(&r, "Retry-After");
            cr_assert_not_null(h);
            snprintf(retry_after, sizeof(retry_after), "%s", h);
            free(h);
        }
        ts_http_free(&r);
    }
    long lookups = metric("paystream_api_key_lookups_total") - before;
    cr_assert(unauthorized >= 1 && unauthorized <= 25, "%d answered 401", unauthorized);
    cr_assert_geq(limited, 35, "%d answered 429", limited);
    cr_assert_leq(lookups, unauthorized, "%ld lookups for %d keys refused with 401", lookups,
                  unauthorized);
    cr_assert_geq(atoi(retry_after), 1);

    /* Valid credentials from that address still work; other addresses are
     * not held back. */
    char bearer[1024];
    ts_bearer(bearer, sizeof(bearer), "flooded", 0);
    const char *headers[] = {bearer, NULL};
    ts_http_t r = ts_http_from("127.0.0.10", "GET", "/api/v1/orders", headers, NULL, 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    r = with_key("127.0.0.11", "psk_live_0123456789abcdef_0123456789012345678901234567890123456789");
    cr_assert_eq(r.status, 401, "%s", r.body);
    ts_http_free(&r);
}

Test(trust, smtp_credentials_over_clear_text_stop_the_notifications_worker)
{
    int status;
    char *out = ts_sh(&status,
                      "PAYSTREAM_SMTP_URL=smtp://127.0.0.1:25 PAYSTREAM_SMTP_USER=shop "
                      "PAYSTREAM_SMTP_PASSWORD=pw-never-shown PAYSTREAM_SMTP_STARTTLS=false "
                      "'%s/services/notifications/paystream-notifications' 2>&1",
                      getenv("PAYSTREAM_BUILD_DIR"));
    cr_assert_eq(status, 2, "%s", out);
    cr_assert(strstr(out, "PAYSTREAM_SMTP_STARTTLS") && !strstr(out, "pw-never-shown"), "%s", out);
    free(out);
}
