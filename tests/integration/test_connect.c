/* Stripe Connect: signed Connect events through the intake, applied by
 * paystream-connect-accounts; domain events through the outbox to Kafka;
 * payments on behalf of a connected account through the fake Stripe API. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "paystream/kafka.h"
#include "support.h"

static const char *const WAIT[] = {"Prefer: wait=30", NULL};

/* Posts a Connect event for account, signed with the Connect secret;
 * prev (or NULL) is data.previous_attributes. */
static void connect_post(const char *evt, const char *type, const char *account, int64_t created,
                         const char *object, const char *prev)
{
    char *body = NULL;
    int n = asprintf(&body,
                     "{\"id\":\"%s\",\"object\":\"event\",\"type\":\"%s\",\"account\":\"%s\","
                     "\"created\":%lld,\"livemode\":false,\"data\":{\"object\":%s%s%s}}",
                     evt, type, account, (long long)created, object,
                     prev ? ",\"previous_attributes\":" : "", prev ? prev : "");
    cr_assert_gt(n, 0);
    ts_http_t r = ts_post_signed("/webhooks/stripe/connect", body,
                                 ts_env("STRIPE_CONNECT_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s: %s", evt, r.body);
    ts_http_free(&r);
    free(body);
}

/* Waits until evt is in the audit log; returns its outcome (malloc'd). */
static char *applied(const char *evt)
{
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM account_audit_log WHERE event_id = $1", evt,
                          NULL), "%s is applied", evt);
    return ts_sql("SELECT outcome FROM account_audit_log WHERE event_id = $1", evt, NULL);
}

static void assert_column(const char *account, const char *column, const char *expect)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT %s::text FROM connected_accounts WHERE id = $1", column);
    char *v = ts_sql(sql, account, NULL);
    cr_assert(v && strcmp(v, expect) == 0, "%s of %s: %s, expected %s", column, account,
              v ? v : "(no row)", expect);
    free(v);
}

/* An account.updated object. */
static char *account_object(const char *account, int charges, int payouts, int details,
                            const char *card_payments, const char *transfers, const char *due)
{
    char *out = NULL;
    cr_assert_gt(asprintf(&out,
                          "{\"id\":\"%s\",\"object\":\"account\",\"charges_enabled\":%s,"
                          "\"payouts_enabled\":%s,\"details_submitted\":%s,\"country\":\"US\","
                          "\"default_currency\":\"usd\",\"email\":\"owner@example.com\","
                          "\"capabilities\":{\"card_payments\":\"%s\",\"transfers\":\"%s\"},"
                          "\"requirements\":{\"currently_due\":%s,\"disabled_reason\":null}}",
                          account, charges ? "true" : "false", payouts ? "true" : "false",
                          details ? "true" : "false", card_payments, transfers, due),
                 0);
    return out;
}

static char *capability_object(const char *account, const char *name, const char *status)
{
    char *out = NULL;
    cr_assert_gt(asprintf(&out,
                          "{\"id\":\"%s\",\"object\":\"capability\",\"account\":\"%s\","
                          "\"status\":\"%s\",\"requested\":true}",
                          name, account, status),
                 0);
    return out;
}

/* A pending order of user for one item at price; returns its id. */
static char *new_order(const char *user, const char *price)
{
    char body[200];
    snprintf(body, sizeof(body),
             "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"sku_class\","
             "\"quantity\":1,\"unit_price\":\"%s\"}]}", price);
    ts_http_t r = ts_api("POST", "/api/v1/orders", user, WAIT, body);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *order = ts_json(r.body, "id");
    ts_http_free(&r);
    return order;
}

/* Asks for a payment of order (price) on behalf of account. */
static ts_http_t pay_on_behalf(const char *user, const char *order, const char *price,
                               const char *account)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"order_id\":\"%s\",\"amount\":\"%s\",\"currency\":\"usd\",\"account\":\"%s\"}",
             order, price, account);
    return ts_api("POST", "/api/v1/payments", user, WAIT, body);
}

