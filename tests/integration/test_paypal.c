/* PayPal, as the order service offered it: the paypal gateway against the
 * fake PayPal API (tests/fake_paypal) — an order paid by the buyer's
 * approval, captured once however the capture is retried, refunded with
 * the caller's words — and PayPal's webhooks, signed with certificates of
 * the run's own CA (scripts/dev), verified by the intake and applied once
 * by the payments worker. Forged signatures, certificates and events are
 * refused, and a signed event changes only the payment it is about. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "paystream/paypal_sig.h"
#include "support.h"

static const char *const WAIT[] = {"Prefer: wait=30", NULL};

/* The fake PayPal's requests to paths starting with prefix. */
static json_t *paypal_requests(const char *prefix)
{
    char *out = ts_sh(NULL, "curl -fsS %s/_requests", ts_env("PAYPAL_API_BASE"));
    json_t *all = json_loads(out, 0, NULL), *some = json_array(), *req;
    size_t i;
    cr_assert_not_null(all, "%s", out);
    json_array_foreach(all, i, req) {
        const char *path = json_string_value(json_object_get(req, "path"));
        if (path && strncmp(path, prefix, strlen(prefix)) == 0)
            json_array_append(some, req);
    }
    json_decref(all);
    free(out);
    return some;
}

static void paypal_control(const char *what)
{
    int status;
    free(ts_sh(&status, "curl -fsS -X POST '%s/%s'", ts_env("PAYPAL_API_BASE"), what));
    cr_assert_eq(status, 0, "fake PayPal %s", what);
}

/* An order of two 29.99 USD items and a PayPal payment for it, as the
 * order service's clients make them; returns the payment's id. */
static char *paypal_payment(const char *user)
{
    char *order = ts_call(user, "POST", "/api/v1/orders",
                          "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"sku_pp\","
                          "\"quantity\":2,\"unit_price\":29.99}]}",
                          201, "id");
    char body[256];
    snprintf(body, sizeof(body),
             "{\"order_id\":\"%s\",\"amount\":59.98,\"currency\":\"USD\",\"payment_method\":\"paypal\"}",
             order);
    ts_http_t r = ts_api("POST", "/api/v1/payments", user, WAIT, body);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *gateway = ts_json(r.body, "gateway"), *id = ts_json(r.body, "id");
    cr_assert_str_eq(gateway, "paypal");
    free(gateway);
    ts_http_free(&r);
    free(order);
    return id;
}

/* Processes payment (no payment method: the buyer approves at PayPal);
 * returns the answer. */
static ts_http_t process(const char *user, const char *payment)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    return ts_api("POST", path, user, WAIT, "{}");
}

/* Signs signed (NULL: body) as PayPal does (paypal_sig.h) with the
 * certificate and key named signer in the run's certificates, for
 * webhook_id; posts body with cert_url (NULL: the signer's on the fake
 * PayPal). */
static ts_http_t post_signed_for(const char *body, const char *signed_body, const char *signer,
                                 const char *webhook_id, const char *cert_url)
{
    char path[512], tid[64], when[32], msg[512], url[512];
    snprintf(path, sizeof(path), "%s/%s.key", ts_env("PAYSTREAM_PAYPAL_CERTS"), signer);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_not_null(key);
    ts_unique(tid, sizeof(tid), "tx-");
    time_t now = time(NULL);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    snprintf(msg, sizeof(msg), "%s|%s|%s|%u", tid, when, webhook_id,
             (unsigned)ps_crc32((const unsigned char *)(signed_body ? signed_body : body),
                                strlen(signed_body ? signed_body : body)));
    unsigned char sig[512];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    cr_assert(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
              EVP_DigestSign(md, sig, &siglen, (const unsigned char *)msg, strlen(msg)) == 1);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    char b64[800], h_tid[128], h_time[64], h_sig[900], h_url[600];
    EVP_EncodeBlock((unsigned char *)b64, sig, (int)siglen);
    snprintf(url, sizeof(url), "%s/v1/notifications/certs/%s", ts_env("PAYPAL_API_BASE"), signer);
    snprintf(h_tid, sizeof(h_tid), "PAYPAL-TRANSMISSION-ID: %s", tid);
    snprintf(h_time, sizeof(h_time), "PAYPAL-TRANSMISSION-TIME: %s", when);
    snprintf(h_sig, sizeof(h_sig), "PAYPAL-TRANSMISSION-SIG: %s", b64);
    snprintf(h_url, sizeof(h_url), "PAYPAL-CERT-URL: %s", cert_url ? cert_url : url);
    const char *headers[] = {h_tid, h_time, h_sig, h_url, "PAYPAL-AUTH-ALGO: SHA256withRSA",
                             "Content-Type: application/json", NULL};
    return ts_http("POST", "/webhooks/paypal", headers, body, strlen(body));
}

