/* The shop's life cycle through the API and webhooks: order, payment on
 * the sandbox gateway, Stripe's confirmation, refunds, and the ledger. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "support.h"

static const char *const WAIT[] = {"Prefer: wait=30", NULL};

static char *order_of(const char *user, const char *price)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"currency\":\"eur\",\"items\":[{\"product_id\":\"sku_lamp\",\"quantity\":2,"
             "\"unit_price\":\"%s\"}]}", price);
    return ts_call(user, "POST", "/api/v1/orders", body, 201, "id");
}

static char *payment_for(const char *user, const char *order, const char *amount)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"%s\",\"currency\":\"eur\"}",
             order, amount);
    return ts_call(user, "POST", "/api/v1/payments", body, 201, "id");
}

static char *order_status(const char *order)
{
    return ts_sql("SELECT status FROM orders WHERE id = $1", order, NULL);
}

/* Ledger of a payment: charges less refunds. */
static char *ledger_net(const char *payment)
{
    return ts_sql("SELECT coalesce(sum(CASE type WHEN 'charge' THEN amount_minor "
                  "ELSE -amount_minor END), 0)::text FROM transactions WHERE payment_id = $1",
                  payment, NULL);
}

/* Holds a lock on the ledger that blocks every insert into it (the
 * recording of a gateway's answer) until release_ledger. */
static PGconn *hold_ledger(void)
{
    PGconn *holder = PQconnectdb(ts_env("PAYSTREAM_PG_DSN"));
    cr_assert_eq(PQstatus(holder), CONNECTION_OK);
    PQclear(PQexec(holder, "BEGIN"));
    PGresult *res = PQexec(holder, "LOCK TABLE transactions IN SHARE MODE");
    cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(holder));
    PQclear(res);
    return holder;
}

static void release_ledger(PGconn *holder)
{
    PQclear(PQexec(holder, "ROLLBACK"));
    PQfinish(holder);
}

/* A payment made while its order was pending is not charged once the
 * order is cancelled: the customer would pay for an order that is gone. */
Test(shop, a_cancelled_orders_payment_is_not_charged)
{
    char user[64], path[160];
    ts_unique(user, sizeof(user), "canceller_");
    char *order = order_of(user, "12.50");
    char *payment = payment_for(user, order, "25.00");
    snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
    char *reason = ts_call(user, "DELETE", path, NULL, 200, "cancellation_reason");
    cr_assert_str_eq(reason, "requested");
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    char *code = ts_call(user, "POST", path, "{\"payment_method\":\"pm_card_visa\"}", 409,
                         "error.code");
    cr_assert_str_eq(code, "order_not_pending");
    char *calls = ts_sql("SELECT count(*) FROM gateway_calls WHERE payment_id = $1", payment, NULL);
    cr_assert_str_eq(calls, "0", "the gateway was not asked");
    char *ledger = ts_sql("SELECT count(*) FROM transactions WHERE payment_id = $1", payment, NULL);
    cr_assert_str_eq(ledger, "0");
    free(reason), free(code), free(calls), free(ledger), free(payment), free(order);
}

