/* Stripe events: from a consumed message to its element of the batch that
 * ps_apply_stripe_events applies. Each handled event type is one line
 * in the table below and one extractor; every other type is only recorded.
 * Payment intents, charges and the top level of a recorded event are read
 * with the scanner (most of Stripe's events, 2 KB each): building
 * the document with jansson was most of the worker's CPU.
 * Payment intents, charges and refunds state facts about a payment;
 * Checkout Sessions, subscriptions and invoices are billing objects of
 * their own (the element's "billing" member). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/json_scan.h"
#include "paystream/money.h"

/* The facts an event states about a payment; NULL or -1 when it says none. */
typedef struct {
    const char *payment_intent, *intent_status, *gateway_status, *currency;
    const char *charge_id, *payment_id, *customer, *failure_code, *failure_message;
    int64_t amount, captured, refunded;
    json_t *refunds; /* new reference, or NULL */
    json_t *billing; /* {kind, ...} of a billing object; new reference, or NULL */
    json_t *voucher; /* a delayed method's voucher (OXXO); new reference, or NULL */
} facts_t;

/* An event's members read by the scanner (prepare_scanned). */
typedef struct scanned scanned_t;

/* Reads what an event's object states, from the jansson document or from
 * the scanned members. */
typedef int (*extract_fn)(json_t *object, const char *status, facts_t *f, char *err,
                          size_t errlen);
typedef int (*scan_fn)(scanned_t *s, const char *status, facts_t *f, char *err, size_t errlen);

static int on_payment_intent(scanned_t *, const char *, facts_t *, char *, size_t);
static int on_charge(scanned_t *, const char *, facts_t *, char *, size_t);
static int on_refund(json_t *, const char *, facts_t *, char *, size_t);
static int on_checkout(json_t *, const char *, facts_t *, char *, size_t);
static int on_subscription(json_t *, const char *, facts_t *, char *, size_t);
static int on_invoice(json_t *, const char *, facts_t *, char *, size_t);

static const struct handler {
    const char *type;
    scan_fn scan;       /* the object's facts read by the scanner, */
    extract_fn extract; /* or from the document (building it costs more) */
    const char *status; /* the lifecycle state the event announces */
    int billing;        /* a billing object of the platform's: never a Connect event's */
} handlers[] = {
    {"payment_intent.created", on_payment_intent, NULL, "pending", 0},
    {"payment_intent.requires_action", on_payment_intent, NULL, "pending", 0},
    {"payment_intent.processing", on_payment_intent, NULL, "processing", 0},
    {"payment_intent.succeeded", on_payment_intent, NULL, "completed", 0},
    {"payment_intent.payment_failed", on_payment_intent, NULL, "failed", 0},
    {"payment_intent.canceled", on_payment_intent, NULL, "cancelled", 0},
    {"charge.succeeded", on_charge, NULL, "completed", 0},
    {"charge.refunded", on_charge, NULL, "completed", 0},
    {"charge.refund.updated", NULL, on_refund, NULL, 0},
    {"refund.created", NULL, on_refund, NULL, 0},
    {"refund.updated", NULL, on_refund, NULL, 0},
    {"refund.failed", NULL, on_refund, NULL, 0},
    /* "completed": paid, or awaiting a delayed payment, as payment_status says */
    {"checkout.session.completed", NULL, on_checkout, "completed", 1},
    {"checkout.session.async_payment_succeeded", NULL, on_checkout, "paid", 1},
    {"checkout.session.async_payment_failed", NULL, on_checkout, "payment_failed", 1},
    {"checkout.session.expired", NULL, on_checkout, "expired", 1},
    {"customer.subscription.created", NULL, on_subscription, NULL, 1},
    {"customer.subscription.updated", NULL, on_subscription, NULL, 1},
    {"customer.subscription.deleted", NULL, on_subscription, "canceled", 1},
    {"invoice.created", NULL, on_invoice, NULL, 1},
    {"invoice.finalized", NULL, on_invoice, NULL, 1},
    {"invoice.paid", NULL, on_invoice, "paid", 1},
    {"invoice.payment_failed", NULL, on_invoice, NULL, 1},
    {"invoice.voided", NULL, on_invoice, "void", 1},
    {"invoice.marked_uncollectible", NULL, on_invoice, "uncollectible", 1},
};
#define NHANDLERS (sizeof(handlers) / sizeof(handlers[0]))

