/* Billing through the intake and paystream-payments, with the fake Stripe
 * API: customers, usage priced into the balance (PAYSTREAM_METER_PRICES has
 * quantum_shot=0.35 in the tests' environment, the invoice threshold is
 * 3000.00), threshold invoices, balance payments through Checkout, and
 * Stripe's checkout, subscription and invoice events in any order. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "paystream/kafka.h"
#include "support.h"

static const char *const WAIT[] = {"Prefer: wait=30", NULL};

static void register_customer(const char *user)
{
    char body[200];
    snprintf(body, sizeof(body), "{\"email\":\"%s@example.com\",\"name\":\"Test %s\"}", user, user);
    ts_http_t r = ts_api("POST", "/api/v1/customers", user, WAIT, body);
    cr_assert_eq(r.status, 201, "%s", r.body);
    ts_http_free(&r);
}

/* Records usage and returns the HTTP status. */
static long usage(const char *user, const char *meter, long quantity, const char *identifier)
{
    char body[300];
    snprintf(body, sizeof(body), "{\"meter\":\"%s\",\"quantity\":%ld,\"identifier\":\"%s\"}", meter,
             quantity, identifier);
    ts_http_t r = ts_api("POST", "/api/v1/usage", user, WAIT, body);
    long status = r.status;
    ts_http_free(&r);
    return status;
}

static char *balance(const char *user)
{
    return ts_sql("SELECT balance_minor FROM customers WHERE id = $1", user, NULL);
}

/* The fake Stripe API's requests to path. */
static json_t *stripe_requests(const char *path)
{
    char *out = ts_sh(NULL, "curl -fsS %s/_requests", ts_env("STRIPE_API_BASE"));
    json_t *all = json_loads(out, 0, NULL), *found = json_array(), *r;
    free(out);
    cr_assert(json_is_array(all));
    size_t i;
    json_array_foreach(all, i, r) {
        if (strcmp(json_string_value(json_object_get(r, "path")), path) == 0)
            json_array_append(found, r);
    }
    json_decref(all);
    return found;
}

static void post_event(const char *evt, const char *type, int64_t created, const char *object)
{
    char *body = ts_event(evt, type, created, object);
    ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s: %s", type, r.body);
    ts_http_free(&r);
    free(body);
}

static void wait_events(const char *const *evts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", evts[i], NULL),
                  "event %s was not applied", evts[i]);
}

/* A Checkout Session object of a balance payment of customer. */
static char *session_object(const char *session, const char *customer, const char *status,
                            const char *payment_status, long amount)
{
    char *out;
    cr_assert(asprintf(&out,
                       "{\"id\":\"%s\",\"object\":\"checkout.session\",\"mode\":\"payment\","
                       "\"status\":\"%s\",\"payment_status\":\"%s\",\"amount_total\":%ld,"
                       "\"currency\":\"usd\",\"customer\":null,\"payment_intent\":null,"
                       "\"metadata\":{\"customer_id\":\"%s\",\"purpose\":\"balance\"}}",
                       session, status, payment_status, amount, customer) > 0);
    return out;
}

