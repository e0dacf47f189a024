/* Stripe events: from a consumed message to the call of
 * ps_apply_stripe_event that applies it. Each handled event type is one line
 * in the table below and one extractor; every other type is only recorded. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/money.h"

/* The facts an event states about a payment; NULL or -1 when it says none. */
typedef struct {
    const char *payment_intent, *intent_status, *gateway_status, *currency;
    const char *charge_id, *order_id, *customer, *failure_code, *failure_message;
    int64_t amount, captured, refunded;
    json_t *refunds; /* new reference, or NULL */
} facts_t;

typedef int (*extract_fn)(json_t *object, const char *status, facts_t *f, char *err,
                          size_t errlen);

static int on_payment_intent(json_t *, const char *, facts_t *, char *, size_t);
static int on_charge(json_t *, const char *, facts_t *, char *, size_t);
static int on_refund(json_t *, const char *, facts_t *, char *, size_t);

static const struct {
    const char *type;
    extract_fn extract;
    const char *intent_status; /* the lifecycle state the event announces */
} handlers[] = {
    {"payment_intent.created", on_payment_intent, "pending"},
    {"payment_intent.requires_action", on_payment_intent, "pending"},
    {"payment_intent.processing", on_payment_intent, "processing"},
    {"payment_intent.succeeded", on_payment_intent, "completed"},
    {"payment_intent.payment_failed", on_payment_intent, "failed"},
    {"payment_intent.canceled", on_payment_intent, "cancelled"},
    {"charge.succeeded", on_charge, "completed"},
    {"charge.refunded", on_charge, "completed"},
    {"charge.refund.updated", on_refund, NULL},
    {"refund.created", on_refund, NULL},
    {"refund.updated", on_refund, NULL},
    {"refund.failed", on_refund, NULL},
};
#define NHANDLERS (sizeof(handlers) / sizeof(handlers[0]))

static const char *str_field(json_t *obj, const char *name)
{
    const char *s = json_string_value(json_object_get(obj, name));
    return s && *s ? s : NULL;
}

/* Reads a non-negative integer amount; absent leaves *out as it is. */
static int amount_field(json_t *obj, const char *name, int64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, name);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        snprintf(err, errlen, "%s is not a non-negative integer amount", name);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

static int currency_field(json_t *obj, facts_t *f, char *err, size_t errlen)
{
    f->currency = str_field(obj, "currency");
    if (f->currency && ps_currency_exponent(f->currency) < 0) {
        snprintf(err, errlen, "currency \"%.8s\" is not an ISO 4217 code", f->currency);
        return -1;
    }
    return 0;
}

static int on_payment_intent(json_t *pi, const char *status, facts_t *f, char *err,
                             size_t errlen)
{
    f->payment_intent = str_field(pi, "id");
    if (f->payment_intent == NULL || strncmp(f->payment_intent, "pi_", 3) != 0) {
        snprintf(err, errlen, "data.object.id is not a payment intent id");
        return -1;
    }
    f->intent_status = status;
    f->gateway_status = str_field(pi, "status");
    f->customer = str_field(pi, "customer");
    f->order_id = str_field(json_object_get(pi, "metadata"), "order_id");
    json_t *lpe = json_object_get(pi, "last_payment_error");
    f->failure_code = str_field(lpe, "decline_code") ? str_field(lpe, "decline_code")
                                                     : str_field(lpe, "code");
    f->failure_message = str_field(lpe, "message");
    if (amount_field(pi, "amount", &f->amount, err, errlen) < 0 ||
        currency_field(pi, f, err, errlen) < 0)
        return -1;
    if (strcmp(status, "completed") == 0) {
        if (amount_field(pi, "amount_received", &f->captured, err, errlen) < 0)
            return -1;
        f->charge_id = str_field(pi, "latest_charge");
    }
    return 0;
}

/* Turns a Stripe refund object into the row ps_apply_stripe_event expects. */
static json_t *refund_row(json_t *re, char *err, size_t errlen)
{
    static const char *const statuses[] = {"pending", "requires_action", "succeeded", "failed",
                                           "canceled", NULL};
    const char *id = str_field(re, "id"), *status = str_field(re, "status");
    int64_t amount = -1;
    char cur[4];
    if (id == NULL || amount_field(re, "amount", &amount, err, errlen) < 0 || amount <= 0 ||
        ps_currency_normalize(str_field(re, "currency"), cur) < 0) {
        if (!*err)
            snprintf(err, errlen, "refund needs an id, a positive amount and a currency");
        return NULL;
    }
    int known = 0;
    for (int i = 0; status && statuses[i]; i++)
        known |= strcmp(status, statuses[i]) == 0;
    if (!known) {
        snprintf(err, errlen, "refund %s has an unknown status", id);
        return NULL;
    }
    return json_pack("{s:s, s:I, s:s, s:s, s:s?}", "id", id, "amount", (json_int_t)amount,
                     "currency", cur, "status", status, "reason", str_field(re, "reason"));
}

