/* The payment gateways behind payment.process and payment.refund: stripe
 * (gateway_stripe.c) when STRIPE_SECRET_KEY is set, and the sandbox.
 *
 * sandbox: deterministic and offline, after Stripe's test payment methods.
 * pm_card_visa (and the other plain test cards) succeed,
 * pm_card_chargeDeclined and its kin are declined,
 * pm_card_authenticationRequired needs the customer's action, anything
 * else is an unknown payment method. Its ids derive from the command id, so
 * a repeated call gets the same answer, as Stripe's idempotency keys do. */
#include <stdio.h>
#include <string.h>

#include "payments.h"
#include "paystream/config.h"

static int stripe_enabled;

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

static json_t *sandbox_charge(const gateway_call_t *call, const char *digits)
{
    char pi[64], ch[64];
    snprintf(pi, sizeof(pi), "pi_sandbox_%s", digits);
    snprintf(ch, sizeof(ch), "ch_sandbox_%s", digits);
    for (size_t i = 0; i < sizeof(test_methods) / sizeof(test_methods[0]); i++) {
        if (call->payment_method == NULL || strcmp(call->payment_method, test_methods[i].method) != 0)
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
             call->payment_method ? call->payment_method : "");
    return json_pack("{s:s, s:i, s:s, s:s}", "outcome", "error", "http_status", 400,
                     "failure_code", "resource_missing", "failure_message", message);
}

static json_t *sandbox_refund(const char *digits)
{
    char re[64];
    snprintf(re, sizeof(re), "re_sandbox_%s", digits);
    return json_pack("{s:s, s:s}", "outcome", "succeeded", "transaction_id", re);
}

void gateway_init(void)
{
    const char *key = ps_config_str("STRIPE_SECRET_KEY");
    stripe_enabled = *key != '\0' &&
                     stripe_gateway_init(key, ps_config_str("STRIPE_API_BASE"),
                                         (long)ps_config_int("STRIPE_TIMEOUT_MS")) == 0;
}

void gateway_free(void)
{
    if (stripe_enabled)
        stripe_gateway_free();
}

const char *gateway_for(int sandbox_actor)
{
    return sandbox_actor || !stripe_enabled ? "sandbox" : "stripe";
}

int gateway_call(const gateway_call_t *call, json_t **outcome, char *err, size_t errlen)
{
    const char *digits = strncmp(call->command_id, "cmd_", 4) == 0 ? call->command_id + 4
                                                                   : call->command_id;
    if (strcmp(call->gateway, "sandbox") == 0) {
        *outcome = strcmp(call->kind, "charge") == 0 ? sandbox_charge(call, digits)
                                                     : sandbox_refund(digits);
        return 0;
    }
    if (strcmp(call->gateway, "stripe") == 0 && stripe_enabled)
        return stripe_gateway_call(call, outcome, err, errlen);
    /* Nothing was asked of any gateway: a definite refusal. */
    char message[128];
    snprintf(message, sizeof(message), "the %.32s gateway is not configured on this worker",
             call->gateway);
    *outcome = json_pack("{s:s, s:i, s:s, s:s}", "outcome", "error", "http_status", 409,
                         "failure_code", "gateway_unavailable", "failure_message", message);
    return 0;
}