Test(billing, registering_makes_one_stripe_customer)
{
    char user[64];
    ts_unique(user, sizeof(user), "saas_");
    ts_expect(ts_api("GET", "/api/v1/customers/me", user, NULL, NULL), 404, "customer_missing");
    ts_expect(ts_api("POST", "/api/v1/customers", user, WAIT, "{\"email\":\"not an address\"}"),
                 400, "parameter_invalid");
    register_customer(user);
    ts_expect(ts_api("POST", "/api/v1/customers", user, WAIT, "{\"email\":\"a@example.com\"}"),
                 409, "customer_exists");

    ts_http_t r = ts_api("GET", "/api/v1/customers/me", user, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *stripe_id = ts_json(r.body, "stripe_customer_id"), *bal = ts_json(r.body, "balance_minor");
    cr_assert(strncmp(stripe_id, "cus_fake_", 9) == 0, "%s", r.body);
    cr_assert_str_eq(bal, "0");
    ts_http_free(&r);

    json_t *sent = stripe_requests("/v1/customers"), *req;
    size_t i, mine = 0;
    json_array_foreach(sent, i, req) {
        const char *who = json_string_value(
            json_object_get(json_object_get(req, "form"), "metadata[customer_id]"));
        if (who && strcmp(who, user) == 0) {
            mine++;
            cr_assert(strncmp(json_string_value(json_object_get(req, "idempotency_key")), "cmd_", 4) == 0);
        }
    }
    cr_assert_eq(mine, 1, "one Stripe customer per registration");
    json_decref(sent);
    free(stripe_id), free(bal);
}

Test(billing, usage_is_priced_exactly_and_counted_once)
{
    char user[64], other[64];
    ts_unique(user, sizeof(user), "saas_");
    ts_unique(other, sizeof(other), "saas_");
    cr_assert_eq(usage(user, "quantum_shot", 1, "u0"), 404, "usage needs a registered customer");
    register_customer(user);

    ts_http_t r = ts_api("POST", "/api/v1/usage", user, WAIT,
                         "{\"meter\":\"quantum_shot\",\"quantity\":7,\"identifier\":\"run-1\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *amount = ts_json(r.body, "amount_minor");
    cr_assert_str_eq(amount, "245", "7 shots at 0.35");
    free(amount);
    ts_http_free(&r);
    r = ts_api("POST", "/api/v1/usage", user, WAIT,
               "{\"meter\":\"quantum_shot\",\"quantity\":7,\"identifier\":\"run-1\"}");
    cr_assert_eq(r.status, 200, "the same identifier is the same record: %s", r.body);
    char *dup = ts_json(r.body, "duplicate");
    cr_assert_str_eq(dup, "true");
    free(dup);
    ts_http_free(&r);
    cr_assert_eq(usage(user, "quantum_shot", 3, "run-2"), 201);
    char *bal = balance(user);
    cr_assert_str_eq(bal, "350", "(7 + 3) x 35, the repeated record not counted");
    free(bal);

    ts_expect(ts_api("POST", "/api/v1/usage", user, NULL,
                        "{\"meter\":\"teleport\",\"quantity\":1,\"identifier\":\"x\"}"),
                 400, "meter_unknown");
    ts_expect(ts_api("POST", "/api/v1/usage", user, NULL,
                        "{\"meter\":\"quantum_shot\",\"quantity\":0,\"identifier\":\"x\"}"),
                 400, "parameter_invalid");
    ts_expect(ts_api("POST", "/api/v1/usage", user, NULL,
                        "{\"meter\":\"quantum_shot\",\"quantity\":1.5,\"identifier\":\"x\"}"),
                 400, "parameter_invalid");
    ts_expect(ts_api("POST", "/api/v1/usage", user, NULL,
                        "{\"meter\":\"quantum_shot\",\"quantity\":1,\"identifier\":\"x\","
                        "\"timestamp\":1000}"),
                 400, "parameter_invalid");
    char body[300];
    snprintf(body, sizeof(body),
             "{\"meter\":\"quantum_shot\",\"quantity\":1,\"identifier\":\"x\",\"customer\":\"%s\"}",
             other);
    ts_expect(ts_api("POST", "/api/v1/usage", user, NULL, body), 400, "parameter_invalid");
    bal = balance(user);
    cr_assert_str_eq(bal, "350", "refused records changed nothing");
    free(bal);
}

Test(billing, upstream_producers_record_usage_through_kafka)
{
    char user[64], value[400];
    ts_unique(user, sizeof(user), "saas_");
    register_customer(user);
    snprintf(value, sizeof(value),
             "{\"customer\":\"%s\",\"meter\":\"quantum_shot\",\"quantity\":2,"
             "\"timestamp\":%lld,\"identifier\":\"job-9\"}",
             user, (long long)time(NULL));
    ts_produce(PS_TOPIC_COMMANDS_USAGE, user, "usage.record", value);
    ts_produce(PS_TOPIC_COMMANDS_USAGE, user, "usage.record", value); /* sent twice */
    cr_assert(ts_wait_sql("70", "SELECT balance_minor FROM customers WHERE id = $1", user, NULL));

    /* A record no one can apply ends as a dead letter with its reason. */
    char ghost[64];
    ts_unique(ghost, sizeof(ghost), "ghost_");
    snprintf(value, sizeof(value),
             "{\"customer\":\"%s\",\"meter\":\"quantum_shot\",\"quantity\":2,\"identifier\":\"j\"}",
             ghost);
    ts_produce(PS_TOPIC_COMMANDS_USAGE, ghost, "usage.record", value);
    ts_produce(PS_TOPIC_COMMANDS_USAGE, user, "usage.record", "{\"customer\":");
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM dead_letters WHERE topic = $1 "
                               "AND reason LIKE '%no such customer%' AND position($2 in reason) > 0",
                          PS_TOPIC_COMMANDS_USAGE, ghost, NULL));
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM dead_letters WHERE topic = $1 "
                               "AND reason LIKE 'not a usage record%' AND payload = convert_to($2, 'UTF8')",
                          PS_TOPIC_COMMANDS_USAGE, "{\"customer\":", NULL));
    char *bal = balance(user);
    cr_assert_str_eq(bal, "70");
    free(bal);
}