static ts_http_t post_paypal(const char *body, const char *signer, const char *webhook_id,
                             const char *cert_url)
{
    return post_signed_for(body, NULL, signer, webhook_id, cert_url);
}

/* A PayPal event of type about resource (JSON), created seconds_ago ago. */
static char *paypal_event(const char *id, const char *type, int seconds_ago, const char *resource)
{
    char when[32], *out = NULL;
    time_t t = time(NULL) - seconds_ago;
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    cr_assert(asprintf(&out,
                       "{\"id\":\"%s\",\"event_version\":\"1.0\",\"create_time\":\"%s\","
                       "\"resource_type\":\"capture\",\"event_type\":\"%s\",\"summary\":\"x\","
                       "\"resource\":%s}",
                       id, when, type, resource) > 0);
    return out;
}

/* A capture resource of order for value USD. */
static char *capture_resource(const char *capture, const char *order, const char *status,
                              const char *value)
{
    char *out = NULL;
    cr_assert(asprintf(&out,
                       "{\"id\":\"%s\",\"status\":\"%s\",\"amount\":{\"currency_code\":\"USD\","
                       "\"value\":\"%s\"},\"final_capture\":true,\"supplementary_data\":"
                       "{\"related_ids\":{\"order_id\":\"%s\"}}}",
                       capture, status, value, order) > 0);
    return out;
}