/* Lets user take payments on behalf of account (paystream-admin accounts link). */
static void link_account(const char *account, const char *user)
{
    int status;
    free(ts_sh(&status, "'%s/services/admin/paystream-admin' accounts link %s --user %s",
               getenv("PAYSTREAM_BUILD_DIR"), account, user));
    cr_assert_eq(status, 0, "accounts link %s --user %s", account, user);
}

/* A new account, known and able to take charges and payouts. */
static void ready_account(char *account, size_t len, int64_t at)
{
    char evt[64];
    ts_unique(account, len, "acct_");
    ts_unique(evt, sizeof(evt), "evt_ready_");
    char *o = account_object(account, 1, 1, 1, "active", "active", "[]");
    connect_post(evt, "account.updated", account, at, o, NULL);
    free(applied(evt));
    free(o);
}

Test(connect, account_updated_syncs_the_account_and_audits_what_changed)
{
    char account[64], evt[64];
    ts_unique(account, sizeof(account), "acct_");
    ts_unique(evt, sizeof(evt), "evt_upd_");
    int64_t t = time(NULL) - 100;
    char *o = account_object(account, 1, 0, 1, "active", "pending", "[\"external_account\"]");
    connect_post(evt, "account.updated", account, t, o,
                 "{\"charges_enabled\":false,\"details_submitted\":false}");
    char *outcome = applied(evt);
    cr_assert_str_eq(outcome, "applied");
    assert_column(account, "is_active", "true");
    assert_column(account, "charges_enabled", "true");
    assert_column(account, "payouts_enabled", "false");
    assert_column(account, "details_submitted", "true");
    assert_column(account, "state", "restricted");
    assert_column(account, "currently_due", "[\"external_account\"]");
    assert_column(account, "capabilities->'transfers'->>'status'", "pending");
    char *prev = ts_sql("SELECT changes->>'previous_attributes' FROM account_audit_log "
                        "WHERE event_id = $1", evt, NULL);
    cr_assert_str_eq(prev, "[\"charges_enabled\", \"details_submitted\"]");
    char *email = ts_sql("SELECT count(*) FROM account_audit_log WHERE changes::text LIKE "
                         "'%owner@example.com%'", NULL);
    cr_assert_str_eq(email, "0", "the audit log keeps no e-mail address");
    char *onboarded = ts_sql("SELECT count(*) FROM outbox WHERE aggregate = $1 AND "
                             "type = 'account.onboarded'", account, NULL);
    cr_assert_str_eq(onboarded, "1", "details submitted and charges enabled: onboarded, once");

    char path[128], admin[64];
    snprintf(path, sizeof(path), "/api/v1/accounts/%s", account);
    ts_unique(admin, sizeof(admin), "ops_");
    char auth[1024];
    ts_bearer(auth, sizeof(auth), admin, 1);
    const char *headers[] = {auth, NULL};
    ts_http_t r = ts_http("GET", path, headers, NULL, 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *state = ts_json(r.body, "state"), *charges = ts_json(r.body, "charges_enabled");
    cr_assert_str_eq(state, "restricted");
    char *due = ts_json(r.body, "requirements.disabled_reason");
    cr_assert_null(due, "%s", r.body);
    cr_assert(strstr(r.body, "\"currently_due\": [\"external_account\"]") != NULL, "%s", r.body);
    cr_assert(strstr(r.body, evt) != NULL, "recent events list %s: %s", evt, r.body);
    ts_http_free(&r);
    free(state);
    free(charges);
    free(due);
    free(email);
    free(onboarded);
    free(prev);
    free(outcome);
    free(o);
}

Test(connect, accounts_are_shown_to_admins_only)
{
    char account[64], path[128], auth[1024], user[64];
    ready_account(account, sizeof(account), time(NULL) - 50);
    snprintf(path, sizeof(path), "/api/v1/accounts/%s", account);
    ts_unique(user, sizeof(user), "seller_");
    ts_http_t r = ts_api("GET", path, user, NULL, NULL);
    cr_assert_eq(r.status, 403, "%s", r.body);
    char *code = ts_json(r.body, "error.code");
    cr_assert_str_eq(code, "admin_only");
    free(code);
    ts_http_free(&r);

    ts_bearer(auth, sizeof(auth), user, 1);
    const char *headers[] = {auth, NULL};
    r = ts_http("GET", "/api/v1/accounts/acct_nobody_here", headers, NULL, 0);
    cr_assert_eq(r.status, 404, "%s", r.body);
    ts_http_free(&r);
    r = ts_http("GET", "/api/v1/accounts/ba_not_an_account", headers, NULL, 0);
    cr_assert_eq(r.status, 400, "%s", r.body);
    ts_http_free(&r);
    r = ts_http("GET", path, headers, NULL, 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *state = ts_json(r.body, "state");
    cr_assert_str_eq(state, "active");
    free(state);
    ts_http_free(&r);
}

Test(connect, an_event_delivered_twice_is_applied_once)
{
    char account[64], evt[64];
    ready_account(account, sizeof(account), time(NULL) - 100);
    char *version = ts_sql("SELECT version FROM connected_accounts WHERE id = $1", account, NULL);
    ts_unique(evt, sizeof(evt), "evt_cap_");
    char *o = capability_object(account, "card_payments", "inactive");
    /* A redelivery repeats the event's created time. */
    int64_t created = time(NULL) - 50;
    connect_post(evt, "capability.updated", account, created, o, NULL);
    connect_post(evt, "capability.updated", account, created, o, NULL);
    free(applied(evt));
    /* A later event of the same account comes after both copies. */
    char later[64];
    ts_unique(later, sizeof(later), "evt_later_");
    connect_post(later, "payout.paid", account, time(NULL) - 40,
                 "{\"id\":\"po_1\",\"object\":\"payout\"}", NULL);
    free(applied(later));
    char *rows = ts_sql("SELECT count(*) FROM account_audit_log WHERE event_id = $1", evt, NULL);
    cr_assert_str_eq(rows, "1");
    char *now = ts_sql("SELECT version - $2::bigint FROM connected_accounts WHERE id = $1",
                       account, version, NULL);
    cr_assert_str_eq(now, "1", "one change for two deliveries");
    assert_column(account, "charges_enabled", "false");
    free(now);
    free(rows);
    free(o);
    free(version);
}

/* The end state must not depend on the order: for two pairs of
 * (account.updated, capability.updated) with different times, each pair
 * is sent in both orders to two accounts. */
Test(connect, account_updated_and_capability_updated_agree_in_either_order)
{
    int64_t t = time(NULL) - 500;
    struct {
        int64_t upd_at, cap_at;
        int charges;         /* what account.updated says */
        const char *status;  /* what capability.updated says of card_payments */
        const char *expect;  /* charges_enabled at the end */
    } cases[] = {
        {t, t + 10, 0, "active", "true"},       /* the capability is newer */
        {t + 10, t, 1, "inactive", "true"},     /* the account is newer */
        {t + 10, t, 0, "active", "false"},
        {t, t, 1, "inactive", "false"},         /* the same second: disabled wins */
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        for (int order = 0; order < 2; order++) {
            char account[64], e1[64], e2[64];
            ts_unique(account, sizeof(account), "acct_");
            ts_unique(e1, sizeof(e1), "evt_a_");
            ts_unique(e2, sizeof(e2), "evt_c_");
            char *upd = account_object(account, cases[c].charges, 0, 1, cases[c].charges ? "active" : "inactive",
                                       "inactive", "[]");
            char *cap = capability_object(account, "card_payments", cases[c].status);
            if (order == 0) {
                connect_post(e1, "account.updated", account, cases[c].upd_at, upd, NULL);
                connect_post(e2, "capability.updated", account, cases[c].cap_at, cap, NULL);
            } else {
                connect_post(e2, "capability.updated", account, cases[c].cap_at, cap, NULL);
                connect_post(e1, "account.updated", account, cases[c].upd_at, upd, NULL);
            }
            free(applied(e1));
            free(applied(e2));
            char *got = ts_sql("SELECT charges_enabled::text || ' ' || "
                               "(capabilities->'card_payments'->>'status') "
                               "FROM connected_accounts WHERE id = $1", account, NULL);
            const char *newest_status = cases[c].cap_at > cases[c].upd_at ? cases[c].status
                                        : cases[c].cap_at < cases[c].upd_at
                                            ? (cases[c].charges ? "active" : "inactive")
                                            : "inactive";
            char expect[64];
            snprintf(expect, sizeof(expect), "%s %s", cases[c].expect, newest_status);
            cr_assert_str_eq(got, expect, "case %zu, order %d", c, order);
            free(got);
            free(upd);
            free(cap);
        }
    }
}

Test(connect, deauthorization_holds_against_late_account_updates_and_refuses_payments)
{
    char account[64], deauth[64], late[64], newer[64], user[64];
    int64_t t = time(NULL) - 300;
    ready_account(account, sizeof(account), t);
    /* A payment made while the account could take it... */
    ts_unique(user, sizeof(user), "buyer_");
    link_account(account, user);
    char *before = new_order(user, "15.00");
    ts_http_t r = pay_on_behalf(user, before, "15.00", account);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *payment = ts_json(r.body, "id");
    ts_http_free(&r);
    ts_unique(deauth, sizeof(deauth), "evt_deauth_");
    connect_post(deauth, "account.application.deauthorized", account, t + 100,
                 "{\"id\":\"ca_platform\",\"object\":\"application\",\"name\":\"Shop\"}", NULL);
    char *outcome = applied(deauth);
    cr_assert_str_eq(outcome, "applied");
    assert_column(account, "is_active", "false");
    assert_column(account, "charges_enabled", "false");
    assert_column(account, "payouts_enabled", "false");
    assert_column(account, "state", "deauthorized");

    /* Sent before the deauthorization, delivered after it; and one made
     * after it: neither re-activates the account. */
    char *o = account_object(account, 1, 1, 1, "active", "active", "[\"tos_acceptance.date\"]");
    ts_unique(late, sizeof(late), "evt_late_");
    connect_post(late, "account.updated", account, t + 50, o, NULL);
    char *late_outcome = applied(late);
    cr_assert_str_eq(late_outcome, "applied", "its details are newer than the account's");
    assert_column(account, "currently_due", "[\"tos_acceptance.date\"]");
    ts_unique(newer, sizeof(newer), "evt_newer_");
    connect_post(newer, "account.updated", account, t + 150, o, NULL);
    free(applied(newer));
    assert_column(account, "is_active", "false");
    assert_column(account, "charges_enabled", "false");

    /* The platform hears of it once, on Kafka. */
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM outbox WHERE aggregate = $1 AND "
                          "type = 'account.deauthorized' AND published_at IS NOT NULL",
                          account, NULL));
    char *value = NULL;
    cr_assert_eq(ts_kafka_count(PS_TOPIC_DOMAIN_EVENTS, account, "account.deauthorized", &value), 1);
    char *data_account = ts_json(value, "data.account");
    cr_assert_str_eq(data_account, account);

    /* A payment on its behalf is refused with a clear error... */
    char *order = new_order(user, "20.00");
    r = pay_on_behalf(user, order, "20.00", account);
    cr_assert_eq(r.status, 409, "%s", r.body);
    char *code = ts_json(r.body, "error.code");
    cr_assert_str_eq(code, "account_inactive");
    ts_http_free(&r);
    free(code);
    /* ...and so is charging the one made before, by the worker, before
     * Stripe is asked. */
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    r = ts_api("POST", path, user, WAIT, "{\"payment_method\":\"pm_card_visa\"}");
    cr_assert_eq(r.status, 409, "%s", r.body);
    code = ts_json(r.body, "error.code");
    cr_assert_str_eq(code, "account_inactive");
    ts_http_free(&r);
    char *status = ts_sql("SELECT status FROM payments WHERE id = $1", payment, NULL);
    cr_assert_str_eq(status, "pending");
    char *asked = ts_sql("SELECT count(*) FROM gateway_calls WHERE payment_id = $1", payment, NULL);
    cr_assert_str_eq(asked, "0", "Stripe was not asked");
    free(asked);
    free(status);
    free(code);
    free(payment);
    free(before);
    free(order);
    free(data_account);
    free(value);
    free(late_outcome);
    free(outcome);
    free(o);
}

