/* Stripe's events as Stripe sends them: see stripe_mix.h. The objects'
 * fields are those of Stripe's API reference for PaymentIntent, Charge,
 * Refund and Event (API version 2024-06-20), with the values a card
 * payment in test mode has. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "stripe_mix.h"

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void mix_intent(mix_intent_t *it, const char *prefix, long n, uint64_t seed, int64_t created)
{
    static const char *const currencies[] = {"usd", "usd", "usd", "eur", "gbp"};
    uint64_t s = seed * 1000003u + (uint64_t)n;
    memset(it, 0, sizeof(*it));
    snprintf(it->tag, sizeof(it->tag), "%s_%ld", prefix, n);
    snprintf(it->pi, sizeof(it->pi), "pi_%s", it->tag);
    it->amount = 500 + (int64_t)(splitmix(&s) % 24500);
    it->currency = currencies[splitmix(&s) % 5];
    it->created = created;
    unsigned roll = (unsigned)(splitmix(&s) % 100);
    it->fate = roll < 80 ? MIX_SUCCEEDED : roll < 88 ? MIX_PARTLY_REFUNDED
             : roll < 92 ? MIX_REFUNDED : MIX_FAILED;
    it->refunded = it->fate == MIX_REFUNDED ? it->amount
                 : it->fate == MIX_PARTLY_REFUNDED ? 100 + (int64_t)(splitmix(&s) % (uint64_t)(it->amount / 2))
                 : 0;
    it->nevents = it->fate == MIX_FAILED ? 3 : it->fate == MIX_SUCCEEDED ? 4 : 6;
}

const char *mix_status(const mix_intent_t *it)
{
    switch (it->fate) {
    case MIX_SUCCEEDED: return "completed";
    case MIX_PARTLY_REFUNDED: return "partially_refunded";
    case MIX_REFUNDED: return "refunded";
    default: return "failed";
    }
}

int64_t mix_captured(const mix_intent_t *it)
{
    return it->fate == MIX_FAILED ? 0 : it->amount;
}

/* Writes into out (at most cap bytes) with printf's rules; returns the
 * length, as far as it went. */