Test(paypal, an_order_is_approved_by_the_buyer_captured_once_and_refunded)
{
    char user[64];
    ts_unique(user, sizeof(user), "pp_");
    char *payment = paypal_payment(user);

    /* The first process makes the PayPal order: the payment waits for the
     * buyer, with the approval link. */
    ts_http_t r = process(user, payment);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *status = ts_json(r.body, "status"), *action = ts_json(r.body, "next_action.url");
    char *order = ts_json(r.body, "gateway_payment_id");
    cr_assert_str_eq(status, "pending");
    cr_assert(action && strstr(action, "checkoutnow?token=") && strstr(action, order),
              "the buyer's approval link: %s", r.body);
    ts_http_free(&r);
    json_t *made = paypal_requests("/v2/checkout/orders");
    cr_assert_eq(json_array_size(made), 1);
    json_t *body = json_object_get(json_array_get(made, 0), "body");
    json_t *unit = json_array_get(json_object_get(body, "purchase_units"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(unit, "amount"), "value")),
                     "59.98", "the amount, exactly");
    cr_assert_str_eq(
        json_string_value(json_object_get(json_object_get(unit, "amount"), "currency_code")), "USD");
    cr_assert_str_eq(json_string_value(json_object_get(unit, "custom_id")), payment);
    const char *rid = json_string_value(json_object_get(json_array_get(made, 0), "request_id"));
    cr_assert(rid && strncmp(rid, "cmd_", 4) == 0, "PayPal-Request-Id is the command: %s", rid);
    json_decref(made);

    /* Processed again before the buyer approved: still waiting, same link. */
    r = process(user, payment);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *again = ts_json(r.body, "next_action.url"), *still = ts_json(r.body, "status");
    cr_assert_str_eq(still, "pending");
    cr_assert_str_eq(again, action);
    free(again), free(still);
    ts_http_free(&r);

    /* The buyer approves and comes back; the capture's first answer is lost
     * (a 500), so the worker asks again with the same PayPal-Request-Id. */
    char q[128];
    snprintf(q, sizeof(q), "_approve?order=%s", order);
    paypal_control(q);
    paypal_control("_fail?count=1&status=500");
    r = process(user, payment);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *done = ts_json(r.body, "status"), *captured = ts_json(r.body, "captured_minor");
    cr_assert_str_eq(done, "completed");
    cr_assert_str_eq(captured, "5998");
    free(done), free(captured);
    ts_http_free(&r);
    char path[160];
    snprintf(path, sizeof(path), "/v2/checkout/orders/%s/capture", order);
    json_t *caps = paypal_requests(path);
    size_t i, asked = 0;
    json_t *c;
    const char *first_id = NULL;
    json_array_foreach(caps, i, c) {
        long st = (long)json_integer_value(json_object_get(c, "status"));
        if (st == 201 || st == 500) {
            const char *id = json_string_value(json_object_get(c, "request_id"));
            if (first_id == NULL)
                first_id = id;
            cr_assert_str_eq(id, first_id, "the retry repeats the PayPal-Request-Id");
            asked++;
        }
    }
    cr_assert_eq(asked, 2, "a lost answer, then the same capture again");
    json_decref(caps);
    char *ledger = ts_sql("SELECT count(*) || ' ' || sum(amount_minor) || ' ' || "
                          "bool_and(gateway_transaction_id LIKE 'CAP-%') FROM transactions "
                          "WHERE payment_id = $1 AND type = 'charge'", payment, NULL);
    cr_assert_str_eq(ledger, "1 5998 true", "one charge, the capture");
    free(ledger);
    char *order_status = ts_sql("SELECT o.status FROM orders o JOIN payments p ON p.order_id = o.id "
                                "WHERE p.id = $1", payment, NULL);
    cr_assert_str_eq(order_status, "paid");
    free(order_status);

    /* A refund in the caller's words, after the access token expired: a new
     * token, and PayPal gets the words as the note to the payer. */
    paypal_control("_expire_tokens");
    snprintf(path, sizeof(path), "/api/v1/payments/%s/refund", payment);
    r = ts_api("POST", path, user, WAIT, "{\"amount\": 10.00, \"reason\": \"Product defect\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *refunded = ts_json(r.body, "refunded_minor"), *rs = ts_json(r.body, "refund.status");
    cr_assert_str_eq(refunded, "1000");
    cr_assert_str_eq(rs, "succeeded");
    free(refunded), free(rs);
    ts_http_free(&r);
    json_t *refunds = paypal_requests("/v2/payments/captures/");
    json_t *last = json_array_get(refunds, json_array_size(refunds) - 1);
    json_t *rb = json_object_get(last, "body");
    cr_assert_eq(json_integer_value(json_object_get(last, "status")), 201);
    cr_assert_str_eq(json_string_value(json_object_get(rb, "note_to_payer")), "Product defect");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rb, "amount"), "value")),
                     "10.00");
    json_decref(refunds);
    json_t *tokens = paypal_requests("/v1/oauth2/token");
    cr_assert_geq(json_array_size(tokens), 2, "a token asked again after PayPal's 401");
    json_decref(tokens);
    char *back = ts_sql("SELECT sum(amount_minor) FROM transactions WHERE payment_id = $1 "
                        "AND type = 'refund'", payment, NULL);
    cr_assert_str_eq(back, "1000");
    free(back);
    free(status), free(action), free(order), free(payment);
}

Test(paypal, a_sandbox_key_cannot_pay_with_paypal_and_bad_methods_are_named)
{
    char user[64], body[256];
    ts_unique(user, sizeof(user), "pp_");
    char *key = ts_api_key(user, "--sandbox");
    char *order = ts_call(user, "POST", "/api/v1/orders",
                          "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"sku_pp\","
                          "\"quantity\":1,\"unit_price\":\"5.00\"}]}",
                          201, "id");
    snprintf(body, sizeof(body),
             "{\"order_id\":\"%s\",\"amount\":\"5.00\",\"currency\":\"usd\",\"payment_method\":\"bitcoin\"}",
             order);
    ts_expect(ts_api("POST", "/api/v1/payments", user, WAIT, body), 400, "parameter_invalid");
    /* A sandbox key pays nothing real, on PayPal neither. */
    char auth[256];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    snprintf(body, sizeof(body),
             "{\"order_id\":\"%s\",\"amount\":\"5.00\",\"currency\":\"usd\",\"payment_method\":\"paypal\"}",
             order);
    const char *headers[] = {auth, "Prefer: wait=30", "Content-Type: application/json", NULL};
    ts_expect(ts_http("POST", "/api/v1/payments", headers, body, strlen(body)), 409,
                  "gateway_unavailable");
    /* A card's method on a PayPal payment is named as wrong. */
    char *payment = paypal_payment(user);
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    ts_expect(ts_api("POST", path, user, WAIT, "{\"payment_method\":\"pm_card_visa\"}"), 400,
                  "parameter_invalid");
    free(key), free(order), free(payment);
}

