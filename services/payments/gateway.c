/* The gateways behind the commands that call one: stripe
 * (gateway_stripe.c) when STRIPE_SECRET_KEY is set, paypal
 * (gateway_paypal.c) when PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET are,
 * and the sandbox.
 *
 * sandbox: deterministic and offline, after Stripe's test payment methods.
 * pm_card_visa (and the other plain test cards) succeed,
 * pm_card_chargeDeclined and its kin are declined,
 * pm_card_authenticationRequired needs the customer's action, anything
 * else is an unknown payment method. Refunds succeed; customers and
 * Checkout Sessions are made up (cus_sandbox_..., cs_sandbox_... with a
 * URL under SANDBOX_CHECKOUT_URL, which pays nothing). Its ids derive from
 * the command id, so a repeated call gets the same answer, as Stripe's
 * idempotency keys do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/config.h"
#include "paystream/log.h"
#include "paystream/metrics.h"
#include "paystream/util.h"

#define SANDBOX_CHECKOUT_URL "https://checkout.sandbox.paystream.invalid/pay/"

static int curl_ready, stripe_enabled, paypal_enabled;
static ps_metric_t *calls, *call_seconds;

static const struct {
    const char *method;
    const char *outcome; /* succeeded, failed, requires_action */
    const char *code, *message;
} test_methods[] = {
    {"pm_card_visa", "succeeded", NULL, NULL},
    {"pm_card_mastercard", "succeeded", NULL, NULL},
    {"pm_card_amex", "succeeded", NULL, NULL},
    {"pm_card_chargeDeclined", "failed", "generic_decline", "Your card was declined."},
    {"pm_card_chargeDeclinedInsufficientFunds", "failed", "insufficient_funds",
     "Your card has insufficient funds."},
    {"pm_card_chargeDeclinedExpiredCard", "failed", "expired_card", "Your card has expired."},
    {"pm_card_authenticationRequired", "requires_action", NULL, NULL},
};

static json_t *sandbox_charge(json_t *call, const char *digits)
{
    const char *method = json_string_value(json_object_get(call, "payment_method"));
    char pi[64], ch[64];
    snprintf(pi, sizeof(pi), "pi_sandbox_%s", digits);
    snprintf(ch, sizeof(ch), "ch_sandbox_%s", digits);
    for (size_t i = 0; i < sizeof(test_methods) / sizeof(test_methods[0]); i++) {
        if (method == NULL || strcmp(method, test_methods[i].method) != 0)
            continue;
        const char *outcome = test_methods[i].outcome;
        const char *status = strcmp(outcome, "failed") == 0 ? "requires_payment_method" : outcome;
        return json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s?}", "outcome", outcome,
                         "gateway_payment_id", pi, "gateway_status", status, "transaction_id",
                         strcmp(outcome, "succeeded") == 0 ? ch : NULL, "failure_code",
                         test_methods[i].code, "failure_message", test_methods[i].message);
    }
    char message[160];
    snprintf(message, sizeof(message), "No such PaymentMethod: '%.100s'",
             method ? method : "");
    return json_pack("{s:s, s:i, s:s, s:s}", "outcome", "error", "http_status", 400,
                     "failure_code", "resource_missing", "failure_message", message);
}

static json_t *sandbox_refund(const char *digits)
{
    char re[64];
    snprintf(re, sizeof(re), "re_sandbox_%s", digits);
    return json_pack("{s:s, s:s}", "outcome", "succeeded", "transaction_id", re);
}

/* A customer or a Checkout Session of the sandbox. */
static json_t *sandbox_billing(const char *kind, const char *digits)
{
    char id[64], url[128];
    if (strcmp(kind, "customer") == 0) {
        snprintf(id, sizeof(id), "cus_sandbox_%s", digits);
        return json_pack("{s:s, s:s, s:s}", "outcome", "succeeded", "gateway", "sandbox",
                         "gateway_customer_id", id);
    }
    snprintf(id, sizeof(id), "cs_sandbox_%s", digits);
    snprintf(url, sizeof(url), "%s%s", SANDBOX_CHECKOUT_URL, id);
    return json_pack("{s:s, s:s, s:s, s:s}", "outcome", "succeeded", "gateway", "sandbox",
                     "session_id", id, "url", url);
}

CURLcode gateway_post(CURL *c, const char *url, struct curl_slist *headers, const char *body,
                      long timeout_ms, curl_write_callback header_fn, gateway_answer_t *a,
                      long *http, json_t **root)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ps_buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_fn);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    *http = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http);
    *root = a->body.data ? json_loads(a->body.data, 0, NULL) : NULL;
    free(a->body.data);
    a->body.data = NULL;
    a->body.len = 0;
    return rc;
}