Test(connect, external_accounts_keep_no_full_number_and_losing_the_last_one_alerts)
{
    char account[64], e[4][64], bank[64], card[64];
    int64_t t = time(NULL) - 200;
    ts_unique(account, sizeof(account), "acct_");
    ts_unique(bank, sizeof(bank), "ba_");
    ts_unique(card, sizeof(card), "card_");
    for (int i = 0; i < 4; i++)
        ts_unique(e[i], sizeof(e[i]), "evt_ext_");
    char obj_bank[512], obj_card[512];
    snprintf(obj_bank, sizeof(obj_bank),
             "{\"id\":\"%s\",\"object\":\"bank_account\",\"account\":\"%s\",\"last4\":\"6789\","
             "\"routing_number\":\"110000000\",\"account_number\":\"000123456789\","
             "\"bank_name\":\"STRIPE TEST BANK\",\"country\":\"US\",\"currency\":\"usd\","
             "\"status\":\"new\",\"default_for_currency\":true}", bank, account);
    snprintf(obj_card, sizeof(obj_card),
             "{\"id\":\"%s\",\"object\":\"card\",\"account\":\"%s\",\"last4\":\"4242\","
             "\"brand\":\"Visa\",\"country\":\"US\",\"currency\":\"usd\","
             "\"default_for_currency\":false}", card, account);
    /* The first event of an account not yet known makes it. */
    connect_post(e[0], "account.external_account.created", account, t, obj_bank, NULL);
    connect_post(e[1], "account.external_account.created", account, t + 1, obj_card, NULL);
    free(applied(e[1]));
    assert_column(account, "is_active", "true");
    char *row = ts_sql("SELECT last4 || ' ' || bank_name || ' ' || currency || ' ' || "
                       "default_for_currency FROM external_accounts WHERE id = $1", bank, NULL);
    cr_assert_str_eq(row, "6789 STRIPE TEST BANK USD true");
    char *leaks = ts_sql("SELECT count(*) FROM external_accounts e JOIN account_audit_log l "
                         "ON l.account = e.account WHERE e.account = $1 AND "
                         "(row_to_json(e)::text LIKE '%000123456789%' OR "
                         "l.changes::text LIKE '%000123456789%')", account, NULL);
    cr_assert_str_eq(leaks, "0", "no full account number is kept");

    connect_post(e[2], "account.external_account.deleted", account, t + 2, obj_card, NULL);
    free(applied(e[2]));
    char *alerts = ts_sql("SELECT count(*) FROM outbox WHERE aggregate = $1 AND "
                          "type = 'account.no_external_accounts'", account, NULL);
    cr_assert_str_eq(alerts, "0", "a bank account is left");
    free(alerts);
    connect_post(e[3], "account.external_account.deleted", account, t + 3, obj_bank, NULL);
    free(applied(e[3]));
    alerts = ts_sql("SELECT count(*) FROM outbox WHERE aggregate = $1 AND "
                    "type = 'account.no_external_accounts'", account, NULL);
    cr_assert_str_eq(alerts, "1", "the last one gone: one alert");

    /* A late update of a deleted one does not bring it back. */
    char late[64];
    ts_unique(late, sizeof(late), "evt_ext_late_");
    connect_post(late, "account.external_account.updated", account, t + 1, obj_bank, NULL);
    char *outcome = applied(late);
    cr_assert_str_eq(outcome, "stale");
    char *live = ts_sql("SELECT count(*) FROM external_accounts WHERE account = $1 AND NOT deleted",
                        account, NULL);
    cr_assert_str_eq(live, "0");
    char *dash = ts_sql("SELECT count(*) FROM dash_accounts WHERE kind = 'no_external_account' "
                        "AND account = $1", account, NULL);
    cr_assert_str_eq(dash, "1");
    free(dash);
    free(live);
    free(outcome);
    free(alerts);
    free(leaks);
    free(row);
}