static int system_livemode; /* the mode of this system's Stripe account */

static const char *str_field(json_t *obj, const char *name)
{
    const char *s = json_string_value(json_object_get(obj, name));
    return s && *s ? s : NULL;
}

/* Whether s (may be NULL) is one of the NULL-terminated words. */
static int one_of(const char *s, const char *const *words)
{
    for (int i = 0; s && words[i]; i++) {
        if (strcmp(s, words[i]) == 0)
            return 1;
    }
    return 0;
}

/* Takes a non-negative integer amount: kind is what the member is, v its
 * value when an integer; absent or null leaves *out as it is. */
static int amount_take(const char *name, ps_json_kind_t kind, int64_t v, int64_t *out, char *err,
                       size_t errlen)
{
    if (kind == PS_JSON_ABSENT || kind == PS_JSON_NULL)
        return 0;
    if (kind != PS_JSON_INTEGER || v < 0) {
        snprintf(err, errlen, "%s is not a non-negative integer amount", name);
        return -1;
    }
    *out = v;
    return 0;
}

static int amount_field(json_t *obj, const char *name, int64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, name);
    return amount_take(name, ps_json_kind_of(v), json_integer_value(v), out, err, errlen);
}

/* Takes the currency the object states (NULL: none). */
static int currency_take(const char *currency, facts_t *f, char *err, size_t errlen)
{
    f->currency = currency;
    if (f->currency && ps_currency_exponent(f->currency) < 0) {
        snprintf(err, errlen, "currency \"%.8s\" is not an ISO 4217 code", f->currency);
        return -1;
    }
    return 0;
}

static int currency_field(json_t *obj, facts_t *f, char *err, size_t errlen)
{
    return currency_take(str_field(obj, "currency"), f, err, errlen);
}

/* Turns a Stripe refund object into the row ps_apply_refunds expects. */
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
    if (!one_of(status, statuses)) {
        snprintf(err, errlen, "refund %s has an unknown status", id);
        return NULL;
    }
    return json_pack("{s:s, s:I, s:s, s:s, s:s?}", "id", id, "amount", (json_int_t)amount,
                     "currency", cur, "status", status, "reason", str_field(re, "reason"));
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

/* The id of a billing object, which must start with prefix. */
static const char *object_id(json_t *obj, const char *prefix, char *err, size_t errlen)
{
    const char *id = str_field(obj, "id");
    if (id == NULL || strncmp(id, prefix, strlen(prefix)) != 0 || strlen(id) > 255) {
        snprintf(err, errlen, "data.object.id is not a %s id", prefix);
        return NULL;
    }
    return id;
}

/* Adds the amount at name (when present) to the billing facts as key. */
static int billing_amount(json_t *obj, const char *name, const char *key, facts_t *f, char *err,
                          size_t errlen)
{
    int64_t v = -1;
    if (amount_field(obj, name, &v, err, errlen) < 0)
        return -1;
    if (v >= 0)
        json_object_set_new(f->billing, key, json_integer((json_int_t)v));
    return 0;
}

/* Adds the object's currency, uppercased, to the billing facts. */
static int billing_currency(json_t *obj, facts_t *f, char *err, size_t errlen)
{
    char cur[4];
    if (currency_field(obj, f, err, errlen) < 0)
        return -1;
    if (f->currency && ps_currency_normalize(f->currency, cur) == 0)
        json_object_set_new(f->billing, "currency", json_string(cur));
    f->currency = NULL; /* not a payment's */
    return 0;
}

static int on_checkout(json_t *cs, const char *status, facts_t *f, char *err, size_t errlen)
{
    const char *id = object_id(cs, "cs_", err, errlen);
    if (id == NULL)
        return -1;
    const char *paid = str_field(cs, "payment_status");
    const char *state = status;
    if (strcmp(status, "completed") == 0)
        state = paid && (strcmp(paid, "paid") == 0 || strcmp(paid, "no_payment_required") == 0)
                    ? "paid" : "awaiting_payment";
    json_t *metadata = json_object_get(cs, "metadata");
    f->billing = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?}", "kind",
                           "checkout", "session_id", id, "state", state, "stripe_status",
                           str_field(cs, "status"), "payment_status", paid, "stripe_customer",
                           str_field(cs, "customer"), "customer_id",
                           str_field(metadata, "customer_id"), "purpose",
                           str_field(metadata, "purpose"), "order_id",
                           str_field(metadata, "order_id"), "payment_intent",
                           str_field(cs, "payment_intent"));
    if (json_is_null(json_object_get(f->billing, "order_id")))
        json_object_del(f->billing, "order_id"); /* its absence is what counts */
    if (billing_amount(cs, "amount_total", "amount", f, err, errlen) < 0)
        return -1;
    if (billing_currency(cs, f, err, errlen) < 0)
        return -1;
    if (json_object_get(f->billing, "currency") == NULL) {
        snprintf(err, errlen, "a Checkout Session needs its currency");
        return -1;
    }
    return 0;
}

