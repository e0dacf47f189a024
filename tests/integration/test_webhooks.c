/* The intake's webhook endpoints and probes, through HTTP. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "support.h"

static char *pi_event(const char *evt, const char *pi, const char *type)
{
    char obj[256];
    snprintf(obj, sizeof(obj),
             "{\"id\":\"%s\",\"object\":\"payment_intent\",\"amount\":1000,\"currency\":\"usd\"}", pi);
    return ts_event(evt, type, time(NULL), obj);
}

static void assert_error(ts_http_t *r, long status, const char *code)
{
    cr_assert_eq(r->status, status, "expected %ld, got %ld: %s", status, r->status, r->body);
    char needle[128];
    snprintf(needle, sizeof(needle), "\"code\":\"%s\"", code);
    cr_assert(strstr(r->body, needle), "expected error code %s in %s", code, r->body);
    cr_assert(strstr(r->body, "\"message\":"), "errors carry a message: %s", r->body);
}

Test(webhooks, valid_event_is_acknowledged_with_its_message_id)
{
    char evt[64], pi[64];
    ts_unique(evt, sizeof(evt), "evt_ok_");
    ts_unique(pi, sizeof(pi), "pi_ok_");
    char *body = pi_event(evt, pi, "payment_intent.created");
    ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"message_id\":\""), "%s", r.body);
    ts_http_free(&r);
    free(body);
}

/* What stripe_events stores is the document Stripe sent, indented as
 * Stripe sends it, escapes, nesting and a key given twice (the last wins)
 * included: the payments worker hands the payload to PostgreSQL apart from
 * the facts it read, as a binary text[] (worker.c). */
Test(webhooks, an_event_is_stored_as_the_document_sent, .timeout = 60)
{
    char evt[64], pi[64], *body = NULL;
    ts_unique(evt, sizeof(evt), "evt_doc_");
    ts_unique(pi, sizeof(pi), "pi_doc_");
    cr_assert(asprintf(&body,
                       "{\n  \"id\": \"%s\",\n  \"object\": \"event\",\n"
                       "  \"api_version\": \"2024-06-20\",\n  \"created\": %lld,\n"
                       "  \"data\": {\n    \"object\": {\n      \"id\": \"%s\",\n"
                       "      \"object\": \"payment_intent\",\n      \"amount\": 1999,\n"
                       "      \"currency\": \"usd\",\n"
                       "      \"description\": \"Caf\\u00e9 \\\"Z\\\" \\\\\",\n"
                       "      \"metadata\": {\"zz\": \"1\", \"a\": [ {\"y\": null, \"x\": true} ], "
                       "\"zz\": \"2\"},\n"
                       "      \"status\": \"requires_payment_method\"\n    }\n  },\n"
                       "  \"livemode\": false,\n  \"pending_webhooks\": 1,\n"
                       "  \"request\": {\n    \"id\": null,\n    \"idempotency_key\": null\n  },\n"
                       "  \"type\": \"payment_intent.created\"\n}\n",
                       evt, (long long)time(NULL), pi) > 0);
    ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    int same = ts_wait_sql("t", "SELECT payload = $1::jsonb FROM stripe_events WHERE id = $2",
                           body, evt, NULL);
    char *stored = ts_sql("SELECT payload::text FROM stripe_events WHERE id = $1", evt, NULL);
    cr_assert(same, "stored: %s", stored ? stored : "nothing");
    char *zz = ts_sql("SELECT payload->'data'->'object'->'metadata'->>'zz' FROM stripe_events "
                      "WHERE id = $1", evt, NULL);
    cr_assert_str_eq(zz, "2");
    free(zz);
    free(stored);
    ts_http_free(&r);
    free(body);
}