Test(shop, order_to_full_refund_with_the_ledger_back_to_zero)
{
    char user[64], path[160];
    ts_unique(user, sizeof(user), "shopper_");
    char *order = order_of(user, "12.50");
    char *payment = payment_for(user, order, "25.00");
    char *st = order_status(order);
    cr_assert_str_eq(st, "pending", "a payment alone does not pay the order");
    free(st);

    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    char *status = ts_call(user, "POST", path, "{\"payment_method\":\"pm_card_visa\"}", 200, "status");
    cr_assert_str_eq(status, "completed");
    free(status);
    st = order_status(order);
    cr_assert_str_eq(st, "paid");
    free(st);

    /* Stripe's confirmation of the same payment intent changes nothing. */
    char *pi = ts_sql("SELECT gateway_payment_id FROM payments WHERE id = $1", payment, NULL);
    char *charge = ts_sql("SELECT gateway_transaction_id FROM transactions WHERE payment_id = $1 "
                          "AND type = 'charge'", payment, NULL);
    char evt[64], obj[512];
    ts_unique(evt, sizeof(evt), "evt_shop_");
    snprintf(obj, sizeof(obj),
             "{\"id\":\"%s\",\"object\":\"payment_intent\",\"amount\":2500,\"amount_received\":2500,"
             "\"currency\":\"eur\",\"status\":\"succeeded\",\"latest_charge\":\"%s\","
             "\"metadata\":{\"order_id\":\"%s\"}}", pi, charge, order);
    char *event = ts_event(evt, "payment_intent.succeeded", time(NULL), obj);
    ts_http_t r = ts_post_signed("/webhooks/stripe", event, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", evt, NULL));
    char *charges = ts_sql("SELECT count(*) FROM transactions WHERE payment_id = $1 AND type = 'charge'",
                           payment, NULL);
    cr_assert_str_eq(charges, "1", "the charge is in the ledger once");
    char *net = ledger_net(payment);
    cr_assert_str_eq(net, "2500");
    free(net);

    snprintf(path, sizeof(path), "/api/v1/payments/%s/refund", payment);
    status = ts_call(user, "POST", path, "{\"amount\":\"10.00\",\"reason\":\"requested_by_customer\"}",
                  200, "status");
    cr_assert_str_eq(status, "partially_refunded");
    free(status);
    st = order_status(order);
    cr_assert_str_eq(st, "paid", "a partial refund leaves the order paid");
    free(st);
    /* More than what is left is refused and changes nothing. */
    ts_http_t over = ts_api("POST", path, user, WAIT, "{\"amount\":\"15.01\"}");
    cr_assert_eq(over.status, 409, "%s", over.body);
    char *code = ts_json(over.body, "error.code");
    cr_assert_str_eq(code, "refund_exceeds_captured");
    ts_http_free(&over);
    free(code);

    status = ts_call(user, "POST", path, "{}", 200, "status");
    cr_assert_str_eq(status, "refunded", "no amount refunds the rest");
    free(status);
    st = order_status(order);
    cr_assert_str_eq(st, "refunded");
    net = ledger_net(payment);
    cr_assert_str_eq(net, "0", "the ledger balances to zero");
    char *rows = ts_sql("SELECT string_agg(type || ':' || amount_minor, ',' ORDER BY type, amount_minor) "
                        "FROM transactions WHERE payment_id = $1", payment, NULL);
    cr_assert_str_eq(rows, "charge:2500,refund:1000,refund:1500");
    char *mismatch = ts_sql("SELECT count(*) FROM dash_ledger_mismatches WHERE id = $1", payment, NULL);
    cr_assert_str_eq(mismatch, "0");

    /* The ledger through the API. */
    snprintf(path, sizeof(path), "/api/v1/transactions?payment_id=%s", payment);
    r = ts_api("GET", path, user, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"type\": \"charge\"") && strstr(r.body, "\"type\": \"refund\""), "%s", r.body);
    ts_http_free(&r);
    char other[64];
    ts_unique(other, sizeof(other), "stranger_");
    r = ts_api("GET", path, other, NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_null(strstr(r.body, payment), "another user sees none of it: %s", r.body);
    ts_http_free(&r);
    free(order), free(payment), free(st), free(pi), free(charge), free(event), free(charges);
    free(net), free(rows), free(mismatch);
}

Test(shop, a_declined_card_fails_the_payment_and_another_card_pays)
{
    char user[64], path[160];
    ts_unique(user, sizeof(user), "shopper_");
    char *order = order_of(user, "3.00");
    char *payment = payment_for(user, order, "6.00");
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    char *status = ts_call(user, "POST", path, "{\"payment_method\":\"pm_card_chargeDeclined\"}", 200,
                        "status");
    cr_assert_str_eq(status, "failed");
    char *code = ts_sql("SELECT failure_code FROM payments WHERE id = $1", payment, NULL);
    cr_assert_str_eq(code, "generic_decline", "Stripe's decline code");
    char *st = order_status(order);
    cr_assert_str_eq(st, "pending");
    char *charges = ts_sql("SELECT count(*) FROM transactions WHERE payment_id = $1", payment, NULL);
    cr_assert_str_eq(charges, "0", "a declined card moves no money");
    free(status), free(st), free(code);

    /* An unknown method is the request's error; the payment stays as it was. */
    ts_http_t r = ts_api("POST", path, user, WAIT, "{\"payment_method\":\"pm_card_unknown\"}");
    cr_assert_eq(r.status, 400, "%s", r.body);
    code = ts_json(r.body, "error.code");
    cr_assert_str_eq(code, "resource_missing");
    ts_http_free(&r);

    status = ts_call(user, "POST", path, "{\"payment_method\":\"pm_card_visa\"}", 200, "status");
    cr_assert_str_eq(status, "completed");
    st = order_status(order);
    cr_assert_str_eq(st, "paid");
    /* A completed payment is not processed again. */
    r = ts_api("POST", path, user, WAIT, "{\"payment_method\":\"pm_card_visa\"}");
    cr_assert_eq(r.status, 409, "%s", r.body);
    ts_http_free(&r);
    free(order), free(payment), free(status), free(code), free(st), free(charges);
}

/* The order service's clients: prices and amounts as JSON numbers, the
 * gateway named on create, the payment method as payment_method_id with a
 * confirmation_method, a refund's reason in their own words. */
Test(shop, the_order_services_request_shapes_pay_an_order)
{
    char user[64], path[160];
    ts_unique(user, sizeof(user), "shopper_");
    char *order = ts_call(user, "POST", "/api/v1/orders",
                          "{\"currency\": \"eur\", \"items\": [{\"product_id\": \"sku_lamp\", "
                          "\"quantity\": 2, \"unit_price\": 29.99}]}", 201, "id");
    char body[256];
    snprintf(body, sizeof(body), "{\"order_id\": \"%s\", \"amount\": 59.98, \"currency\": \"eur\", "
             "\"payment_method\": \"stripe\"}", order);
    char *payment = ts_call(user, "POST", "/api/v1/payments", body, 201, "id");
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    static const char *const bad[] = {
        "{\"payment_method_id\": \"card_visa\"}",
        "{\"payment_method\": \"pm_card_visa\", \"payment_method_id\": \"pm_card_amex\"}",
        "{\"payment_method_id\": \"pm_card_visa\", \"confirmation_method\": \"later\"}",
        "{\"confirmation_method\": \"automatic\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ts_http_t r = ts_api("POST", path, user, WAIT, bad[i]);
        cr_assert_eq(r.status, 400, "%s: %s", bad[i], r.body);
        ts_http_free(&r);
    }
    char *status = ts_call(user, "POST", path,
                           "{\"payment_method_id\": \"pm_card_visa\", "
                           "\"confirmation_method\": \"automatic\"}", 200, "status");
    cr_assert_str_eq(status, "completed");
    char *st = order_status(order), *net = ledger_net(payment);
    cr_assert_str_eq(st, "paid");
    cr_assert_str_eq(net, "5998", "59.98 exactly");

    /* A refund with a reason in the shop's own words: kept as its description. */
    snprintf(path, sizeof(path), "/api/v1/payments/%s/refund", payment);
    ts_http_t r = ts_api("POST", path, user, WAIT, "{\"amount\": 10.00, \"reason\": \"Product\ndefect\"}");
    cr_assert_eq(r.status, 400, "a reason on two lines: %s", r.body);
    ts_http_free(&r);
    char *refunded = ts_call(user, "POST", path,
                             "{\"amount\": 10.00, \"reason\": \"Product defect\"}", 200, "status");
    cr_assert_str_eq(refunded, "partially_refunded");
    char *kept = ts_sql("SELECT coalesce(reason, '-') || '|' || description || '|' || amount_minor "
                        "FROM refunds WHERE payment_id = $1", payment, NULL);
    cr_assert_str_eq(kept, "-|Product defect|1000", "no gateway reason, the words kept");
    free(order), free(payment), free(status), free(st), free(net), free(refunded), free(kept);
}

/* The order service's clients name the gateway when they make a payment
 * (payment_method): the one the caller's payments go to is taken, any other
 * refused (a shopper who could pick the sandbox on a Stripe server would
 * pay nothing); paypal is test_paypal.c's. */
Test(shop, payment_method_on_create_chooses_the_gateway)
{
    char user[64];
    ts_unique(user, sizeof(user), "shopper_");
    char *sandboxed = order_of(user, "3.00"), *striped = order_of(user, "4.00");
    char body[256];
    static const struct { const char *method; long status; const char *code; } bad[] = {
        {"bitcoin", 400, "parameter_invalid"},
        {"", 400, "parameter_invalid"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":6.00,\"currency\":\"eur\","
                 "\"payment_method\":\"%s\"}", sandboxed, bad[i].method);
        ts_http_t r = ts_api("POST", "/api/v1/payments", user, WAIT, body);
        cr_assert_eq(r.status, bad[i].status, "%s: %s", bad[i].method, r.body);
        char *code = ts_json(r.body, "error.code");
        cr_assert_str_eq(code, bad[i].code, "%s", r.body);
        free(code);
        ts_http_free(&r);
    }
    /* The attack: the sandbox's test card "pays" without money. */
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":6.00,\"currency\":\"eur\","
             "\"payment_method\":\"sandbox\"}", sandboxed);
    ts_http_t r = ts_api("POST", "/api/v1/payments", user, WAIT, body);
    cr_assert_eq(r.status, 409, "%s", r.body);
    char *code = ts_json(r.body, "error.code");
    cr_assert_str_eq(code, "gateway_unavailable", "%s", r.body);
    free(code);
    ts_http_free(&r);
    char *none = ts_sql("SELECT count(*) FROM payments WHERE order_id = $1", sandboxed, NULL);
    cr_assert_str_eq(none, "0", "no payment on the sandbox");
    free(none);
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":8.00,\"currency\":\"eur\","
             "\"payment_method\":\"stripe\"}", striped);
    char *on_stripe = ts_call(user, "POST", "/api/v1/payments", body, 201, "id");
    char *g2 = ts_sql("SELECT gateway FROM payments WHERE id = $1", on_stripe, NULL);
    cr_assert_str_eq(g2, "stripe", "the tests' worker has a (fake) Stripe key");

    /* A sandbox key never reaches Stripe, whatever it asks, and pays on the
     * sandbox when it names it. */
    char tester[64], auth[200];
    ts_unique(tester, sizeof(tester), "tester_");
    char *key = ts_api_key(tester, "--sandbox");
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    const char *headers[] = {auth, "Prefer: wait=30", NULL};
    const char *order_body = "{\"currency\":\"eur\",\"items\":[{\"product_id\":\"sku_lamp\","
                             "\"quantity\":1,\"unit_price\":2.00}]}";
    r = ts_http("POST", "/api/v1/orders", headers, order_body, strlen(order_body));
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *theirs = ts_json(r.body, "id");
    ts_http_free(&r);
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":2.00,\"currency\":\"eur\","
             "\"payment_method\":\"stripe\"}", theirs);
    r = ts_http("POST", "/api/v1/payments", headers, body, strlen(body));
    cr_assert_eq(r.status, 409, "%s", r.body);
    code = ts_json(r.body, "error.code");
    cr_assert_str_eq(code, "gateway_unavailable", "%s", r.body);
    ts_http_free(&r);
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":2.00,\"currency\":\"eur\","
             "\"payment_method\":\"sandbox\"}", theirs);
    r = ts_http("POST", "/api/v1/payments", headers, body, strlen(body));
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *on_sandbox = ts_json(r.body, "id");
    ts_http_free(&r);
    char *g1 = ts_sql("SELECT gateway FROM payments WHERE id = $1", on_sandbox, NULL);
    cr_assert_str_eq(g1, "sandbox");
    free(sandboxed), free(striped), free(on_sandbox), free(on_stripe), free(g1), free(g2);
    free(key), free(theirs), free(code);
}