static int on_subscription(json_t *sub, const char *status, facts_t *f, char *err, size_t errlen)
{
    static const char *const statuses[] = {"incomplete", "incomplete_expired", "trialing", "active",
                                           "past_due", "unpaid", "paused", "canceled", NULL};
    const char *id = object_id(sub, "sub_", err, errlen);
    if (id == NULL)
        return -1;
    const char *st = status ? status : str_field(sub, "status");
    if (!one_of(st, statuses)) {
        snprintf(err, errlen, "subscription %s has an unknown status", id);
        return -1;
    }
    json_t *item = json_array_get(json_object_get(json_object_get(sub, "items"), "data"), 0);
    json_t *times[] = {json_object_get(sub, "current_period_start"),
                       json_object_get(sub, "current_period_end"),
                       json_object_get(sub, "canceled_at")};
    /* Newer API versions keep the period on the item. */
    if (times[0] == NULL)
        times[0] = json_object_get(item, "current_period_start");
    if (times[1] == NULL)
        times[1] = json_object_get(item, "current_period_end");
    f->billing = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:O?, s:b}", "kind", "subscription", "id",
                           id, "status", st, "stripe_customer", str_field(sub, "customer"),
                           "price_id", str_field(json_object_get(item, "price"), "id"),
                           "quantity", json_object_get(item, "quantity"),
                           "cancel_at_period_end",
                           json_is_true(json_object_get(sub, "cancel_at_period_end")));
    static const char *const names[] = {"current_period_start", "current_period_end",
                                        "canceled_at"};
    for (int i = 0; i < 3; i++) {
        if (json_is_integer(times[i]))
            json_object_set(f->billing, names[i], times[i]);
    }
    return 0;
}

static int on_invoice(json_t *in, const char *status, facts_t *f, char *err, size_t errlen)
{
    static const char *const statuses[] = {"draft", "open", "paid", "uncollectible", "void", NULL};
    const char *id = object_id(in, "in_", err, errlen);
    if (id == NULL)
        return -1;
    const char *st = status ? status : str_field(in, "status");
    if (!one_of(st, statuses)) {
        snprintf(err, errlen, "invoice %s has an unknown status", id);
        return -1;
    }
    f->billing = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:O?}", "kind", "invoice",
                           "id", id, "status", st, "stripe_customer", str_field(in, "customer"),
                           "subscription", str_field(in, "subscription"), "number",
                           str_field(in, "number"), "hosted_invoice_url",
                           str_field(in, "hosted_invoice_url"), "attempt_count",
                           json_object_get(in, "attempt_count"));
    if (billing_amount(in, "amount_due", "amount_due", f, err, errlen) < 0 ||
        billing_amount(in, "amount_paid", "amount_paid", f, err, errlen) < 0)
        return -1;
    return billing_currency(in, f, err, errlen);
}

/* Sets key to v when the event states it (v non-NULL, or n >= 0). */
static void set_str(json_t *o, const char *key, const char *v)
{
    if (v)
        json_object_set_new(o, key, json_string(v));
}

static void set_int(json_t *o, const char *key, int64_t n)
{
    if (n >= 0)
        json_object_set_new(o, key, json_integer((json_int_t)n));
}

/* The members of an event's top level that its batch element carries. */
typedef struct {
    const char *id, *type, *account;
    int64_t created;
    int livemode;
} top_t;

/* Writes the event as one element of the batch ps_apply_stripe_events takes
 * (see ps_stripe_batch_rows). A Connect event speaks for its account, a
 * platform event for the platform (no account, whatever its body says);
 * one of the other mode is refused here, where the mode is known. The
 * payload goes apart, as received: it parsed as JSON here. */