void gateway_init(void)
{
    static const double seconds[] = {0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30};
    calls = ps_metric_counter("paystream_gateway_calls_total",
                              "calls to Stripe's and PayPal's APIs, by gateway, kind (charge, "
                              "refund, customer, checkout) and outcome (unknown: no answer)");
    call_seconds = ps_metric_histogram("paystream_gateway_call_seconds",
                                       "time a call to a gateway's API took, by gateway and kind",
                                       seconds, sizeof(seconds) / sizeof(seconds[0]));
    const char *key = ps_config_str("STRIPE_SECRET_KEY");
    const char *id = ps_config_str("PAYPAL_CLIENT_ID"), *secret = ps_config_str("PAYPAL_CLIENT_SECRET");
    /* Once for both gateways, before any other thread exists. */
    curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    if (!curl_ready)
        ps_log_error("cannot set up libcurl; the stripe and paypal gateways are off", NULL);
    stripe_enabled = curl_ready && *key != '\0';
    if (stripe_enabled)
        stripe_gateway_init(key, ps_config_str("STRIPE_API_BASE"),
                            (long)ps_config_int("STRIPE_TIMEOUT_MS"),
                            ps_config_str("PAYSTREAM_CHECKOUT_SUCCESS_URL"),
                            ps_config_str("PAYSTREAM_CHECKOUT_CANCEL_URL"));
    paypal_enabled = curl_ready && *id != '\0' && *secret != '\0';
    if (paypal_enabled)
        paypal_gateway_init(id, secret, ps_config_str("PAYPAL_API_BASE"),
                            (long)ps_config_int("PAYPAL_TIMEOUT_MS"),
                            ps_config_str("PAYPAL_RETURN_URL"), ps_config_str("PAYPAL_CANCEL_URL"));
}

int gateway_paypal_enabled(void)
{
    return paypal_enabled;
}

int gateway_stripe_enabled(void)
{
    return stripe_enabled;
}

void gateway_free(void)
{
    if (curl_ready)
        curl_global_cleanup();
}

const char *gateway_for(int sandbox_actor)
{
    return sandbox_actor || !stripe_enabled ? "sandbox" : "stripe";
}

/* Counts a call of gateway for kind and how it ended: the outcome of its
 * answer (succeeded, failed, requires_action, error, ...), or unknown when
 * there was none. */
static void call_measured(const char *gateway, const char *kind, int64_t started_us,
                          const json_t *outcome)
{
    char labels[128];
    const char *result = outcome ? json_string_value(json_object_get(outcome, "outcome")) : NULL;
    snprintf(labels, sizeof(labels), "gateway=\"%s\",kind=\"%s\"", gateway, kind);
    ps_metric_observe(call_seconds, labels, (double)(ps_mono_us() - started_us) / 1e6);
    snprintf(labels, sizeof(labels), "gateway=\"%s\",kind=\"%s\",outcome=\"%s\"", gateway, kind,
             result ? result : "unknown");
    ps_metric_add(calls, labels, 1);
}

int gateway_call(json_t *call, const char *command_id, json_t **outcome, char *err,
                 size_t errlen)
{
    const char *digits = strncmp(command_id, "cmd_", 4) == 0 ? command_id + 4 : command_id;
    const char *gateway = json_string_value(json_object_get(call, "gateway"));
    const char *kind = json_string_value(json_object_get(call, "kind"));
    if (gateway == NULL || kind == NULL)
        gateway = kind = "?";
    if (strcmp(gateway, "sandbox") == 0) {
        *outcome = strcmp(kind, "charge") == 0   ? sandbox_charge(call, digits)
                   : strcmp(kind, "refund") == 0 ? sandbox_refund(digits)
                                                 : sandbox_billing(kind, digits);
        return 0;
    }
    int stripe = strcmp(gateway, "stripe") == 0 && stripe_enabled;
    if (stripe || (strcmp(gateway, "paypal") == 0 && paypal_enabled)) {
        int64_t started = ps_mono_us();
        int rc = stripe ? stripe_gateway_call(call, command_id, outcome, err, errlen)
                        : paypal_gateway_call(call, command_id, outcome, err, errlen);
        call_measured(gateway, kind, started, rc == 0 ? *outcome : NULL);
        return rc;
    }
    /* Nothing was asked of any gateway: a definite refusal. */
    char message[128];
    snprintf(message, sizeof(message), "the %.32s gateway is not configured on this worker",
             gateway);
    *outcome = json_pack("{s:s, s:i, s:s, s:s}", "outcome", "error", "http_status", 409,
                         "failure_code", "gateway_unavailable", "failure_message", message);
    return 0;
}