Test(billing, one_threshold_invoice_however_many_records_cross_it)
{
    char user[64], auth[1024];
    ts_unique(user, sizeof(user), "saas_");
    register_customer(user);
    ts_bearer(auth, sizeof(auth), user, 0);
    /* 20 records of 1000 shots (350.00 each) at once: 7000.00 in all, past
     * the 3000.00 threshold from whichever record crosses it. */
    char *codes = ts_sh(NULL,
                        "for i in $(seq 1 20); do curl -s -o /dev/null -w '%%{http_code}\\n' "
                        "-H '%s' -H 'Prefer: wait=30' -d \"{\\\"meter\\\":\\\"quantum_shot\\\","
                        "\\\"quantity\\\":1000,\\\"identifier\\\":\\\"burst-$i\\\"}\" "
                        "%s/api/v1/usage & done; wait",
                        auth, ts_env("PAYSTREAM_INTAKE_URL"));
    int created = 0;
    for (char *line = strtok(codes, "\n"); line; line = strtok(NULL, "\n"))
        created += strcmp(line, "201") == 0;
    free(codes);
    cr_assert_eq(created, 20, "every record was applied");
    char *bal = balance(user);
    cr_assert_str_eq(bal, "700000");
    free(bal);
    char *n = ts_sql("SELECT count(*) FROM invoices WHERE customer_id = $1 AND source = 'threshold'",
                     user, NULL);
    cr_assert_str_eq(n, "1", "one invoice for the crossing");
    free(n);
    char *due = ts_sql("SELECT amount_due_minor >= 300000 FROM invoices WHERE customer_id = $1",
                       user, NULL);
    cr_assert_str_eq(due, "t", "it is for the balance that crossed the threshold");
    free(due);
    char *q = ts_sql("SELECT ps_customer_json($1)->'usage_this_period'->'meters'->0->>'quantity'",
                     user, NULL);
    cr_assert_str_eq(q, "20000", "GET /api/v1/customers/me shows this period's usage");
    free(q);
}