static void fill_json(ps_batch_msg_t *ec, const top_t *top, facts_t *f, int connect)
{
    json_t *o = json_object();
    char cur[4];
    set_str(o, "event_id", top->id);
    set_str(o, "type", top->type);
    if (connect) {
        json_object_set_new(o, "connect", json_true());
        set_str(o, "account", top->account);
    }
    if (top->livemode != system_livemode)
        set_str(o, "refusal", "livemode_mismatch");
    set_int(o, "created", top->created);
    json_object_set_new(o, "livemode", json_boolean(top->livemode));
    set_str(o, "message_id", ec->env.message_id);
    set_str(o, "payment_intent", f->payment_intent);
    set_str(o, "intent_status", f->intent_status);
    set_str(o, "gateway_status", f->gateway_status);
    set_int(o, "amount", f->amount);
    if (f->currency && ps_currency_normalize(f->currency, cur) == 0)
        set_str(o, "currency", cur);
    set_int(o, "captured", f->captured);
    set_int(o, "refunded", f->refunded);
    set_str(o, "charge_id", f->charge_id);
    set_str(o, "payment_id", f->payment_id);
    set_str(o, "customer", f->customer);
    set_str(o, "failure_code", f->failure_code);
    set_str(o, "failure_message", f->failure_message);
    if (f->refunds) {
        json_object_set_new(o, "refunds", f->refunds);
        f->refunds = NULL;
    }
    if (f->billing) {
        json_object_set_new(o, "billing", f->billing);
        f->billing = NULL;
    }
    if (f->voucher) {
        json_object_set_new(o, "voucher", f->voucher);
        f->voucher = NULL;
    }
    ec->json = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (ec->json == NULL)
        abort(); /* only for want of memory: everything in o is valid */
    ec->payload_apart = 1;
}

void stripe_events_init(int livemode)
{
    system_livemode = livemode;
}

static const struct handler *handler_for(const char *type)
{
    for (size_t i = 0; i < NHANDLERS; i++) {
        if (strcmp(handlers[i].type, type) == 0)
            return &handlers[i];
    }
    return NULL;
}

int stripe_event_handled(const char *type, int connect)
{
    const struct handler *h = handler_for(type);
    return h && !(connect && h->billing);
}

/* What the scanner reads of an event: its top level, and what a payment
 * intent states. */
enum {
    S_ID, S_TYPE, S_CREATED, S_LIVEMODE, S_ACCOUNT, S_OBJECT,
    S_OBJ_ID, S_OBJ_CUSTOMER, S_OBJ_AMOUNT, S_OBJ_CURRENCY,
    S_PI_STATUS, S_PI_PAYMENT_ID, S_PI_DECLINE_CODE, S_PI_CODE, S_PI_MESSAGE, S_PI_RECEIVED,
    S_PI_LATEST_CHARGE, S_OXXO, S_OXXO_NUMBER, S_OXXO_EXPIRES, S_OXXO_URL,
    S_CH_PAYMENT_INTENT, S_CH_CAPTURED, S_CH_AMOUNT_CAPTURED, S_CH_AMOUNT_REFUNDED, S_CH_REFUNDS,
    S_NFIELDS
};

static const char *const scan_paths[S_NFIELDS] = {
    [S_ID] = "id",
    [S_TYPE] = "type",
    [S_CREATED] = "created",
    [S_LIVEMODE] = "livemode",
    [S_ACCOUNT] = "account",
    [S_OBJECT] = "data.object",
    [S_OBJ_ID] = "data.object.id",
    [S_OBJ_CUSTOMER] = "data.object.customer",
    [S_OBJ_AMOUNT] = "data.object.amount",
    [S_OBJ_CURRENCY] = "data.object.currency",
    [S_PI_STATUS] = "data.object.status",
    [S_PI_PAYMENT_ID] = "data.object.metadata.payment_id",
    [S_PI_DECLINE_CODE] = "data.object.last_payment_error.decline_code",
    [S_PI_CODE] = "data.object.last_payment_error.code",
    [S_PI_MESSAGE] = "data.object.last_payment_error.message",
    [S_PI_RECEIVED] = "data.object.amount_received",
    [S_PI_LATEST_CHARGE] = "data.object.latest_charge",
    [S_OXXO] = "data.object.next_action.oxxo_display_details",
    [S_OXXO_NUMBER] = "data.object.next_action.oxxo_display_details.number",
    [S_OXXO_EXPIRES] = "data.object.next_action.oxxo_display_details.expires_after",
    [S_OXXO_URL] = "data.object.next_action.oxxo_display_details.hosted_voucher_url",
    [S_CH_PAYMENT_INTENT] = "data.object.payment_intent",
    [S_CH_CAPTURED] = "data.object.captured",
    [S_CH_AMOUNT_CAPTURED] = "data.object.amount_captured",
    [S_CH_AMOUNT_REFUNDED] = "data.object.amount_refunded",
    [S_CH_REFUNDS] = "data.object.refunds.data",
};