Test(paypal, webhooks_are_verified_and_each_event_applies_once)
{
    char user[64], evt[64], cap[64];
    ts_unique(user, sizeof(user), "pp_");
    char *payment = paypal_payment(user);
    ts_http_t r = process(user, payment);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *order = ts_json(r.body, "gateway_payment_id");
    ts_http_free(&r);

    /* Forgeries: each 400, and nothing reaches the worker. */
    ts_unique(cap, sizeof(cap), "CAP-FORGED-");
    ts_unique(evt, sizeof(evt), "WH-FORGED-");
    char *res = capture_resource(cap, order, "COMPLETED", "59.98");
    char *event = paypal_event(evt, "PAYMENT.CAPTURE.COMPLETED", 5, res);
    ts_expect(post_paypal(event, "forged", "WH-PAYSTREAM-TEST", NULL), 400, "cert_untrusted");
    ts_expect(post_paypal(event, "other", "WH-PAYSTREAM-TEST", NULL), 400, "cert_untrusted");
    ts_expect(post_paypal(event, "signer", "WH-SOMEONE-ELSE", NULL), 400, "signature_mismatch");
    ts_expect(post_paypal(event, "signer", "WH-PAYSTREAM-TEST",
                              "https://evil.example/v1/notifications/certs/signer"),
                  400, "cert_url_untrusted");
    {
        const char *headers[] = {"Content-Type: application/json", NULL};
        ts_expect(ts_http("POST", "/webhooks/paypal", headers, event, strlen(event)), 400,
                      "signature_missing");
    }
    /* Signed for one body, sent with another. */
    char *tampered = strdup(event);
    memcpy(strstr(tampered, "59.98"), "00.01", 5);
    ts_expect(post_signed_for(tampered, event, "signer", "WH-PAYSTREAM-TEST", NULL), 400,
                  "signature_mismatch");
    free(tampered);
    /* Genuine, but of another amount than the payment's: refused by the worker. */
    free(event), free(res);
    res = capture_resource(cap, order, "COMPLETED", "0.01");
    event = paypal_event(evt, "PAYMENT.CAPTURE.COMPLETED", 5, res);
    ts_expect(post_paypal(event, "signer", "WH-PAYSTREAM-TEST", NULL), 200, NULL);
    cr_assert(ts_wait_sql("amount_mismatch", "SELECT outcome FROM paypal_events WHERE id = $1",
                          evt, NULL));
    char *pending = ts_sql("SELECT status || ' ' || captured_minor FROM payments WHERE id = $1",
                           payment, NULL);
    cr_assert_str_eq(pending, "pending 0");
    free(pending);
    free(event), free(res);

    /* The genuine capture event, then PayPal's redelivery of it. */
    ts_unique(cap, sizeof(cap), "CAP-");
    ts_unique(evt, sizeof(evt), "WH-");
    res = capture_resource(cap, order, "COMPLETED", "59.98");
    event = paypal_event(evt, "PAYMENT.CAPTURE.COMPLETED", 4, res);
    ts_expect(post_paypal(event, "signer", "WH-PAYSTREAM-TEST", NULL), 200, NULL);
    ts_expect(post_paypal(event, "signer", "WH-PAYSTREAM-TEST", NULL), 200, NULL);
    cr_assert(ts_wait_sql("completed", "SELECT status FROM payments WHERE id = $1", payment, NULL));
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM paypal_events WHERE id = $1", evt, NULL));
    char *charges = ts_sql("SELECT count(*) || ' ' || sum(amount_minor) FROM transactions "
                           "WHERE payment_id = $1 AND type = 'charge'", payment, NULL);
    cr_assert_str_eq(charges, "1 5998", "one capture, applied once");
    free(charges), free(event), free(res);

    /* A capture's denial older than what was applied changes nothing. */
    ts_unique(evt, sizeof(evt), "WH-");
    res = capture_resource(cap, order, "DECLINED", "59.98");
    event = paypal_event(evt, "PAYMENT.CAPTURE.DENIED", 60, res);
    ts_expect(post_paypal(event, "signer", "WH-PAYSTREAM-TEST", NULL), 200, NULL);
    cr_assert(ts_wait_sql("stale", "SELECT outcome FROM paypal_events WHERE id = $1", evt, NULL));
    char *st = ts_sql("SELECT status FROM payments WHERE id = $1", payment, NULL);
    cr_assert_str_eq(st, "completed");
    free(st), free(event), free(res);

    /* A refund PayPal reports: recorded once, in the ledger. */
    char refund_res[512], ref[64];
    ts_unique(ref, sizeof(ref), "REF-");
    ts_unique(evt, sizeof(evt), "WH-");
    snprintf(refund_res, sizeof(refund_res),
             "{\"id\":\"%s\",\"status\":\"COMPLETED\",\"amount\":{\"currency_code\":\"USD\","
             "\"value\":\"5.00\"},\"links\":[{\"rel\":\"self\",\"href\":\"https://api.paypal.com/v2/"
             "payments/refunds/%s\"},{\"rel\":\"up\",\"href\":\"https://api.paypal.com/v2/payments/"
             "captures/%s\"}]}",
             ref, ref, cap);
    event = paypal_event(evt, "PAYMENT.CAPTURE.REFUNDED", 0, refund_res);
    ts_expect(post_paypal(event, "signer", "WH-PAYSTREAM-TEST", NULL), 200, NULL);
    ts_expect(post_paypal(event, "signer", "WH-PAYSTREAM-TEST", NULL), 200, NULL);
    cr_assert(ts_wait_sql("500", "SELECT refunded_minor FROM payments WHERE id = $1", payment, NULL));
    char *refs = ts_sql("SELECT count(*) FROM transactions WHERE payment_id = $1 AND type = 'refund'",
                        payment, NULL);
    cr_assert_str_eq(refs, "1");
    free(refs), free(event);

    /* Signed, but not PayPal's event, or about nothing paystream made. */
    ts_expect(post_paypal("{\"id\":\"WH-1\"}", "signer", "WH-PAYSTREAM-TEST", NULL), 400,
                  "not_a_paypal_event");
    ts_unique(evt, sizeof(evt), "WH-");
    res = capture_resource("CAP-NOBODY", "O-NOBODY", "COMPLETED", "1000.00");
    event = paypal_event(evt, "PAYMENT.CAPTURE.COMPLETED", 0, res);
    ts_expect(post_paypal(event, "signer", "WH-PAYSTREAM-TEST", NULL), 200, NULL);
    cr_assert(ts_wait_sql("unknown_payment", "SELECT outcome FROM paypal_events WHERE id = $1", evt,
                          NULL));
    char *made = ts_sql("SELECT count(*) FROM payments WHERE gateway_payment_id = 'O-NOBODY'", NULL);
    cr_assert_str_eq(made, "0", "a webhook never makes a payment");
    free(made), free(event), free(res);
    free(order), free(payment);
}