Test(webhooks, bad_signature_is_400_and_nothing_is_published)
{
    char bad[64], marker[64], pi[64];
    ts_unique(bad, sizeof(bad), "evt_bad_");
    ts_unique(marker, sizeof(marker), "evt_marker_");
    ts_unique(pi, sizeof(pi), "pi_badsig_");
    char *body = pi_event(bad, pi, "payment_intent.succeeded");
    ts_http_t r = ts_post_signed("/webhooks/stripe", body, "whsec_not_the_secret", 0);
    assert_error(&r, 400, "signature_mismatch");
    ts_http_free(&r);

    /* A good event for the same payment goes to the same partition after
     * where the bad one would be: once it is applied, the bad one would be
     * too, had it been published. */
    char *good = pi_event(marker, pi, "payment_intent.created");
    r = ts_post_signed("/webhooks/stripe", good, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", marker, NULL));
    char *n = ts_sql("SELECT count(*) FROM stripe_events WHERE id = $1", bad, NULL);
    cr_assert_str_eq(n, "0", "an event with a bad signature was published");
    free(n);
    free(body);
    free(good);
}

Test(webhooks, signature_failures_are_named)
{
    char evt[64];
    ts_unique(evt, sizeof(evt), "evt_sig_");
    char *body = pi_event(evt, "pi_sig", "payment_intent.created");
    const char *secret = ts_env("STRIPE_WEBHOOK_SECRET");

    ts_http_t r = ts_post_signed("/webhooks/stripe", body, secret, time(NULL) - 301);
    assert_error(&r, 400, "timestamp_too_old");
    ts_http_free(&r);
    r = ts_post_signed("/webhooks/stripe", body, secret, time(NULL) + 301);
    assert_error(&r, 400, "timestamp_in_future");
    ts_http_free(&r);
    r = ts_http("POST", "/webhooks/stripe", NULL, body, strlen(body));
    assert_error(&r, 400, "missing_signature");
    ts_http_free(&r);
    const char *garbled[] = {"Stripe-Signature: t=abc,v2=zz", NULL};
    r = ts_http("POST", "/webhooks/stripe", garbled, body, strlen(body));
    assert_error(&r, 400, "malformed_signature");
    ts_http_free(&r);
    free(body);
}

Test(webhooks, malformed_json_is_400)
{
    ts_http_t r = ts_post_signed("/webhooks/stripe", "{\"id\": \"evt_1\",", ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    assert_error(&r, 400, "malformed_json");
    ts_http_free(&r);
}

/* Signed events whose strings PostgreSQL's jsonb could not hold: each is
 * refused as malformed JSON, however well signed: the intake publishes
 * only what its payments worker can store. */
Test(webhooks, a_signed_event_with_a_nul_a_lone_surrogate_or_bad_utf8_is_400)
{
    static const char *const poisons[] = {
        "\"nul \\u0000 inside\"", "\"lone \\ud800 surrogate\"", "\"bad \xc3\x28 utf-8\"",
    };
    for (size_t i = 0; i < sizeof(poisons) / sizeof(poisons[0]); i++) {
        char evt[64], obj[128];
        ts_unique(evt, sizeof(evt), "evt_poison_");
        snprintf(obj, sizeof(obj),
                 "{\"id\":\"cus_p\",\"object\":\"customer\",\"description\":%s}", poisons[i]);
        char *body = ts_event(evt, "customer.created", time(NULL), obj);
        ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
        assert_error(&r, 400, "malformed_json");
        ts_http_free(&r);
        free(body);
    }
}

Test(webhooks, json_that_is_not_a_stripe_event_is_400_naming_the_field)
{
    const char *secret = ts_env("STRIPE_WEBHOOK_SECRET");
    ts_http_t r = ts_post_signed("/webhooks/stripe", "[1,2,3]", secret, 0);
    assert_error(&r, 400, "not_a_stripe_event");
    ts_http_free(&r);
    r = ts_post_signed("/webhooks/stripe",
                       "{\"id\":\"evt_1\",\"object\":\"event\",\"type\":\"x\",\"created\":1}", secret, 0);
    assert_error(&r, 400, "not_a_stripe_event");
    cr_assert(strstr(r.body, "\"param\":\"data.object\""), "%s", r.body);
    ts_http_free(&r);
    r = ts_post_signed("/webhooks/stripe",
                       "{\"id\":\"cus_1\",\"object\":\"event\",\"type\":\"x\",\"created\":1,"
                       "\"data\":{\"object\":{}}}", secret, 0);
    assert_error(&r, 400, "not_a_stripe_event");
    cr_assert(strstr(r.body, "\"param\":\"id\""), "%s", r.body);
    ts_http_free(&r);
}

Test(webhooks, body_over_the_limit_is_413)
{
    size_t len = 1024 * 1024 + 100;
    char *big = malloc(len + 1);
    memset(big, ' ', len);
    big[0] = '{';
    big[len - 1] = '}';
    big[len] = '\0';
    ts_http_t r = ts_post_signed("/webhooks/stripe", big, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    assert_error(&r, 413, "body_too_large");
    ts_http_free(&r);
    free(big);
}

Test(webhooks, connect_endpoint_has_its_own_secret)
{
    char evt[64];
    ts_unique(evt, sizeof(evt), "evt_connect_");
    char *body = ts_event(evt, "account.updated", time(NULL),
                          "{\"id\":\"acct_test\",\"object\":\"account\"}");
    ts_http_t r = ts_post_signed("/webhooks/stripe/connect", body,
                                 ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    assert_error(&r, 400, "signature_mismatch");
    ts_http_free(&r);
    r = ts_post_signed("/webhooks/stripe/connect", body,
                       ts_env("STRIPE_CONNECT_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_CONNECT_WEBHOOK_SECRET"), 0);
    assert_error(&r, 400, "signature_mismatch");
    ts_http_free(&r);
    free(body);
}

Test(webhooks, unknown_paths_and_methods_are_json_errors)
{
    ts_http_t r = ts_http("GET", "/webhooks/stripe", NULL, NULL, 0);
    assert_error(&r, 405, "method_not_allowed");
    ts_http_free(&r);
    r = ts_http("GET", "/nope", NULL, NULL, 0);
    assert_error(&r, 404, "not_found");
    ts_http_free(&r);
}

Test(probes, health_ready_and_metrics)
{
    ts_http_t r = ts_http_admin("/health");
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "\"status\":\"healthy\"") && strstr(r.body, "\"stripe\":true") &&
              strstr(r.body, "\"stripe_webhooks_enabled\":true") && strstr(r.body, "\"version\":\""),
              "%s", r.body);
    cr_assert_null(strstr(r.body, "whsec_"), "health must not show secrets");
    ts_http_free(&r);
    /* The payments worker calls Stripe (the fake one): it says so through
     * PostgreSQL, and the intake's check reads it within a second or two. */
    cr_assert(ts_wait_sql("stripe", "SELECT state->>'gateway' FROM service_state "
                                    "WHERE service = 'payments'", NULL));
    int stated = 0;
    for (int i = 0; i < 50 && !stated; i++) {
        r = ts_http_admin("/health");
        stated = strstr(r.body, "\"stripe_enabled\":true") != NULL;
        ts_http_free(&r);
        if (!stated)
            usleep(100 * 1000);
    }
    cr_assert(stated, "stripe_enabled stays unknown");
    r = ts_http_admin("/ready");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"kafka\":\"ok\"") && strstr(r.body, "\"postgresql\":\"ok\""), "%s", r.body);
    ts_http_free(&r);
    r = ts_post_signed("/webhooks/stripe", "{}", "whsec_wrong", 0);
    ts_http_free(&r);
    r = ts_http_admin("/metrics");
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "paystream_http_requests_total{route=\"/webhooks/stripe\",status=\"400\"}"), "%s", r.body);
    cr_assert(strstr(r.body, "paystream_webhook_verification_failures_total{endpoint=\"stripe\",reason=\"signature_mismatch\"}"), "%s", r.body);
    cr_assert(strstr(r.body, "# TYPE paystream_publish_latency_seconds histogram"), "%s", r.body);
    ts_http_free(&r);
}

