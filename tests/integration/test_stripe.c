/* The stripe gateway against tests/fake_stripe (STRIPE_API_BASE): what
 * Stripe is sent, retries with the same idempotency key, the sandbox for
 * _dev_ keys, and a webhook that comes before the gateway's answer. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "support.h"

static const char *const WAIT[] = {"Prefer: wait=30", NULL};

/* The fake's log of API requests. */
static json_t *stripe_requests(void)
{
    char *out = ts_sh(NULL, "curl -fsS %s/_requests", ts_env("STRIPE_API_BASE"));
    json_t *list = json_loads(out, 0, NULL);
    free(out);
    cr_assert(json_is_array(list), "the fake Stripe API answers /_requests");
    return list;
}

/* The requests whose form has name = value. */
static json_t *requests_with(const char *name, const char *value)
{
    json_t *all = stripe_requests(), *found = json_array(), *r;
    size_t i;
    json_array_foreach(all, i, r) {
        const char *v = json_string_value(json_object_get(json_object_get(r, "form"), name));
        if (v && strcmp(v, value) == 0)
            json_array_append(found, r);
    }
    json_decref(all);
    return found;
}

static char *make_order_and_payment(const char *user, char **payment)
{
    ts_http_t r = ts_api("POST", "/api/v1/orders", user, WAIT,
                         "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"sku_kettle\","
                         "\"quantity\":1,\"unit_price\":\"45.00\"}]}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *order = ts_json(r.body, "id");
    ts_http_free(&r);
    char body[200];
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"45.00\",\"currency\":\"usd\"}",
             order);
    r = ts_api("POST", "/api/v1/payments", user, WAIT, body);
    cr_assert_eq(r.status, 201, "%s", r.body);
    *payment = ts_json(r.body, "id");
    char *gateway = ts_json(r.body, "gateway");
    cr_assert_str_eq(gateway, "stripe", "with a Stripe key, a user's payment goes to Stripe");
    free(gateway);
    ts_http_free(&r);
    return order;
}

static const char *form_of(json_t *request, const char *name)
{
    return json_string_value(json_object_get(json_object_get(request, "form"), name));
}