static int on_charge(json_t *ch, const char *status, facts_t *f, char *err, size_t errlen)
{
    f->payment_intent = str_field(ch, "payment_intent");
    f->charge_id = str_field(ch, "id");
    if (f->payment_intent == NULL)
        return 0; /* a charge outside payment intents: recorded only */
    f->customer = str_field(ch, "customer");
    if (amount_field(ch, "amount", &f->amount, err, errlen) < 0 ||
        currency_field(ch, f, err, errlen) < 0)
        return -1;
    if (!json_is_true(json_object_get(ch, "captured")))
        return 0; /* an authorisation: no money moved yet */
    f->intent_status = status;
    if (amount_field(ch, "amount_captured", &f->captured, err, errlen) < 0 ||
        amount_field(ch, "amount_refunded", &f->refunded, err, errlen) < 0)
        return -1;
    json_t *list = json_object_get(json_object_get(ch, "refunds"), "data");
    if (!json_is_array(list))
        return 0;
    f->refunds = json_array();
    size_t i;
    json_t *re;
    json_array_foreach(list, i, re) {
        json_t *row = refund_row(re, err, errlen);
        if (row == NULL)
            return -1;
        json_array_append_new(f->refunds, row);
    }
    return 0;
}

static int on_refund(json_t *re, const char *status, facts_t *f, char *err, size_t errlen)
{
    (void)status;
    f->payment_intent = str_field(re, "payment_intent");
    if (f->payment_intent == NULL)
        return 0;
    json_t *row = refund_row(re, err, errlen);
    if (row == NULL)
        return -1;
    f->refunds = json_array();
    json_array_append_new(f->refunds, row);
    return currency_field(re, f, err, errlen);
}

static void set_bad(event_call_t *ec, const char *what, const char *detail)
{
    ec->bad = 1;
    snprintf(ec->reason, sizeof(ec->reason), "%s: %s", what, detail);
}

static const char *int_or_null(char *buf, size_t len, int64_t v)
{
    if (v < 0)
        return NULL;
    snprintf(buf, len, "%" PRId64, v);
    return buf;
}

/* Lays out the parameters of ps_apply_stripe_event (see 001_*.sql). */
static void fill_call(event_call_t *ec, json_t *root, const facts_t *f)
{
    const char **v = ec->call.values;
    ec->call.stmt = "apply_stripe_event";
    ec->call.nparams = 20;
    snprintf(ec->created, sizeof(ec->created), "%" PRId64,
             (int64_t)json_integer_value(json_object_get(root, "created")));
    if (f->currency)
        ps_currency_normalize(f->currency, ec->currency);
    v[0] = str_field(root, "id");
    v[1] = str_field(root, "type");
    v[2] = str_field(root, "account");
    v[3] = ec->created;
    v[4] = json_is_true(json_object_get(root, "livemode")) ? "true" : "false";
    v[5] = ec->env.message_id;
    v[6] = ec->payload;
    v[7] = f->payment_intent;
    v[8] = f->intent_status;
    v[9] = f->gateway_status;
    v[10] = int_or_null(ec->amount, sizeof(ec->amount), f->amount);
    v[11] = f->currency ? ec->currency : NULL;
    v[12] = int_or_null(ec->captured, sizeof(ec->captured), f->captured);
    v[13] = int_or_null(ec->refunded, sizeof(ec->refunded), f->refunded);
    v[14] = f->charge_id;
    v[15] = f->order_id;
    v[16] = f->customer;
    v[17] = f->failure_code;
    v[18] = f->failure_message;
    ec->refunds = f->refunds ? json_dumps(f->refunds, JSON_COMPACT) : NULL;
    v[19] = ec->refunds;
}

void stripe_event_prepare(event_call_t *ec)
{
    char err[256] = "";
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_message_headers(ec->msg, &hdrs);
    if (ps_envelope_from_headers(hdrs, &ec->env, err, sizeof(err)) < 0) {
        set_bad(ec, "bad envelope", err);
        return;
    }
    ec->payload = strndup(ec->msg->payload ? ec->msg->payload : "", ec->msg->len);
    json_error_t jerr;
    ec->root = json_loadb(ec->payload, ec->msg->len, 0, &jerr);
    json_t *root = ec->root;
    json_t *object = json_object_get(json_object_get(root, "data"), "object");
    if (!json_is_object(object) || str_field(root, "id") == NULL || str_field(root, "type") == NULL ||
        !json_is_integer(json_object_get(root, "created"))) {
        set_bad(ec, "not a Stripe event", root ? "id, type, created or data.object missing"
                                                   : jerr.text);
        return;
    }
    facts_t f = {.amount = -1, .captured = -1, .refunded = -1};
    const char *type = str_field(root, "type");
    for (size_t i = 0; i < NHANDLERS; i++) {
        if (strcmp(handlers[i].type, type) == 0 &&
            handlers[i].extract(object, handlers[i].intent_status, &f, err, sizeof(err)) < 0) {
            set_bad(ec, "cannot apply", err);
            json_decref(f.refunds);
            return;
        }
    }
    fill_call(ec, root, &f);
    json_decref(f.refunds);
}

void stripe_event_release(event_call_t *ec)
{
    json_decref(ec->root);
    free(ec->payload);
    free(ec->refunds);
    memset(ec, 0, sizeof(*ec));
}