Test(webhooks, a_body_posted_to_an_unknown_path_is_404_and_the_server_carries_on)
{
    const char *body = "{\"id\":\"evt_x\"}";
    ts_http_t r = ts_http("POST", "/webhooks/nope", NULL, body, strlen(body));
    assert_error(&r, 404, "not_found");
    ts_http_free(&r);
    r = ts_http_admin("/health");
    cr_assert_eq(r.status, 200);
    ts_http_free(&r);
}

/* The operators' routes are on a listener of their own (PAYSTREAM_ADMIN_PORT),
 * which serves nothing else; the public one serves webhooks and the API only. */
Test(probes, only_the_admin_listener_serves_health_readiness_and_metrics)
{
    static const char *const admin_paths[] = {"/health", "/ready", "/metrics"};
    for (size_t i = 0; i < 3; i++) {
        ts_http_t r = ts_http("GET", admin_paths[i], NULL, NULL, 0);
        assert_error(&r, 404, "not_found");
        ts_http_free(&r);
        r = ts_http_admin(admin_paths[i]);
        cr_assert_eq(r.status, 200, "%s: %s", admin_paths[i], r.body);
        ts_http_free(&r);
    }
    ts_http_t r = ts_http_admin("/api/v1/orders");
    cr_assert_eq(r.status, 404, "no API on the admin listener: %s", r.body);
    ts_http_free(&r);
    r = ts_http_admin("/webhooks/stripe");
    cr_assert_eq(r.status, 404, "no webhooks on the admin listener: %s", r.body);
    ts_http_free(&r);
}