Test(stripe, a_charge_sends_the_fields_and_the_command_id_as_idempotency_key)
{
    char user[64], path[160];
    ts_unique(user, sizeof(user), "buyer_");
    char *payment, *order = make_order_and_payment(user, &payment);
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    ts_http_t r = ts_api("POST", path, user, NULL, "{\"payment_method\":\"pm_card_visa\"}");
    cr_assert_eq(r.status, 202, "%s", r.body);
    char *command = ts_json(r.body, "command_id");
    ts_http_free(&r);
    cr_assert(ts_wait_sql("completed", "SELECT status FROM payments WHERE id = $1", payment, NULL));

    json_t *sent = requests_with("metadata[payment_id]", payment);
    cr_assert_eq(json_array_size(sent), 1);
    json_t *req = json_array_get(sent, 0);
    cr_assert_str_eq(json_string_value(json_object_get(req, "path")), "/v1/payment_intents");
    cr_assert_str_eq(json_string_value(json_object_get(req, "idempotency_key")), command);
    cr_assert_str_eq(form_of(req, "amount"), "4500");
    cr_assert_str_eq(form_of(req, "currency"), "usd", "Stripe's currencies are lowercase");
    cr_assert_str_eq(form_of(req, "payment_method"), "pm_card_visa");
    cr_assert_str_eq(form_of(req, "confirm"), "true");
    cr_assert_str_eq(form_of(req, "metadata[order_id]"), order);

    char *pi = ts_sql("SELECT gateway_payment_id FROM payments WHERE id = $1", payment, NULL);
    cr_assert(pi && strncmp(pi, "pi_fake_", 8) == 0, "the payment knows its intent: %s", pi);
    char *ledger = ts_sql("SELECT gateway_transaction_id FROM transactions WHERE payment_id = $1",
                          payment, NULL);
    cr_assert(ledger && strncmp(ledger, "ch_fake_", 8) == 0, "the charge is Stripe's: %s", ledger);

    /* A refund names the intent and its own command. */
    snprintf(path, sizeof(path), "/api/v1/payments/%s/refund", payment);
    r = ts_api("POST", path, user, WAIT, "{\"amount\":\"5.00\",\"reason\":\"duplicate\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *refund_id = ts_json(r.body, "refund.id");
    cr_assert(refund_id && strncmp(refund_id, "re_fake_", 8) == 0, "%s", r.body);
    ts_http_free(&r);
    json_decref(sent);
    sent = requests_with("payment_intent", pi);
    cr_assert_eq(json_array_size(sent), 1);
    req = json_array_get(sent, 0);
    cr_assert_str_eq(json_string_value(json_object_get(req, "path")), "/v1/refunds");
    cr_assert_str_eq(form_of(req, "amount"), "500");
    cr_assert_str_eq(form_of(req, "reason"), "duplicate");
    json_decref(sent);

    /* A reason in the shop's own words is not one Stripe takes: the refund
     * goes without one, and the words stay with paystream. */
    r = ts_api("POST", path, user, WAIT, "{\"amount\":\"1.00\",\"reason\":\"Product defect\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    sent = requests_with("amount", "100");
    int refunds = 0;
    size_t i;
    json_array_foreach(sent, i, req) {
        if (strcmp(json_string_value(json_object_get(req, "path")), "/v1/refunds") != 0 ||
            strcmp(form_of(req, "payment_intent"), pi) != 0)
            continue;
        refunds++;
        cr_assert_null(form_of(req, "reason"), "no reason of Stripe's");
        char *form = json_dumps(json_object_get(req, "form"), 0);
        cr_assert_null(strstr(form, "Product defect"), "%s", form);
        free(form);
    }
    cr_assert_eq(refunds, 1);
    json_decref(sent);
    char *kept = ts_sql("SELECT description FROM refunds WHERE payment_id = $1 AND amount_minor = 100",
                        payment, NULL);
    cr_assert_str_eq(kept, "Product defect");
    free(kept);
    free(order), free(payment), free(command), free(pi), free(ledger), free(refund_id);
}

Test(stripe, an_unknown_outcome_is_asked_again_with_the_same_key_and_charges_once)
{
    char user[64], path[160];
    ts_unique(user, sizeof(user), "buyer_");
    char *payment, *order = make_order_and_payment(user, &payment);
    free(ts_sh(NULL, "curl -fsS -X POST '%s/_fail?count=2&status=500'", ts_env("STRIPE_API_BASE")));
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    ts_http_t r = ts_api("POST", path, user, WAIT, "{\"payment_method\":\"pm_card_visa\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *status = ts_json(r.body, "status");
    cr_assert_str_eq(status, "completed");
    ts_http_free(&r);

    json_t *sent = requests_with("metadata[payment_id]", payment), *req;
    cr_assert_eq(json_array_size(sent), 3, "two 500s, then the answer");
    const char *key = json_string_value(json_object_get(json_array_get(sent, 0), "idempotency_key"));
    size_t i;
    json_array_foreach(sent, i, req) {
        cr_assert_str_eq(json_string_value(json_object_get(req, "idempotency_key")), key,
                         "every attempt carries the same key");
    }
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(sent, 2), "status")), 200);
    char *charges = ts_sql("SELECT count(*) FROM transactions WHERE payment_id = $1", payment, NULL);
    cr_assert_str_eq(charges, "1");
    json_decref(sent);
    free(order), free(payment), free(status), free(charges);
}