__attribute__((format(printf, 3, 4))) static size_t put(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* The card payment method, as a failed intent's last_payment_error shows it. */
static size_t payment_method(char *out, size_t cap, const mix_intent_t *it)
{
    return put(out, cap,
        "{\"id\":\"pm_%s\",\"object\":\"payment_method\",\"allow_redisplay\":\"unspecified\","
        "\"billing_details\":{\"address\":{\"city\":\"South San Francisco\",\"country\":\"US\","
        "\"line1\":\"354 Oyster Point Blvd\",\"line2\":null,\"postal_code\":\"94080\","
        "\"state\":\"CA\"},\"email\":\"jenny.rosen@example.com\",\"name\":\"Jenny Rosen\","
        "\"phone\":null},\"card\":{\"brand\":\"visa\",\"checks\":{\"address_line1_check\":null,"
        "\"address_postal_code_check\":null,\"cvc_check\":\"pass\"},\"country\":\"US\","
        "\"display_brand\":\"visa\",\"exp_month\":8,\"exp_year\":2027,"
        "\"fingerprint\":\"Xt5EWLLDS7FJjR1c\",\"funding\":\"credit\",\"generated_from\":null,"
        "\"last4\":\"0002\",\"networks\":{\"available\":[\"visa\"],\"preferred\":null},"
        "\"three_d_secure_usage\":{\"supported\":true},\"wallet\":null},\"created\":%lld,"
        "\"customer\":null,\"livemode\":false,\"metadata\":{},\"type\":\"card\"}",
        it->tag, (long long)it->created);
}

/* The PaymentIntent in status (succeeded, requires_payment_method). */
static size_t intent_object(char *out, size_t cap, const mix_intent_t *it, const char *status,
                            int charged, int failed)
{
    char error[1800] = "null";
    if (failed) {
        char pm[1400];
        payment_method(pm, sizeof(pm), it);
        put(error, sizeof(error),
            "{\"charge\":\"ch_%s\",\"code\":\"card_declined\",\"decline_code\":\"generic_decline\","
            "\"doc_url\":\"https://stripe.com/docs/error-codes/card-declined\","
            "\"message\":\"Your card was declined.\",\"payment_method\":%s,"
            "\"request_log_url\":\"https://dashboard.stripe.com/test/logs/req_%s\","
            "\"type\":\"card_error\"}", it->tag, pm, it->tag);
    }
    char latest[80] = "null";
    if (charged || failed)
        snprintf(latest, sizeof(latest), "\"ch_%s\"", it->tag);
    return put(out, cap,
        "{\"id\":\"%s\",\"object\":\"payment_intent\",\"amount\":%lld,\"amount_capturable\":0,"
        "\"amount_details\":{\"tip\":{}},\"amount_received\":%lld,\"application\":null,"
        "\"application_fee_amount\":null,\"automatic_payment_methods\":{\"allow_redirects\":"
        "\"always\",\"enabled\":true},\"canceled_at\":null,\"cancellation_reason\":null,"
        "\"capture_method\":\"automatic_async\",\"client_secret\":\"%s_secret_Mf3DK7pQ9xLr2nWb\","
        "\"confirmation_method\":\"automatic\",\"created\":%lld,\"currency\":\"%s\","
        "\"customer\":\"cus_%s\",\"description\":null,\"invoice\":null,"
        "\"last_payment_error\":%s,\"latest_charge\":%s,\"livemode\":false,"
        "\"metadata\":{\"cart\":\"%s\"},\"next_action\":null,\"on_behalf_of\":null,"
        "\"payment_method\":%s%s%s,\"payment_method_configuration_details\":{\"id\":"
        "\"pmc_1PgT0jLkdIwHu7ixMz4Rb3Ga\",\"parent\":null},\"payment_method_options\":{\"card\":"
        "{\"installments\":null,\"mandate_options\":null,\"network\":null,"
        "\"request_three_d_secure\":\"automatic\"},\"link\":{\"persistent_token\":null}},"
        "\"payment_method_types\":[\"card\",\"link\"],\"processing\":null,"
        "\"receipt_email\":\"jenny.rosen@example.com\",\"review\":null,\"setup_future_usage\":null,"
        "\"shipping\":null,\"source\":null,\"statement_descriptor\":null,"
        "\"statement_descriptor_suffix\":null,\"status\":\"%s\",\"transfer_data\":null,"
        "\"transfer_group\":null}",
        it->pi, (long long)it->amount, (long long)(charged ? it->amount : 0), it->pi,
        (long long)it->created, it->currency, it->tag, error, latest, it->tag,
        charged ? "\"pm_" : "", charged ? it->tag : "null", charged ? "\"" : "", status);
}

/* The refund of it, as a list element or an event's object. */
static size_t refund_object(char *out, size_t cap, const mix_intent_t *it)
{
    return put(out, cap,
        "{\"id\":\"re_%s\",\"object\":\"refund\",\"amount\":%lld,\"balance_transaction\":"
        "\"txn_re_%s\",\"charge\":\"ch_%s\",\"created\":%lld,\"currency\":\"%s\","
        "\"destination_details\":{\"card\":{\"reference\":\"6194537850917034\","
        "\"reference_status\":\"available\",\"reference_type\":\"acquirer_reference_number\","
        "\"type\":\"refund\"},\"type\":\"card\"},\"metadata\":{},\"payment_intent\":\"%s\","
        "\"reason\":\"requested_by_customer\",\"receipt_number\":null,"
        "\"source_transfer_reversal\":null,\"status\":\"succeeded\",\"transfer_reversal\":null}",
        it->tag, (long long)it->refunded, it->tag, it->tag, (long long)it->created + 3,
        it->currency, it->pi);
}

/* The Charge: succeeded (with what was refunded, and its refunds when
 * refunded) or failed. */
static size_t charge_object(char *out, size_t cap, const mix_intent_t *it, int failed,
                            int refunded, int settled)
{
    char refunds[1200] = "";
    if (refunded) {
        char r[1000];
        refund_object(r, sizeof(r), it);
        put(refunds, sizeof(refunds),
            ",\"refunds\":{\"object\":\"list\",\"data\":[%s],\"has_more\":false,"
            "\"total_count\":1,\"url\":\"/v1/charges/ch_%s/refunds\"}", r, it->tag);
    }
    int64_t amount_refunded = refunded ? it->refunded : 0;
    return put(out, cap,
        "{\"id\":\"ch_%s\",\"object\":\"charge\",\"amount\":%lld,\"amount_captured\":%lld,"
        "\"amount_refunded\":%lld,\"application\":null,\"application_fee\":null,"
        "\"application_fee_amount\":null,\"balance_transaction\":%s%s%s,\"billing_details\":"
        "{\"address\":{\"city\":\"South San Francisco\",\"country\":\"US\",\"line1\":"
        "\"354 Oyster Point Blvd\",\"line2\":null,\"postal_code\":\"94080\",\"state\":\"CA\"},"
        "\"email\":\"jenny.rosen@example.com\",\"name\":\"Jenny Rosen\",\"phone\":null},"
        "\"calculated_statement_descriptor\":\"PAYSTREAM SHOP\",\"captured\":%s,"
        "\"created\":%lld,\"currency\":\"%s\",\"customer\":\"cus_%s\",\"description\":null,"
        "\"destination\":null,\"dispute\":null,\"disputed\":false,"
        "\"failure_balance_transaction\":null,\"failure_code\":%s,\"failure_message\":%s,"
        "\"fraud_details\":{},\"invoice\":null,\"livemode\":false,\"metadata\":{\"cart\":\"%s\"},"
        "\"on_behalf_of\":null,\"order\":null,\"outcome\":{\"network_status\":\"%s\","
        "\"reason\":%s,\"risk_level\":\"normal\",\"risk_score\":32,\"seller_message\":\"%s\","
        "\"type\":\"%s\"},\"paid\":%s,\"payment_intent\":\"%s\",\"payment_method\":\"pm_%s\","
        "\"payment_method_details\":{\"card\":{\"amount_authorized\":%lld,\"brand\":\"visa\","
        "\"checks\":{\"address_line1_check\":\"pass\",\"address_postal_code_check\":\"pass\","
        "\"cvc_check\":\"pass\"},\"country\":\"US\",\"exp_month\":8,\"exp_year\":2027,"
        "\"extended_authorization\":{\"status\":\"disabled\"},\"fingerprint\":"
        "\"Xt5EWLLDS7FJjR1c\",\"funding\":\"credit\",\"incremental_authorization\":{\"status\":"
        "\"unavailable\"},\"installments\":null,\"last4\":\"%s\",\"mandate\":null,"
        "\"multicapture\":{\"status\":\"unavailable\"},\"network\":\"visa\",\"network_token\":"
        "{\"used\":false},\"overcapture\":{\"maximum_amount_capturable\":%lld,\"status\":"
        "\"unavailable\"},\"three_d_secure\":null,\"wallet\":null},\"type\":\"card\"},"
        "\"radar_options\":{},\"receipt_email\":\"jenny.rosen@example.com\",\"receipt_number\":"
        "null,\"receipt_url\":\"https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8xTjJ"
        "%s\",\"refunded\":%s%s,\"review\":null,\"shipping\":null,\"source\":null,"
        "\"source_transfer\":null,\"statement_descriptor\":null,\"statement_descriptor_suffix\":"
        "null,\"status\":\"%s\",\"transfer_data\":null,\"transfer_group\":null}",
        it->tag, (long long)it->amount, (long long)(failed ? 0 : it->amount),
        (long long)amount_refunded, settled ? "\"txn_" : "", settled ? it->tag : "null",
        settled ? "\"" : "", failed ? "false" : "true", (long long)it->created + 1, it->currency,
        it->tag, failed ? "\"card_declined\"" : "null",
        failed ? "\"Your card was declined.\"" : "null", it->tag,
        failed ? "declined_by_network" : "approved_by_network",
        failed ? "\"generic_decline\"" : "null",
        failed ? "The bank did not return any further details with this decline."
               : "Payment complete.",
        failed ? "issuer_declined" : "authorized", failed ? "false" : "true", it->pi, it->tag,
        (long long)(failed ? 0 : it->amount), failed ? "0002" : "4242",
        (long long)it->amount, it->tag,
        refunded && it->refunded == it->amount ? "true" : "false", refunds,
        failed ? "failed" : "succeeded");
}

/* The event around object: the envelope every Stripe event has. */
static size_t event(char *buf, const mix_intent_t *it, int i, const char *type, int64_t created,
                    const char *object, const char *previous, char *id)
{
    snprintf(id, 64, "evt_%s_%d", it->tag, i);
    return put(buf, MIX_EVENT_MAX,
               "{\"id\":\"%s\",\"object\":\"event\",\"api_version\":\"2024-06-20\","
               "\"created\":%lld,\"data\":{\"object\":%s%s%s},\"livemode\":false,"
               "\"pending_webhooks\":1,\"request\":{\"id\":\"req_%s_%d\",\"idempotency_key\":"
               "\"%s-%d\"},\"type\":\"%s\"}",
               id, (long long)created, object, previous ? ",\"previous_attributes\":" : "",
               previous ? previous : "", it->tag, i, it->tag, i, type);
}

size_t mix_event(const mix_intent_t *it, int i, char *buf, char *id)
{
    char object[3400], previous[200];
    int64_t t = it->created;
    if (it->fate == MIX_FAILED) {
        switch (i) {
        case 0:
            intent_object(object, sizeof(object), it, "requires_payment_method", 0, 0);
            return event(buf, it, i, "payment_intent.created", t, object, NULL, id);
        case 1:
            charge_object(object, sizeof(object), it, 1, 0, 0);
            return event(buf, it, i, "charge.failed", t + 1, object, NULL, id);
        default:
            intent_object(object, sizeof(object), it, "requires_payment_method", 0, 1);
            return event(buf, it, i, "payment_intent.payment_failed", t + 1, object, NULL, id);
        }
    }
    switch (i) {
    case 0:
        intent_object(object, sizeof(object), it, "requires_payment_method", 0, 0);
        return event(buf, it, i, "payment_intent.created", t, object, NULL, id);
    case 1:
        charge_object(object, sizeof(object), it, 0, 0, 0);
        return event(buf, it, i, "charge.succeeded", t + 1, object, NULL, id);
    case 2:
        intent_object(object, sizeof(object), it, "succeeded", 1, 0);
        return event(buf, it, i, "payment_intent.succeeded", t + 1, object, NULL, id);
    case 3:
        charge_object(object, sizeof(object), it, 0, 0, 1);
        return event(buf, it, i, "charge.updated", t + 2, object,
                     "{\"balance_transaction\":null}", id);
    case 4:
        charge_object(object, sizeof(object), it, 0, 1, 1);
        snprintf(previous, sizeof(previous), "{\"amount_refunded\":0,\"refunded\":false}");
        return event(buf, it, i, "charge.refunded", t + 3, object, previous, id);
    default:
        refund_object(object, sizeof(object), it);
        return event(buf, it, i, "refund.created", t + 3, object, NULL, id);
    }
}