Test(shop, payments_must_match_the_order)
{
    char user[64], body[256];
    ts_unique(user, sizeof(user), "shopper_");
    char *order = order_of(user, "1.00");
    static const struct {
        const char *amount, *currency, *code, *param;
    } cases[] = {
        {"1.99", "eur", "amount_mismatch", "amount"},
        {"2.00", "usd", "currency_mismatch", "currency"},
        {"2.001", "eur", "parameter_invalid", "amount"},
        {"0", "eur", "parameter_invalid", "amount"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"%s\",\"currency\":\"%s\"}",
                 order, cases[i].amount, cases[i].currency);
        ts_http_t r = ts_api("POST", "/api/v1/payments", user, WAIT, body);
        cr_assert_eq(r.status, 400, "case %zu: %s", i, r.body);
        char *code = ts_json(r.body, "error.code"), *param = ts_json(r.body, "error.param");
        cr_assert_str_eq(code, cases[i].code, "case %zu", i);
        cr_assert_str_eq(param, cases[i].param, "case %zu", i);
        free(code), free(param);
        ts_http_free(&r);
    }
    char other[64];
    ts_unique(other, sizeof(other), "stranger_");
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"2.00\",\"currency\":\"eur\"}", order);
    ts_http_t r = ts_api("POST", "/api/v1/payments", other, WAIT, body);
    cr_assert_eq(r.status, 404, "another user's order: %s", r.body);
    ts_http_free(&r);

    char *payment = payment_for(user, order, "2.00");
    /* The whole amount is taken: a second payment has nothing open. */
    r = ts_api("POST", "/api/v1/payments", user, WAIT, body);
    cr_assert_eq(r.status, 400, "%s", r.body);
    ts_http_free(&r);
    char *n = ts_sql("SELECT count(*) FROM payments WHERE order_id = $1", order, NULL);
    cr_assert_str_eq(n, "1");
    free(order), free(payment), free(n);
}