Test(stripe, a_decline_fails_the_payment_and_a_bad_method_changes_nothing)
{
    char user[64], path[160];
    ts_unique(user, sizeof(user), "buyer_");
    char *payment, *order = make_order_and_payment(user, &payment);
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    ts_http_t r = ts_api("POST", path, user, WAIT, "{\"payment_method\":\"pm_card_chargeDeclined\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *status = ts_json(r.body, "status"), *code = ts_json(r.body, "failure_code");
    cr_assert_str_eq(status, "failed");
    cr_assert_str_eq(code, "generic_decline");
    ts_http_free(&r);
    free(status), free(code);

    r = ts_api("POST", path, user, WAIT, "{\"payment_method\":\"pm_nonsense\"}");
    cr_assert_eq(r.status, 400, "%s", r.body);
    code = ts_json(r.body, "error.code");
    cr_assert_str_eq(code, "resource_missing");
    ts_http_free(&r);
    status = ts_sql("SELECT status FROM payments WHERE id = $1", payment, NULL);
    cr_assert_str_eq(status, "failed", "as it was before the refused request");
    free(order), free(payment), free(status), free(code);
}

Test(stripe, a_sandbox_key_never_reaches_stripe)
{
    char user[64];
    ts_unique(user, sizeof(user), "tester_");
    char *key = ts_api_key(user, "--sandbox");
    char auth[160], body[200], path[160];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    const char *headers[] = {auth, "Prefer: wait=30", NULL};
    const char *order_body = "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"x\",\"quantity\":1,"
                             "\"unit_price\":\"3.00\"}]}";
    ts_http_t r = ts_http("POST", "/api/v1/orders", headers, order_body, strlen(order_body));
    char *order = ts_json(r.body, "id");
    ts_http_free(&r);
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"3.00\",\"currency\":\"usd\"}", order);
    r = ts_http("POST", "/api/v1/payments", headers, body, strlen(body));
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *payment = ts_json(r.body, "id"), *gateway = ts_json(r.body, "gateway");
    cr_assert_str_eq(gateway, "sandbox");
    ts_http_free(&r);
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    const char *pm = "{\"payment_method\":\"pm_card_visa\"}";
    r = ts_http("POST", path, headers, pm, strlen(pm));
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    json_t *sent = requests_with("metadata[payment_id]", payment);
    cr_assert_eq(json_array_size(sent), 0, "nothing of a sandbox payment went to Stripe");
    json_decref(sent);
    free(key), free(order), free(payment), free(gateway);
}

Test(stripe, a_webhook_before_the_answer_is_applied_to_the_payment_it_names)
{
    char user[64], evt[64], pi[64], obj[512];
    ts_unique(user, sizeof(user), "buyer_");
    char *payment, *order = make_order_and_payment(user, &payment);
    /* Stripe's event for the payment's intent, before paystream has recorded
     * which intent that is: metadata.payment_id names the payment. */
    ts_unique(evt, sizeof(evt), "evt_early_");
    ts_unique(pi, sizeof(pi), "pi_early_");
    snprintf(obj, sizeof(obj),
             "{\"id\":\"%s\",\"object\":\"payment_intent\",\"amount\":4500,\"amount_received\":4500,"
             "\"currency\":\"usd\",\"status\":\"succeeded\",\"latest_charge\":\"ch_%s\","
             "\"metadata\":{\"payment_id\":\"%s\",\"order_id\":\"%s\"}}", pi, pi + 3, payment, order);
    char *event = ts_event(evt, "payment_intent.succeeded", time(NULL), obj);
    ts_http_t r = ts_post_signed("/webhooks/stripe", event, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", evt, NULL));
    char *adopted = ts_sql("SELECT status || ':' || gateway_payment_id FROM payments WHERE id = $1",
                           payment, NULL);
    char expect[96];
    snprintf(expect, sizeof(expect), "completed:%s", pi);
    cr_assert_str_eq(adopted, expect);
    char *n = ts_sql("SELECT count(*) FROM payments WHERE gateway_payment_id = $1", pi, NULL);
    cr_assert_str_eq(n, "1", "no second payment for the intent");
    char *st = ts_sql("SELECT status FROM orders WHERE id = $1", order, NULL);
    cr_assert_str_eq(st, "paid");
    free(order), free(payment), free(event), free(adopted), free(n), free(st);
}
