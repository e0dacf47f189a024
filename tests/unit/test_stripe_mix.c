/* The load tools' Stripe events (bench/stripe_mix.h): whole JSON, in
 * Stripe's shapes and order, sized as Stripe's, the same for the same
 * arguments. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stripe_mix.h"

static json_t *parse(const mix_intent_t *it, int i, char *id)
{
    char buf[MIX_EVENT_MAX];
    size_t len = mix_event(it, i, buf, id);
    cr_assert_lt(len, MIX_EVENT_MAX - 1, "event %s was cut", id);
    json_error_t err;
    json_t *e = json_loadb(buf, len, 0, &err);
    cr_assert_not_null(e, "%s: %s", id, err.text);
    return e;
}

static const char *str(json_t *o, const char *path)
{
    char key[64];
    const char *dot;
    while ((dot = strchr(path, '.')) != NULL) {
        snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
        o = json_object_get(o, key);
        path = dot + 1;
    }
    return json_string_value(json_object_get(o, path));
}

Test(stripe_mix, every_event_is_a_stripe_event_of_its_intent)
{
    size_t fates[4] = {0}, total = 0, events = 0;
    for (long n = 0; n < 2000; n++) {
        mix_intent_t it;
        mix_intent(&it, "t", n, 42, 1733140000);
        fates[it.fate]++;
        for (int i = 0; i < it.nevents; i++) {
            char id[64], buf[MIX_EVENT_MAX];
            json_t *e = parse(&it, i, id);
            cr_assert_str_eq(str(e, "id"), id);
            cr_assert_str_eq(str(e, "object"), "event");
            json_t *object = json_object_get(json_object_get(e, "data"), "object");
            const char *kind = str(object, "object");
            const char *pi = strcmp(kind, "payment_intent") == 0 ? str(object, "id")
                                                                  : str(object, "payment_intent");
            cr_assert_str_eq(pi, it.pi, "%s names another intent", id);
            total += mix_event(&it, i, buf, id);
            events++;
            json_decref(e);
        }
    }
    cr_assert(fates[MIX_SUCCEEDED] > fates[MIX_FAILED] && fates[MIX_FAILED] > 0 &&
              fates[MIX_REFUNDED] > 0 && fates[MIX_PARTLY_REFUNDED] > 0);
    cr_assert(total / events > 1700 && total / events < 2100, "average %zu bytes", total / events);
}

Test(stripe_mix, a_refunded_intent_ends_with_its_refund_and_the_same_call_makes_the_same)
{
    mix_intent_t a, b;
    for (long n = 0;; n++) {
        mix_intent(&a, "t", n, 7, 1733140000);
        if (a.fate == MIX_PARTLY_REFUNDED)
            break;
    }
    mix_intent(&b, "t", (long)strtol(a.tag + 2, NULL, 10), 7, 1733140000);
    cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0);
    cr_assert_str_eq(mix_status(&a), "partially_refunded");
    cr_assert(a.refunded > 0 && a.refunded < a.amount);
    char id[64];
    json_t *charge = parse(&a, 4, id), *refund = parse(&a, 5, id);
    cr_assert_str_eq(str(charge, "type"), "charge.refunded");
    json_t *c = json_object_get(json_object_get(charge, "data"), "object");
    cr_assert_eq(json_integer_value(json_object_get(c, "amount_refunded")), a.refunded);
    cr_assert_str_eq(str(refund, "type"), "refund.created");
    json_decref(charge);
    json_decref(refund);
}