Test(billing, create_payment_checks_the_amount_and_makes_a_checkout_session)
{
    char user[64];
    ts_unique(user, sizeof(user), "saas_");
    ts_expect(ts_api("POST", "/billing/create-payment", user, NULL, "{\"amount\":\"1.00\"}"), 404,
                 "customer_missing");
    register_customer(user);
    cr_assert_eq(usage(user, "quantum_shot", 100, "b-1"), 201); /* 35.00 */

    static const char *const bad[] = {"{\"amount\":\"0\"}", "{\"amount\":\"-5.00\"}",
                                      "{\"amount\":\"1.005\"}", "{\"amount\":12.505}",
                                      "{\"amount\":1e-7}", "{\"amount\":0}", "{\"amount\":\"\"}",
                                      "{\"amount\":\"1e3\"}", "{}", "{\"amount\":\"1\",\"x\":1}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ts_expect(ts_api("POST", "/billing/create-payment", user, NULL, bad[i]), 400,
                     "parameter_invalid");
    ts_expect(ts_api("POST", "/billing/create-payment", user, NULL, "{\"amount\":\"35.01\"}"),
                 400, "amount_exceeds_balance");

    /* The billing dashboard sends the amount as a JSON number. */
    ts_http_t r = ts_api("POST", "/billing/create-payment", user, NULL, "{\"amount\": 20.00}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *sid = ts_json(r.body, "session_id"), *url = ts_json(r.body, "url");
    cr_assert(strncmp(sid, "cs_fake_", 8) == 0, "%s", r.body);
    cr_assert(strstr(url, sid), "%s", r.body);
    ts_http_free(&r);
    json_t *sent = stripe_requests("/v1/checkout/sessions"), *req;
    size_t i;
    int found = 0;
    json_array_foreach(sent, i, req) {
        json_t *form = json_object_get(req, "form");
        const char *who = json_string_value(json_object_get(form, "metadata[customer_id]"));
        if (who == NULL || strcmp(who, user) != 0)
            continue;
        found++;
        cr_assert_str_eq(json_string_value(json_object_get(form, "mode")), "payment");
        cr_assert_str_eq(json_string_value(json_object_get(form, "line_items[0][price_data][unit_amount]")),
                         "2000", "minor units");
        cr_assert_str_eq(json_string_value(json_object_get(form, "line_items[0][price_data][currency]")),
                         "usd");
    }
    cr_assert_eq(found, 1);
    json_decref(sent);
    /* The open session holds 20.00 of the 35.00: only 15.00 more may be asked. */
    ts_expect(ts_api("POST", "/billing/create-payment", user, NULL, "{\"amount\":\"15.01\"}"),
                 400, "amount_exceeds_balance");
    free(sid), free(url);
}

Test(billing, a_sandbox_key_gets_a_sandbox_session_without_stripe)
{
    char user[64];
    ts_unique(user, sizeof(user), "tester_");
    char *key = ts_api_key(user, "--sandbox");
    char auth[200];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    const char *headers[] = {auth, "Prefer: wait=30", NULL};
    const char *reg = "{\"email\":\"dev@example.com\"}";
    ts_http_t r = ts_http("POST", "/api/v1/customers", headers, reg, strlen(reg));
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *cus = ts_json(r.body, "stripe_customer_id");
    cr_assert(strncmp(cus, "cus_sandbox_", 12) == 0, "%s", r.body);
    ts_http_free(&r);
    const char *rec = "{\"meter\":\"quantum_shot\",\"quantity\":10,\"identifier\":\"s\"}";
    r = ts_http("POST", "/api/v1/usage", headers, rec, strlen(rec));
    cr_assert_eq(r.status, 201, "%s", r.body);
    ts_http_free(&r);
    const char *pay = "{\"amount\":\"3.50\"}";
    r = ts_http("POST", "/billing/create-payment", headers, pay, strlen(pay));
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *sid = ts_json(r.body, "session_id");
    cr_assert(strncmp(sid, "cs_sandbox_", 11) == 0, "%s", r.body);
    ts_http_free(&r);
    char *status = ts_sql("SELECT meter_status FROM usage_records WHERE customer_id = $1", user, NULL);
    cr_assert_str_eq(status, "local", "a sandbox customer's usage is not reported to Stripe");
    json_t *sent = stripe_requests("/v1/checkout/sessions"), *req;
    size_t i;
    json_array_foreach(sent, i, req) {
        const char *who = json_string_value(
            json_object_get(json_object_get(req, "form"), "metadata[customer_id]"));
        cr_assert(who == NULL || strcmp(who, user) != 0, "nothing of a sandbox session went to Stripe");
    }
    json_decref(sent);
    free(key), free(cus), free(sid), free(status);
}

Test(billing, a_session_completed_twice_lowers_the_balance_once)
{
    char user[64];
    ts_unique(user, sizeof(user), "saas_");
    register_customer(user);
    cr_assert_eq(usage(user, "quantum_shot", 200, "c-1"), 201); /* 70.00 */
    ts_http_t r = ts_api("POST", "/billing/create-payment", user, NULL, "{\"amount\":\"50.00\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *sid = ts_json(r.body, "session_id");
    ts_http_free(&r);

    char *obj = session_object(sid, user, "complete", "paid", 5000);
    char e1[64], e2[64];
    ts_unique(e1, sizeof(e1), "evt_");
    ts_unique(e2, sizeof(e2), "evt_");
    /* A redelivery repeats the event's created time: read the clock once. */
    int64_t created = time(NULL);
    post_event(e1, "checkout.session.completed", created, obj);
    post_event(e1, "checkout.session.completed", created, obj); /* Stripe's redelivery */
    post_event(e2, "checkout.session.completed", created + 1, obj); /* and another event */
    const char *evts[] = {e1, e2};
    wait_events(evts, 2);
    char *bal = balance(user);
    cr_assert_str_eq(bal, "2000", "70.00 less 50.00, once");
    free(bal);
    char *state = ts_sql("SELECT state FROM checkout_sessions WHERE id = $1", sid, NULL);
    cr_assert_str_eq(state, "paid");
    free(state);
    r = ts_api("GET", "/api/v1/customers/me", user, NULL, NULL);
    cr_assert(strstr(r.body, sid) && strstr(r.body, "\"paid\""), "%s", r.body);
    ts_http_free(&r);
    free(obj), free(sid);
}

/* Delivers the events of one session in the order perm gives, each event
 * being (type, status, payment_status, evt id). */
typedef struct {
    const char *type, *status, *payment_status;
} session_event_t;

static void deliver(const char *user, const session_event_t *events, const int *order, size_t n,
                    char *sid, size_t sidlen)
{
    /* A session of 1.00 of the balance, made by paystream: only such a
     * session may pay a balance. */
    ts_http_t r = ts_api("POST", "/billing/create-payment", user, NULL, "{\"amount\":\"1.00\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *made = ts_json(r.body, "session_id");
    ts_http_free(&r);
    snprintf(sid, sidlen, "%s", made);
    free(made);
    char evts[8][64];
    for (size_t i = 0; i < n; i++)
        ts_unique(evts[i], sizeof(evts[i]), "evt_");
    int64_t t0 = time(NULL);
    for (size_t k = 0; k < n; k++) {
        int i = order[k];
        /* The last is the first delivered again: its id, its time. */
        int same = i == (int)n - 1 ? 0 : i;
        const session_event_t *e = &events[same];
        char *obj = session_object(sid, user, e->status, e->payment_status, 100);
        post_event(evts[same], e->type, t0 + same, obj);
        free(obj);
    }
    const char *ids[8];
    for (size_t i = 0; i + 1 < n; i++)
        ids[i] = evts[i];
    wait_events(ids, n - 1);
}

/* Calls fn with every permutation of 0..n-1. */
static void permute(int *a, size_t k, size_t n, void (*fn)(const int *, size_t, void *), void *arg)
{
    if (k == n) {
        fn(a, n, arg);
        return;
    }
    for (size_t i = k; i < n; i++) {
        int t = a[k];
        a[k] = a[i], a[i] = t;
        permute(a, k + 1, n, fn, arg);
        t = a[k];
        a[k] = a[i], a[i] = t;
    }
}

typedef struct {
    const char *user;
    const session_event_t *events;
    const char *end_state;
    int runs;
} perm_run_t;

static void run_permutation(const int *order, size_t n, void *arg)
{
    perm_run_t *run = arg;
    char sid[64];
    deliver(run->user, run->events, order, n, sid, sizeof(sid));
    char *state = ts_sql("SELECT state || '/' || payment_status || '/' || balance_applied "
                         "FROM checkout_sessions WHERE id = $1", sid, NULL);
    cr_assert_str_eq(state, run->end_state, "order %d%d%d%d", order[0], order[1], order[2],
                     n > 3 ? order[3] : -1);
    free(state);
    run->runs++;
}

Test(billing, every_order_of_a_sessions_events_ends_the_same, .timeout = 600)
{
    char user[64];
    ts_unique(user, sizeof(user), "saas_");
    register_customer(user);
    cr_assert_eq(usage(user, "quantum_shot", 10000, "p-1"), 201); /* 3500.00 */
    char *before = balance(user);

    /* A delayed method (OXXO) that is paid: completed unpaid, then the
     * async success; an expiry that contradicts both; the completion
     * delivered twice (the last element repeats the first's id). */
    static const session_event_t paid[] = {
        {"checkout.session.completed", "complete", "unpaid"},
        {"checkout.session.async_payment_succeeded", "complete", "paid"},
        {"checkout.session.expired", "expired", "unpaid"},
        {"checkout.session.completed", "complete", "unpaid"},
    };
    int order[4] = {0, 1, 2, 3};
    perm_run_t run = {user, paid, "paid/paid/true", 0};
    permute(order, 0, 4, run_permutation, &run);
    cr_assert_eq(run.runs, 24);
    char *after = balance(user);
    cr_assert_eq(strtoll(before, NULL, 10) - strtoll(after, NULL, 10), 24 * 100,
                 "each of the 24 sessions lowered the balance exactly once");
    free(after);
    char *invoice = ts_sql("SELECT status || '/' || amount_due_minor || '/' || amount_paid_minor "
                           "FROM invoices WHERE customer_id = $1", user, NULL);
    cr_assert_str_eq(invoice, "open/350000/2400",
                     "the 3500.00 threshold invoice has 24.00 paid toward it");
    free(invoice);

    static const session_event_t failed[] = {
        {"checkout.session.completed", "complete", "unpaid"},
        {"checkout.session.async_payment_failed", "complete", "unpaid"},
        {"checkout.session.completed", "complete", "unpaid"},
    };
    int order3[3] = {0, 1, 2};
    perm_run_t run3 = {user, failed, "payment_failed/unpaid/false", 0};
    permute(order3, 0, 3, run_permutation, &run3);
    cr_assert_eq(run3.runs, 6);
    after = balance(user);
    cr_assert_eq(strtoll(before, NULL, 10) - strtoll(after, NULL, 10), 24 * 100,
                 "a failed payment lowers nothing");
    free(before), free(after);
}

Test(billing, an_oxxo_voucher_is_kept_for_the_payment)
{
    char pi[64], evt[64], obj[700];
    ts_unique(pi, sizeof(pi), "pi_");
    ts_unique(evt, sizeof(evt), "evt_");
    snprintf(obj, sizeof(obj),
             "{\"id\":\"%s\",\"object\":\"payment_intent\",\"amount\":15000,\"currency\":\"mxn\","
             "\"status\":\"requires_action\",\"next_action\":{\"type\":\"oxxo_display_details\","
             "\"oxxo_display_details\":{\"number\":\"12345678901234657890123456789012\","
             "\"expires_after\":1796000000,"
             "\"hosted_voucher_url\":\"https://payments.stripe.com/oxxo/voucher/test\"}}}",
             pi);
    post_event(evt, "payment_intent.requires_action", time(NULL), obj);
    const char *evts[] = {evt};
    wait_events(evts, 1);
    char *v = ts_sql("SELECT voucher->>'number' || ' ' || (voucher->>'expires_at') || ' ' || "
                     "(voucher->>'hosted_voucher_url') FROM payments WHERE gateway_payment_id = $1",
                     pi, NULL);
    cr_assert_str_eq(v, "12345678901234657890123456789012 1796000000 "
                        "https://payments.stripe.com/oxxo/voucher/test");
    free(v);
}

static void subscription_event(const char *sub, const char *type, const char *status, int64_t at)
{
    char evt[64], obj[400];
    ts_unique(evt, sizeof(evt), "evt_");
    snprintf(obj, sizeof(obj),
             "{\"id\":\"%s\",\"object\":\"subscription\",\"status\":\"%s\",\"customer\":\"cus_x\","
             "\"current_period_start\":%lld,\"current_period_end\":%lld,"
             "\"items\":{\"data\":[{\"price\":{\"id\":\"price_pro\"},\"quantity\":1}]}}",
             sub, status, (long long)at, (long long)at + 2592000);
    post_event(evt, type, at, obj);
    const char *evts[] = {evt};
    wait_events(evts, 1);
}

static void invoice_event(const char *inv, const char *type, const char *status, int attempts,
                          int64_t at)
{
    char evt[64], obj[400];
    ts_unique(evt, sizeof(evt), "evt_");
    snprintf(obj, sizeof(obj),
             "{\"id\":\"%s\",\"object\":\"invoice\",\"status\":\"%s\",\"customer\":\"cus_x\","
             "\"amount_due\":4900,\"amount_paid\":%d,\"currency\":\"usd\",\"attempt_count\":%d}",
             inv, status, strcmp(status, "paid") == 0 ? 4900 : 0, attempts);
    post_event(evt, type, at, obj);
    const char *evts[] = {evt};
    wait_events(evts, 1);
}

Test(billing, subscriptions_and_invoices_keep_their_newest_state)
{
    char sub[64], inv[64];
    ts_unique(sub, sizeof(sub), "sub_");
    ts_unique(inv, sizeof(inv), "in_");
    int64_t t = time(NULL) - 100;
    subscription_event(sub, "customer.subscription.updated", "past_due", t + 30);
    subscription_event(sub, "customer.subscription.created", "active", t); /* late */
    char *s = ts_sql("SELECT status FROM subscriptions WHERE id = $1", sub, NULL);
    cr_assert_str_eq(s, "past_due", "an older event does not overwrite");
    free(s);
    subscription_event(sub, "customer.subscription.deleted", "canceled", t + 40);
    subscription_event(sub, "customer.subscription.updated", "active", t + 50);
    s = ts_sql("SELECT status FROM subscriptions WHERE id = $1", sub, NULL);
    cr_assert_str_eq(s, "canceled", "nothing leaves canceled");
    free(s);

    invoice_event(inv, "invoice.paid", "paid", 2, t + 30);
    invoice_event(inv, "invoice.payment_failed", "open", 1, t + 20);
    invoice_event(inv, "invoice.created", "draft", 0, t);
    invoice_event(inv, "invoice.voided", "void", 2, t + 40);
    s = ts_sql("SELECT status || '/' || amount_paid_minor || '/' || attempt_count "
               "FROM invoices WHERE id = $1", inv, NULL);
    cr_assert_str_eq(s, "paid/4900/2", "the further status wins and paid is final");
    free(s);
}

Test(billing, meter_events_are_retried_and_reported_once)
{
    char user[64];
    ts_unique(user, sizeof(user), "saas_");
    register_customer(user);
    /* Let earlier records go first, then make Stripe fail three times. */
    cr_assert(ts_wait_sql("0", "SELECT count(*) FROM usage_records WHERE meter_status = 'pending'",
                          NULL));
    free(ts_sh(NULL, "curl -fsS -X POST '%s/_fail?count=3&status=500'", ts_env("STRIPE_API_BASE")));
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof(id), "m-%d", i);
        cr_assert_eq(usage(user, "quantum_shot", 5 + i, id), 201);
    }
    cr_assert(ts_wait_sql("3", "SELECT count(*) FROM usage_records WHERE customer_id = $1 "
                               "AND meter_status = 'reported'", user, NULL));
    char *tries = ts_sql("SELECT sum(report_attempts) > 3 FROM usage_records WHERE customer_id = $1",
                         user, NULL);
    cr_assert_str_eq(tries, "t", "the failures were retried");
    free(tries);

    json_t *sent = stripe_requests("/v1/billing/meter_events"), *req;
    char *ids = ts_sql("SELECT string_agg(stripe_identifier, ' ') FROM usage_records "
                       "WHERE customer_id = $1", user, NULL);
    size_t i;
    int accepted = 0, refused = 0, failed = 0;
    json_array_foreach(sent, i, req) {
        const char *ident = json_string_value(
            json_object_get(json_object_get(req, "form"), "identifier"));
        if (ident == NULL || strstr(ids, ident) == NULL)
            continue;
        int status = (int)json_integer_value(json_object_get(req, "status"));
        accepted += status == 200;
        refused += status == 400;
        failed += status == 500;
        cr_assert_str_eq(json_string_value(json_object_get(req, "idempotency_key")), ident);
        const char *value = json_string_value(
            json_object_get(json_object_get(req, "form"), "payload[value]"));
        cr_assert(value && strlen(value) == 1 && strchr("567", value[0]), "value %s", value);
    }
    cr_assert_eq(accepted, 3, "each record reached Stripe once");
    cr_assert_eq(refused, 0, "no identifier was sent again after Stripe had it");
    cr_assert_geq(failed, 1, "the injected failures hit these records");
    json_decref(sent);
    free(ids);
}

Test(billing, health_says_the_stripe_mode_and_no_secret)
{
    ts_http_t r = ts_http_admin("/health");
    cr_assert_eq(r.status, 200);
    char *stripe = ts_json(r.body, "stripe_mode"), *hooks = ts_json(r.body, "webhooks.stripe");
    cr_assert_str_eq(stripe, "test", "%s", r.body);
    cr_assert_str_eq(hooks, "true", "%s", r.body);
    cr_assert_null(strstr(r.body, "sk_test"), "%s", r.body);
    cr_assert_null(strstr(r.body, "whsec_"), "%s", r.body);
    free(stripe), free(hooks);
    ts_http_free(&r);
}

/* The row of table in the billing page's report, as "cell|cell|...". */
static char *page_row(json_t *page, const char *table, size_t i)
{
    json_t *row = json_array_get(json_object_get(page, table), i);
    char out[512] = "";
    size_t j;
    json_t *cell;
    json_array_foreach(row, j, cell) {
        if (j)
            strncat(out, "|", sizeof(out) - strlen(out) - 1);
        strncat(out, json_string_value(cell) ? json_string_value(cell) : "?",
                sizeof(out) - strlen(out) - 1);
    }
    return strdup(out);
}

/* The customer billing page in headless Chromium (tests/browser): what it
 * shows, exactly to the cent, and Pay Now taking the customer to the
 * Checkout Session made for the payable amount. The customer's name is
 * markup: the page shows it as text and runs nothing. The screenshot is
 * kept in the run folder's artifacts. */
Test(billing, the_billing_page_shows_the_balance_and_pays_it_in_a_browser, .timeout = 180)
{
    char user[64], body[256];
    ts_unique(user, sizeof(user), "page_");
    snprintf(body, sizeof(body),
             "{\"email\":\"%s@example.com\",\"name\":\"<img src=x onerror=alert(1)>\"}", user);
    ts_http_t r = ts_api("POST", "/api/v1/customers", user, WAIT, body);
    cr_assert_eq(r.status, 201, "%s", r.body);
    ts_http_free(&r);
    cr_assert_eq(usage(user, "quantum_shot", 10000, "page-1"), 201); /* 3500.00: invoiced */
    cr_assert_eq(usage(user, "api_call", 1234, "page-2"), 201);      /* 12.34 */
    r = ts_api("POST", "/billing/create-payment", user, NULL, "{\"amount\":\"100.00\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);

    char auth[1024], shot[512];
    ts_bearer(auth, sizeof(auth), user, 0);
    const char *jwt = strstr(auth, "Bearer ") + 7;
    snprintf(shot, sizeof(shot), "%s/artifacts", ts_env("PAYSTREAM_RUN_DIR"));
    free(ts_sh(NULL, "mkdir -p '%s'", shot));
    strncat(shot, "/billing-page.png", sizeof(shot) - strlen(shot) - 1);
    const char *dev = ts_env("PAYSTREAM_DEV"); /* <root>/scripts/dev */
    int status;
    char *out = ts_sh(&status,
                      "cd \"$(dirname \"$(dirname '%s')\")/tests/browser\" && "
                      "BILLING_TOKEN='%s' BILLING_SCREENSHOT='%s' "
                      "node billing_page.js",
                      dev, jwt, shot);
    cr_assert_eq(status, 0, "the browser run failed: %s", out);
    json_error_t jerr;
    json_t *report = json_loads(out, 0, &jerr);
    cr_assert_not_null(report, "%s: %s", jerr.text, out);
    json_t *page = json_object_get(report, "page");

    cr_assert_eq(json_array_size(json_object_get(report, "errors")), 0, "%s", out);
    cr_assert_eq(json_array_size(json_object_get(report, "dialogs")), 0, "no script ran: %s", out);
    const char *address = json_string_value(json_object_get(page, "address"));
    cr_assert(address && strstr(address, "token") == NULL, "the credential leaves the address bar: %s",
              address);
    char who[160];
    snprintf(who, sizeof(who), "<img src=x onerror=alert(1)> · %s@example.com", user);
    cr_assert_str_eq(json_string_value(json_object_get(page, "who")), who);
    cr_assert_str_eq(json_string_value(json_object_get(page, "balance")), "USD 3,512.34");
    cr_assert_str_eq(json_string_value(json_object_get(page, "payable")), "USD 3,412.34",
                     "the balance less the open session's 100.00");
    char *row = page_row(page, "usage", 0);
    cr_assert_str_eq(row, "api_call|1234|USD 12.34");
    free(row);
    row = page_row(page, "usage", 1);
    cr_assert_str_eq(row, "quantum_shot|10000|USD 3,500.00");
    free(row);
    cr_assert_eq(json_array_size(json_object_get(page, "usage")), 2);
    char *invoice = ts_sql("SELECT id || '|' || to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') "
                           "|| '|USD 3,500.00' FROM invoices WHERE customer_id = $1 AND status = 'open'",
                           user, NULL);
    row = page_row(page, "invoices", 0);
    cr_assert_str_eq(row, invoice, "the threshold invoice, for the balance that crossed it");
    free(row), free(invoice);
    cr_assert_eq(json_array_size(json_object_get(page, "invoices")), 1);
    row = page_row(page, "payments", 0);
    cr_assert(strstr(row, "|open|USD 100.00") != NULL, "%s", row);
    free(row);
    cr_assert(json_is_true(json_object_get(page, "pay_enabled")));
    cr_assert(json_is_false(json_object_get(page, "signin_shown")), "signed in, no sign-in form");

    /* Pay Now asked for the payable amount and went to its session's page. */
    char *url = ts_sql("SELECT url FROM checkout_sessions WHERE customer_id = $1 AND amount_minor = 341234",
                       user, NULL);
    cr_assert(url && strncmp(url, "https://", 8) == 0, "a session for 3412.34: %s", url);
    cr_assert_str_eq(json_string_value(json_object_get(report, "checkout_url")), url);
    cr_assert(strstr(out, "\"POST /billing/create-payment\""), "%s", out);
    free(url);

    FILE *f = fopen(shot, "rb");
    cr_assert_not_null(f, "the screenshot %s", shot);
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, sizeof(sig), f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert(got == 8 && memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0, "%s is a PNG", shot);
    cr_assert_gt(size, 10000, "a real screenshot, %ld bytes", size);
    json_decref(report);
    free(out);
}
