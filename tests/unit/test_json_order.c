/* ps_json_jsonb_order: the same document, each object's members in jsonb's
 * order; what is not one JSON value is refused. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "paystream/json_order.h"
#include "stripe_mix.h"

/* The document reordered, NUL-terminated, or NULL when refused. */
static char *order(const char *doc)
{
    size_t len = strlen(doc);
    char *out = malloc(len + 1);
    long n = ps_json_jsonb_order(doc, len, out);
    if (n < 0) {
        free(out);
        return NULL;
    }
    cr_assert_leq(n, (long)len);
    out[n] = '\0';
    return out;
}

/* Whether every object under v has its keys in jsonb's order (jansson keeps
 * the order it read them in). */
static int in_jsonb_order(json_t *v)
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!in_jsonb_order(json_array_get(v, i)))
                return 0;
        return 1;
    }
    if (!json_is_object(v))
        return 1;
    const char *prev = NULL, *key;
    json_t *member;
    json_object_foreach(v, key, member) {
        if (prev && (strlen(prev) > strlen(key) ||
                     (strlen(prev) == strlen(key) && strcmp(prev, key) > 0)))
            return 0;
        if (!in_jsonb_order(member))
            return 0;
        prev = key;
    }
    return 1;
}

Test(json_order, every_event_of_the_mix_is_the_same_document_in_jsonb_order)
{
    long checked = 0, moved = 0;
    for (long n = 0; n < 300; n++) {
        mix_intent_t it;
        mix_intent(&it, "order", n, 11, 1790000000);
        for (int i = 0; i < it.nevents; i++) {
            char buf[MIX_EVENT_MAX + 1], id[64];
            buf[mix_event(&it, i, buf, id)] = '\0';
            char *ordered = order(buf);
            cr_assert_not_null(ordered, "refused: %s", buf);
            json_t *before = json_loads(buf, 0, NULL), *after = json_loads(ordered, 0, NULL);
            cr_assert_not_null(after, "not JSON: %s", ordered);
            cr_assert(json_equal(before, after), "changed: %s", ordered);
            cr_assert(in_jsonb_order(after), "out of order: %s", ordered);
            moved += strcmp(buf, ordered) != 0;
            json_decref(before);
            json_decref(after);
            free(ordered);
            checked++;
        }
    }
    cr_assert_gt(checked, 1000);
    cr_assert_eq(moved, checked, "each event of the mix has members to move");
}

Test(json_order, members_of_the_same_key_keep_their_order)
{
    char *o = order("{\"b\":1,\"a\":2,\"b\":3,\"a\":4}");
    cr_assert_str_eq(o, "{\"a\":2,\"a\":4,\"b\":1,\"b\":3}");
    free(o);
}

Test(json_order, a_string_ends_at_a_quote_after_an_even_run_of_backslashes)
{
    char *o = order("{\"b\":\"x\\\\\",\"a\":\"\\\\\\\"\"}");
    cr_assert_str_eq(o, "{\"a\":\"\\\\\\\"\",\"b\":\"x\\\\\"}");
    free(o);
}

Test(json_order, whitespace_between_tokens_goes_and_strings_stay_as_written)
{
    char *o = order(" {\n \"bb\" : \"x y\\\"}, \\u0041\" ,\t\"a\":[ 1 , {\"dd\":true,\"c\":-1.5e3} ,"
                    "[ ] ,{ } ], \"\\u0061\" : null }\r\n");
    cr_assert_str_eq(o, "{\"a\":[1,{\"c\":-1.5e3,\"dd\":true},[],{}],\"bb\":\"x y\\\"}, \\u0041\","
                        "\"\\u0061\":null}");
    free(o);
}

Test(json_order, what_is_not_one_json_value_is_refused)
{
    static const char *const bad[] = {
        "", " ", "{", "}", "[1 2]", "{\"a\" 1}", "{\"a\":1,}", "{\"a\":1} x", "{\"a\":1}{}",
        "[1,]", "\"open", "{a:1}", "{\"a\":}", "[,1]", "{\"a\":1 \"b\":2}",
        "[tru e]", "\"\\\"", "{\"a\":@}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_null(order(bad[i]), "accepted: %s", bad[i]);
}

Test(json_order, nesting_and_members_past_the_limits_are_left_to_postgresql)
{
    char deep[2 * PS_JSON_ORDER_DEPTH + 3];
    memset(deep, '[', PS_JSON_ORDER_DEPTH);
    memset(deep + PS_JSON_ORDER_DEPTH, ']', PS_JSON_ORDER_DEPTH);
    deep[2 * PS_JSON_ORDER_DEPTH] = '\0';
    char *o = order(deep);
    cr_assert_str_eq(o, deep);
    free(o);
    char deeper[2 * PS_JSON_ORDER_DEPTH + 3];
    memset(deeper, '[', PS_JSON_ORDER_DEPTH + 1);
    memset(deeper + PS_JSON_ORDER_DEPTH + 1, ']', PS_JSON_ORDER_DEPTH + 1);
    deeper[2 * PS_JSON_ORDER_DEPTH + 2] = '\0';
    cr_assert_null(order(deeper));

    char many[16 * PS_JSON_ORDER_MEMBERS], *w = many;
    *w++ = '{';
    for (int i = PS_JSON_ORDER_MEMBERS; i > 0; i--)
        w += sprintf(w, "%s\"k%d\":%d", i == PS_JSON_ORDER_MEMBERS ? "" : ",", i, i);
    strcpy(w, "}");
    o = order(many);
    cr_assert_not_null(o, "as many members as the limit are ordered");
    cr_assert_eq(strncmp(o, "{\"k1\":1,\"k2\":2,", 15), 0, "%.40s", o);
    free(o);
    w[0] = ',';
    strcpy(w + 1, "\"k0\":0}");
    cr_assert_null(order(many), "one more are not");
}