Test(connect, persons_are_audited_without_personal_data)
{
    char account[64], evt[64], del[64], person[64];
    ts_unique(account, sizeof(account), "acct_");
    ts_unique(evt, sizeof(evt), "evt_person_");
    ts_unique(del, sizeof(del), "evt_person_del_");
    ts_unique(person, sizeof(person), "person_");
    char o[768];
    snprintf(o, sizeof(o),
             "{\"id\":\"%s\",\"object\":\"person\",\"account\":\"%s\",\"first_name\":\"Jenny\","
             "\"last_name\":\"Rosen\",\"dob\":{\"day\":1,\"month\":1,\"year\":1901},"
             "\"address\":{\"line1\":\"510 Townsend St\"},\"id_number_provided\":true,"
             "\"relationship\":{\"representative\":true,\"owner\":true,\"director\":false,"
             "\"executive\":true,\"title\":\"CEO\",\"percent_ownership\":80},"
             "\"verification\":{\"status\":\"pending\"}}", person, account);
    connect_post(evt, "person.created", account, time(NULL) - 20, o, NULL);
    free(applied(evt));
    char *row = ts_sql("SELECT relationship::text || ' ' || verification_status "
                       "FROM account_persons WHERE id = $1", person, NULL);
    cr_assert_str_eq(row, "{\"owner\": true, \"director\": false, \"executive\": true, "
                          "\"representative\": true} pending");
    char *leak = ts_sql("SELECT count(*) FROM account_audit_log WHERE account = $1 AND "
                        "(changes::text LIKE '%Jenny%' OR changes::text LIKE '%Townsend%' OR "
                        "changes::text LIKE '%1901%')", account, NULL);
    cr_assert_str_eq(leak, "0");
    connect_post(del, "person.deleted", account, time(NULL) - 10, o, NULL);
    free(applied(del));
    char *deleted = ts_sql("SELECT deleted FROM account_persons WHERE id = $1", person, NULL);
    cr_assert_str_eq(deleted, "t");
    free(deleted);
    free(leak);
    free(row);
}