struct scanned {
    ps_json_field_t f[S_NFIELDS];
    char *dup[S_NFIELDS]; /* the strings too long for f[i].str; malloc'd */
};

/* Member i when it is a string that states something, however long. */
static const char *scanned_text(scanned_t *s, int i)
{
    ps_json_field_t *f = &s->f[i];
    if (f->kind != PS_JSON_STRING || f->str_len == 0)
        return NULL;
    if (f->str_len < sizeof(f->str))
        return f->str;
    if (s->dup[i] == NULL)
        s->dup[i] = ps_json_strdup(f);
    return s->dup[i];
}

static int scanned_amount(const scanned_t *s, int i, int64_t *out, char *err, size_t errlen)
{
    return amount_take(strrchr(scan_paths[i], '.') + 1, s->f[i].kind, s->f[i].integer, out, err,
                       errlen);
}

static int on_payment_intent(scanned_t *s, const char *status, facts_t *f, char *err,
                             size_t errlen)
{
    f->payment_intent = scanned_text(s, S_OBJ_ID);
    if (f->payment_intent == NULL || strncmp(f->payment_intent, "pi_", 3) != 0) {
        snprintf(err, errlen, "data.object.id is not a payment intent id");
        return -1;
    }
    f->intent_status = status;
    f->gateway_status = scanned_text(s, S_PI_STATUS);
    f->customer = scanned_text(s, S_OBJ_CUSTOMER);
    f->payment_id = scanned_text(s, S_PI_PAYMENT_ID);
    f->failure_code = scanned_text(s, S_PI_DECLINE_CODE) ? scanned_text(s, S_PI_DECLINE_CODE)
                                                         : scanned_text(s, S_PI_CODE);
    f->failure_message = scanned_text(s, S_PI_MESSAGE);
    if (scanned_amount(s, S_OBJ_AMOUNT, &f->amount, err, errlen) < 0 ||
        currency_take(scanned_text(s, S_OBJ_CURRENCY), f, err, errlen) < 0)
        return -1;
    if (strcmp(status, "completed") == 0) {
        if (scanned_amount(s, S_PI_RECEIVED, &f->captured, err, errlen) < 0)
            return -1;
        f->charge_id = scanned_text(s, S_PI_LATEST_CHARGE);
    }
    if (s->f[S_OXXO].kind == PS_JSON_OBJECT) {
        f->voucher = json_pack("{s:s, s:s?, s:s?}", "type", "oxxo", "number",
                               scanned_text(s, S_OXXO_NUMBER), "hosted_voucher_url",
                               scanned_text(s, S_OXXO_URL));
        if (s->f[S_OXXO_EXPIRES].kind == PS_JSON_INTEGER)
            json_object_set_new(f->voucher, "expires_at",
                                json_integer((json_int_t)s->f[S_OXXO_EXPIRES].integer));
    }
    return 0;
}

static int on_charge(scanned_t *s, const char *status, facts_t *f, char *err, size_t errlen)
{
    f->payment_intent = scanned_text(s, S_CH_PAYMENT_INTENT);
    f->charge_id = scanned_text(s, S_OBJ_ID);
    if (f->payment_intent == NULL)
        return 0; /* a charge outside payment intents: recorded only */
    f->customer = scanned_text(s, S_OBJ_CUSTOMER);
    if (scanned_amount(s, S_OBJ_AMOUNT, &f->amount, err, errlen) < 0 ||
        currency_take(scanned_text(s, S_OBJ_CURRENCY), f, err, errlen) < 0)
        return -1;
    if (s->f[S_CH_CAPTURED].kind != PS_JSON_TRUE)
        return 0; /* an authorisation: no money moved yet */
    f->intent_status = status;
    if (scanned_amount(s, S_CH_AMOUNT_CAPTURED, &f->captured, err, errlen) < 0 ||
        scanned_amount(s, S_CH_AMOUNT_REFUNDED, &f->refunded, err, errlen) < 0)
        return -1;
    const ps_json_field_t *list = &s->f[S_CH_REFUNDS];
    if (list->kind != PS_JSON_ARRAY)
        return 0;
    f->refunds = json_array();
    /* The list, read whole: it holds a charge's refunds, when it has any. */
    json_t *all = json_loadb(list->raw, list->raw_len, 0, NULL);
    if (all == NULL) {
        snprintf(err, errlen, "data.object.refunds.data cannot be read");
        return -1;
    }
    size_t i;
    json_t *re;
    json_array_foreach(all, i, re) {
        json_t *row = refund_row(re, err, errlen);
        if (row == NULL) {
            json_decref(all);
            return -1;
        }
        json_array_append_new(f->refunds, row);
    }
    json_decref(all);
    return 0;
}

