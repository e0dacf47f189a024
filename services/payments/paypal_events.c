/* PayPal webhook events: from a consumed message of paystream.paypal.events
 * (the event as PayPal sent it, verified by the intake) to its element of
 * the batch that ps_apply_paypal_events applies (schemas/functions/
 * paypal.sql). Only the facts an event states about PayPal's own objects
 * are taken: its order, its capture or refund, their status and amount. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/money.h"
#include "paystream/util.h"

#define PAYPAL_ID_MAX 128

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Whether s is an id PayPal could have made: printable, no spaces. */
static int id_ok(const char *s)
{
    return s == NULL || ps_is_token(s, PAYPAL_ID_MAX);
}

/* The capture a refund gives back from: the last segment of its "up" link
 * (.../v2/payments/captures/<id>). */
static const char *up_capture(json_t *refund)
{
    size_t i;
    json_t *link;
    json_array_foreach(json_object_get(refund, "links"), i, link) {
        const char *rel = str(link, "rel"), *href = str(link, "href");
        const char *at = href ? strstr(href, "/captures/") : NULL;
        if (rel && strcmp(rel, "up") == 0 && at)
            return at + strlen("/captures/");
    }
    return NULL;
}

/* An RFC 3339 time as PayPal writes it ("2026-12-02T19:10:00Z"), roughly:
 * PostgreSQL reads it exactly. */
static int time_ok(const char *s)
{
    int y, mo, d, h, mi, sec;
    return s && strlen(s) <= 40 &&
           sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) == 6;
}

void paypal_event_prepare(ps_batch_msg_t *ec)
{
    json_error_t jerr;
    json_t *ev = json_loadb(ec->msg->payload ? ec->msg->payload : "", ec->msg->len,
                            JSON_REJECT_DUPLICATES, &jerr);
    json_t *res = json_object_get(ev, "resource");
    const char *id = str(ev, "id"), *type = str(ev, "event_type");
    const char *created = str(ev, "create_time");
    if (ev == NULL || !json_is_object(res) || id == NULL || !id_ok(id) || type == NULL ||
        strlen(type) > 80 || !time_ok(created)) {
        ps_batch_msg_bad(ec, "not a PayPal event",
                         ev ? "id, event_type, create_time and resource are required" : jerr.text);
        json_decref(ev);
        return;
    }
    const char *order = NULL, *capture = NULL, *refund = NULL;
    if (strncmp(type, "CHECKOUT.ORDER.", 15) == 0) {
        order = str(res, "id");
    } else if (strcmp(type, "PAYMENT.CAPTURE.REFUNDED") == 0 ||
               strcmp(type, "PAYMENT.CAPTURE.REVERSED") == 0) {
        refund = str(res, "id");
        capture = up_capture(res);
    } else if (strncmp(type, "PAYMENT.CAPTURE.", 16) == 0) {
        capture = str(res, "id");
        order = str(json_object_get(json_object_get(res, "supplementary_data"), "related_ids"),
                    "order_id");
    }
    json_t *amount = json_object_get(res, "amount");
    const char *value = str(amount, "value"), *currency = str(amount, "currency_code");
    char cur[4], why[128];
    int64_t minor = -1;
    if (value && (currency == NULL || ps_currency_normalize(currency, cur) < 0 ||
                  ps_money_parse(value, cur, &minor, why, sizeof(why)) < 0)) {
        ps_batch_msg_bad(ec, "not a PayPal event", "resource.amount is not an amount");
        json_decref(ev);
        return;
    }
    if (!id_ok(order) || !id_ok(capture) || !id_ok(refund)) {
        ps_batch_msg_bad(ec, "not a PayPal event", "an id of the resource is malformed");
        json_decref(ev);
        return;
    }
    json_t *el = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:O}", "message_id",
                           ec->env.message_id, "event_id", id, "type", type, "created", created,
                           "order_id", order, "capture_id", capture, "refund_id", refund,
                           "status", str(res, "status"), "payload", ev);
    if (minor >= 0) {
        json_object_set_new(el, "amount_minor", json_integer(minor));
        json_object_set_new(el, "currency", json_string(cur));
    }
    ec->json = json_dumps(el, JSON_COMPACT);
    json_decref(el);
    json_decref(ev);
    if (ec->json == NULL)
        abort(); /* only for want of memory */
}