Test(shop, two_refunds_racing_for_the_last_amount_one_wins)
{
    char user[64], path[160];
    ts_unique(user, sizeof(user), "shopper_");
    char *order = order_of(user, "4.00");
    char *payment = payment_for(user, order, "8.00");
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    free(ts_call(user, "POST", path, "{\"payment_method\":\"pm_card_visa\"}", 200, NULL));

    /* Both accepted before either is applied (no wait), each for everything. */
    snprintf(path, sizeof(path), "/api/v1/payments/%s/refund", payment);
    ts_http_t a = ts_api("POST", path, user, NULL, "{\"amount\":\"8.00\"}");
    ts_http_t b = ts_api("POST", path, user, NULL, "{\"amount\":\"8.00\"}");
    cr_assert_eq(a.status, 202, "%s", a.body);
    cr_assert_eq(b.status, 202, "%s", b.body);
    char *ids[2] = {ts_json(a.body, "command_id"), ts_json(b.body, "command_id")};
    int won = 0, lost = 0;
    for (int i = 0; i < 2; i++) {
        char cpath[128];
        snprintf(cpath, sizeof(cpath), "/api/v1/commands/%s", ids[i]);
        ts_http_t c = ts_api("GET", cpath, user, WAIT, NULL);
        char *http = ts_json(c.body, "http_status");
        cr_assert(http, "%s", c.body);
        won += strcmp(http, "200") == 0;
        lost += strcmp(http, "409") == 0;
        free(http);
        ts_http_free(&c);
    }
    cr_assert_eq(won, 1);
    cr_assert_eq(lost, 1);
    char *refunded = ts_sql("SELECT refunded_minor || '/' || captured_minor FROM payments WHERE id = $1",
                            payment, NULL);
    cr_assert_str_eq(refunded, "800/800");
    char *net = ledger_net(payment);
    cr_assert_str_eq(net, "0");
    ts_http_free(&a), ts_http_free(&b);
    free(ids[0]), free(ids[1]), free(order), free(payment), free(refunded), free(net);
}