Test(connect, an_unknown_type_is_stored_and_acknowledged)
{
    char account[64], evt[64];
    ts_unique(account, sizeof(account), "acct_");
    ts_unique(evt, sizeof(evt), "evt_unknown_");
    connect_post(evt, "topup.created", account, time(NULL),
                 "{\"id\":\"tu_1\",\"object\":\"topup\"}", NULL);
    char *outcome = applied(evt);
    cr_assert_str_eq(outcome, "unhandled");
    char *type = ts_sql("SELECT type FROM account_audit_log WHERE event_id = $1", evt, NULL);
    cr_assert_str_eq(type, "topup.created");
    free(type);
    free(outcome);
}

Test(connect, a_message_that_is_not_an_event_is_dead_lettered_and_the_partition_moves_on)
{
    char account[64], evt[64];
    ts_unique(account, sizeof(account), "acct_");
    char broken[96];
    snprintf(broken, sizeof(broken), "{\"id\":\"evt_%s", account);
    ts_produce(PS_TOPIC_STRIPE_CONNECT_EVENTS, account, "account.updated", broken);
    ts_unique(evt, sizeof(evt), "evt_after_");
    char *o = account_object(account, 1, 1, 1, "active", "active", "[]");
    connect_post(evt, "account.updated", account, time(NULL), o, NULL);
    free(applied(evt));
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM dead_letters WHERE topic = $1 AND "
                          "payload = convert_to($2, 'UTF8') AND reason LIKE 'not a Stripe event%'",
                          PS_TOPIC_STRIPE_CONNECT_EVENTS, broken, NULL));
    free(o);
}