/* The certificate URL comes with the request and is fetched before the
 * signature can be checked: unsigned requests naming new URLs get a 503
 * without a fetch once a few were fetched, instead of holding the HTTP
 * threads on PayPal. */
Test(paypal, unsigned_requests_cannot_make_the_intake_fetch_certificates_without_end)
{
    char url[256], evt[64];
    ts_unique(evt, sizeof(evt), "WH-FLOOD-");
    char *event = paypal_event(evt, "PAYMENT.CAPTURE.COMPLETED", 0, "{\"id\":\"CAP-FLOOD\"}");
    json_t *before = paypal_requests("/v1/notifications/certs/flood");
    cr_assert_eq(json_array_size(before), 0);
    json_decref(before);
    int unavailable = 0;
    for (int i = 0; i < 12; i++) {
        char name[64];
        ts_unique(name, sizeof(name), "flood-");
        snprintf(url, sizeof(url), "%s/v1/notifications/certs/%s", ts_env("PAYPAL_API_BASE"), name);
        ts_http_t r = post_paypal(event, "signer", "WH-PAYSTREAM-TEST", url);
        unavailable += r.status == 503;
        ts_http_free(&r);
    }
    cr_assert_eq(unavailable, 12, "no such certificate, or not fetched: a 503 to retry");
    json_t *fetched = paypal_requests("/v1/notifications/certs/flood");
    cr_assert_leq(json_array_size(fetched), 8, "a burst of 5 and about one a second, not 12");
    cr_assert_geq(json_array_size(fetched), 1);
    json_decref(fetched);
    free(event);
    /* The intake's bucket refills (a fetch a second) for the tests after. */
    struct timespec refill = {6, 0};
    nanosleep(&refill, NULL);
}