Test(shop, a_retried_process_charges_once)
{
    char user[64], path[160], key[80];
    ts_unique(user, sizeof(user), "shopper_");
    ts_unique(key, sizeof(key), "Idempotency-Key: pay_");
    char *order = order_of(user, "7.00");
    char *payment = payment_for(user, order, "14.00");
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    const char *headers[] = {key, NULL};
    for (int i = 0; i < 4; i++) {
        ts_http_t r = ts_api("POST", path, user, headers, "{\"payment_method\":\"pm_card_visa\"}");
        cr_assert(r.status == 202 || r.status == 200, "%ld %s", r.status, r.body);
        ts_http_free(&r);
    }
    cr_assert(ts_wait_sql("completed", "SELECT status FROM payments WHERE id = $1", payment, NULL));
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM gateway_calls WHERE payment_id = $1 "
                          "AND finished_at IS NOT NULL", payment, NULL));
    char *charges = ts_sql("SELECT count(*) || ':' || sum(amount_minor) FROM transactions "
                           "WHERE payment_id = $1", payment, NULL);
    cr_assert_str_eq(charges, "1:1400");
    /* Once applied, a retry gets the first answer, though the payment can
     * no longer be processed. */
    ts_http_t r = ts_api("POST", path, user, headers, "{\"payment_method\":\"pm_card_visa\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *replayed = ts_header(&r, "Idempotent-Replayed");
    cr_assert(replayed && strcmp(replayed, "true") == 0);
    ts_http_free(&r);
    free(order), free(payment), free(charges), free(replayed);
}