/* Reads the event without building the document, which is enough for a
 * type paystream only records, a payment intent's and a charge's. Returns
 * 1 when done (ec filled or marked bad), 0 when the body's type must be
 * read whole. */
static int prepare_scanned(ps_batch_msg_t *ec, int connect)
{
    scanned_t s = {0};
    for (int i = 0; i < S_NFIELDS; i++)
        s.f[i].path = scan_paths[i];
    char err[256] = "";
    if (ps_json_scan(ec->msg->payload ? ec->msg->payload : "", ec->msg->len, s.f, S_NFIELDS, err,
                     sizeof(err)) < 0) {
        ps_batch_msg_bad(ec, "not a Stripe event", err);
        return 1;
    }
    top_t top = {.id = scanned_text(&s, S_ID), .type = scanned_text(&s, S_TYPE),
                 .account = scanned_text(&s, S_ACCOUNT), .created = s.f[S_CREATED].integer,
                 .livemode = s.f[S_LIVEMODE].kind == PS_JSON_TRUE};
    int done = 1;
    facts_t f = {.amount = -1, .captured = -1, .refunded = -1};
    const struct handler *h = top.type ? handler_for(top.type) : NULL;
    if (top.id == NULL || top.type == NULL || s.f[S_CREATED].kind != PS_JSON_INTEGER ||
        s.f[S_OBJECT].kind != PS_JSON_OBJECT)
        ps_batch_msg_bad(ec, "not a Stripe event", "id, type, created or data.object missing");
    else if (h && h->extract)
        done = 0;
    else if (h && h->scan(&s, h->status, &f, err, sizeof(err)) < 0)
        ps_batch_msg_bad(ec, "cannot apply", err);
    else
        fill_json(ec, &top, &f, connect);
    json_decref(f.refunds);
    json_decref(f.voucher);
    for (int i = 0; i < S_NFIELDS; i++)
        free(s.dup[i]);
    return done;
}

/* Reads the event whole: a refund or a billing object. */
static void prepare_parsed(ps_batch_msg_t *ec, int connect)
{
    json_error_t jerr;
    json_t *root = json_loadb(ec->msg->payload ? ec->msg->payload : "", ec->msg->len, 0, &jerr);
    json_t *object = json_object_get(json_object_get(root, "data"), "object");
    if (!json_is_object(object) || str_field(root, "id") == NULL ||
        str_field(root, "type") == NULL || !json_is_integer(json_object_get(root, "created"))) {
        ps_batch_msg_bad(ec, "not a Stripe event",
                        root ? "id, type, created or data.object missing" : jerr.text);
        json_decref(root);
        return;
    }
    facts_t f = {.amount = -1, .captured = -1, .refunded = -1};
    const char *type = str_field(root, "type");
    const struct handler *h = handler_for(type);
    char err[256] = "";
    if (h && h->extract && h->extract(object, h->status, &f, err, sizeof(err)) < 0) {
        ps_batch_msg_bad(ec, "cannot apply", err);
    } else {
        top_t top = {.id = str_field(root, "id"), .type = type,
                     .account = str_field(root, "account"),
                     .created = (int64_t)json_integer_value(json_object_get(root, "created")),
                     .livemode = json_is_true(json_object_get(root, "livemode"))};
        fill_json(ec, &top, &f, connect);
    }
    json_decref(f.refunds);
    json_decref(f.billing);
    json_decref(f.voucher);
    json_decref(root);
}

void stripe_event_prepare(ps_batch_msg_t *ec, int connect)
{
    if (!prepare_scanned(ec, connect))
        prepare_parsed(ec, connect);
}