Test(connect, payments_on_behalf_of_an_account_carry_stripe_account)
{
    char account[64], user[64], path[160];
    ready_account(account, sizeof(account), time(NULL) - 100);
    ts_unique(user, sizeof(user), "buyer_");
    link_account(account, user);
    char *order = new_order(user, "30.00");
    ts_http_t r = pay_on_behalf(user, order, "30.00", account);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *payment = ts_json(r.body, "id"), *shown = ts_json(r.body, "account");
    cr_assert_str_eq(shown, account);
    ts_http_free(&r);

    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    r = ts_api("POST", path, user, NULL, "{\"payment_method\":\"pm_card_visa\"}");
    cr_assert_eq(r.status, 202, "%s", r.body);
    ts_http_free(&r);
    cr_assert(ts_wait_sql("completed", "SELECT status FROM payments WHERE id = $1", payment, NULL));
    /* The refund names the account too: the intent lives there. */
    snprintf(path, sizeof(path), "/api/v1/payments/%s/refund", payment);
    r = ts_api("POST", path, user, NULL, "{\"amount\":\"10.00\"}");
    cr_assert_eq(r.status, 202, "%s", r.body);
    ts_http_free(&r);
    cr_assert(ts_wait_sql("1000", "SELECT refunded_minor FROM payments WHERE id = $1", payment, NULL));

    char *out = ts_sh(NULL, "curl -fsS %s/_requests", ts_env("STRIPE_API_BASE"));
    json_t *all = json_loads(out, 0, NULL), *req;
    size_t i;
    int charges = 0, refunds = 0;
    char *pi = ts_sql("SELECT gateway_payment_id FROM payments WHERE id = $1", payment, NULL);
    json_array_foreach(all, i, req) {
        json_t *form = json_object_get(req, "form");
        const char *sa = json_string_value(json_object_get(req, "stripe_account"));
        const char *meta = json_string_value(json_object_get(form, "metadata[payment_id]"));
        const char *refunded = json_string_value(json_object_get(form, "payment_intent"));
        const char *api = json_string_value(json_object_get(req, "path"));
        if (meta && strcmp(meta, payment) == 0 && strcmp(api, "/v1/payment_intents") == 0) {
            cr_assert(sa && strcmp(sa, account) == 0, "the charge carries Stripe-Account");
            charges++;
        }
        if (refunded && pi && strcmp(refunded, pi) == 0 && strcmp(api, "/v1/refunds") == 0) {
            cr_assert(sa && strcmp(sa, account) == 0, "the refund carries Stripe-Account");
            refunds++;
        }
    }
    cr_assert_eq(charges, 1);
    cr_assert_eq(refunds, 1);

    /* An account that cannot take charges yet is refused up front. */
    char waiting[64], evt[64];
    ts_unique(waiting, sizeof(waiting), "acct_");
    ts_unique(evt, sizeof(evt), "evt_onb_");
    char *o = account_object(waiting, 0, 0, 0, "inactive", "inactive", "[\"individual.dob.day\"]");
    connect_post(evt, "account.updated", waiting, time(NULL) - 10, o, NULL);
    free(applied(evt));
    link_account(waiting, user);
    char *order2 = new_order(user, "30.00");
    r = pay_on_behalf(user, order2, "30.00", waiting);
    cr_assert_eq(r.status, 409, "%s", r.body);
    char *code = ts_json(r.body, "error.code");
    cr_assert_str_eq(code, "account_charges_disabled");
    ts_http_free(&r);
    r = pay_on_behalf(user, order2, "30.00", "acct_never_connected");
    cr_assert_eq(r.status, 404, "%s", r.body);
    ts_http_free(&r);
    free(code);
    free(order2);
    free(o);
    free(pi);
    json_decref(all);
    free(out);
    free(shown);
    free(payment);
    free(order);
}