Test(shop, a_worker_killed_between_the_gateway_call_and_its_record_charges_once)
{
    char user[64], path[160];
    ts_unique(user, sizeof(user), "shopper_");
    char *order = order_of(user, "9.00");
    char *payment = payment_for(user, order, "18.00");

    /* Recording the gateway's answer waits, after the call was recorded and made. */
    PGconn *holder = hold_ledger();

    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    ts_http_t r = ts_api("POST", path, user, NULL, "{\"payment_method\":\"pm_card_visa\"}");
    cr_assert_eq(r.status, 202, "%s", r.body);
    ts_http_free(&r);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                          "AND query LIKE '%ps_gateway_finish%'", NULL));

    /* The worker dies; so does its half-done transaction. */
    cr_assert_eq(ts_svc("kill", "payments"), 0);
    free(ts_sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE '%ps_gateway_finish%'", NULL));
    release_ledger(holder);
    char *pending = ts_sql("SELECT count(*) FROM gateway_calls WHERE payment_id = $1 "
                           "AND finished_at IS NULL", payment, NULL);
    cr_assert_str_eq(pending, "1", "the call was recorded, its answer not");

    cr_assert_eq(ts_svc("start", "payments"), 0);
    cr_assert(ts_wait_sql("completed", "SELECT status FROM payments WHERE id = $1", payment, NULL));
    char *ledger = ts_sql("SELECT count(*) || ':' || sum(amount_minor) FROM transactions "
                          "WHERE payment_id = $1", payment, NULL);
    cr_assert_str_eq(ledger, "1:1800", "charged once");
    char *calls = ts_sql("SELECT count(*) || ':' || count(finished_at) FROM gateway_calls "
                         "WHERE payment_id = $1", payment, NULL);
    cr_assert_str_eq(calls, "1:1", "one call, asked again with the same key and finished");
    char *st = order_status(order);
    cr_assert_str_eq(st, "paid");
    free(order), free(payment), free(pending), free(ledger), free(calls), free(st);
}

Test(shop, a_retry_while_the_first_is_in_flight_is_the_same_command)
{
    char user[64], path[160], key[80];
    ts_unique(user, sizeof(user), "shopper_");
    ts_unique(key, sizeof(key), "Idempotency-Key: inflight_");
    char *order = order_of(user, "2.00");
    char *payment = payment_for(user, order, "4.00");

    /* The first attempt's charge stays in flight. */
    PGconn *holder = hold_ledger();
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    const char *headers[] = {key, NULL};
    ts_http_t first = ts_api("POST", path, user, headers, "{\"payment_method\":\"pm_card_visa\"}");
    cr_assert_eq(first.status, 202, "%s", first.body);
    cr_assert(ts_wait_sql("processing", "SELECT status FROM payments WHERE id = $1", payment, NULL));

    /* The payment is processing, but this is the same command: accepted, not 409. */
    ts_http_t retry = ts_api("POST", path, user, headers, "{\"payment_method\":\"pm_card_visa\"}");
    cr_assert_eq(retry.status, 202, "%s", retry.body);
    char *a = ts_json(first.body, "command_id"), *b = ts_json(retry.body, "command_id");
    cr_assert_str_eq(a, b);
    release_ledger(holder);

    char cpath[128];
    snprintf(cpath, sizeof(cpath), "/api/v1/commands/%s", a);
    ts_http_t c = ts_api("GET", cpath, user, WAIT, NULL);
    char *http = ts_json(c.body, "http_status");
    cr_assert_str_eq(http, "200", "%s", c.body);
    char *charges = ts_sql("SELECT count(*) FROM transactions WHERE payment_id = $1", payment, NULL);
    cr_assert_str_eq(charges, "1");
    ts_http_free(&first), ts_http_free(&retry), ts_http_free(&c);
    free(order), free(payment), free(a), free(b), free(http), free(charges);
}
