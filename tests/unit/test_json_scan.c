/* ps_json_scan: what it reads of Stripe's events is what jansson reads, and
 * it refuses what jansson refuses. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "paystream/json_scan.h"
#include "stripe_mix.h"

static const char *const paths[] = {"id", "object", "type", "created", "account", "livemode",
                                    "data.object", "data.object.id", "data.object.payment_intent",
                                    "data.object.customer"};
#define NPATHS (sizeof(paths) / sizeof(paths[0]))

static int scan(const char *doc, ps_json_field_t *f, char *err)
{
    for (size_t i = 0; i < NPATHS; i++)
        f[i].path = paths[i];
    return ps_json_scan(doc, strlen(doc), f, NPATHS, err, 160);
}

Test(json_scan, reads_every_event_of_the_mix_as_jansson_does)
{
    long checked = 0;
    for (long n = 0; n < 300; n++) {
        mix_intent_t it;
        mix_intent(&it, "scan", n, 7, 1790000000);
        for (int i = 0; i < it.nevents; i++) {
            char buf[MIX_EVENT_MAX], id[64], err[160];
            size_t len = mix_event(&it, i, buf, id);
            buf[len] = '\0';
            ps_json_field_t f[NPATHS];
            cr_assert_eq(scan(buf, f, err), 0, "%s: %s", err, buf);
            json_t *root = json_loads(buf, JSON_REJECT_DUPLICATES, NULL);
            json_t *object = json_object_get(json_object_get(root, "data"), "object");
            cr_assert_str_eq(ps_json_str(&f[0]), json_string_value(json_object_get(root, "id")));
            cr_assert_str_eq(ps_json_str(&f[0]), id);
            cr_assert_str_eq(ps_json_str(&f[1]), "event");
            cr_assert_str_eq(ps_json_str(&f[2]), json_string_value(json_object_get(root, "type")));
            cr_assert_eq(f[3].kind, PS_JSON_INTEGER);
            cr_assert_eq(f[3].integer, json_integer_value(json_object_get(root, "created")));
            cr_assert_eq(f[5].kind, PS_JSON_FALSE);
            cr_assert_eq(f[6].kind, PS_JSON_OBJECT);
            cr_assert_str_eq(ps_json_str(&f[7]), json_string_value(json_object_get(object, "id")));
            json_t *pi = json_object_get(object, "payment_intent");
            if (json_is_string(pi))
                cr_assert_str_eq(ps_json_str(&f[8]), json_string_value(pi));
            else
                cr_assert_neq(f[8].kind, PS_JSON_STRING);
            json_decref(root);
            checked++;
        }
    }
    cr_assert_gt(checked, 1000);
}

Test(json_scan, unescapes_strings_and_names)
{
    ps_json_field_t f[NPATHS];
    char err[160];
    cr_assert_eq(scan("{\"\\u0069d\":\"evt_\\u00e9\\ud83d\\ude00\\n\",\"data\":{\"object\":"
                      "{\"customer\":\"cus_\\\"q\\\"\"}}}", f, err), 0, "%s", err);
    cr_assert_str_eq(ps_json_str(&f[0]), "evt_\xc3\xa9\xf0\x9f\x98\x80\n");
    cr_assert_str_eq(ps_json_str(&f[9]), "cus_\"q\"");
    cr_assert_eq(f[2].kind, PS_JSON_ABSENT);
}

Test(json_scan, a_member_in_an_array_or_under_a_dotted_name_is_not_the_one_asked_for)
{
    ps_json_field_t f[NPATHS];
    char err[160];
    cr_assert_eq(scan("{\"data\":[{\"object\":{}}],\"data.object\":{\"id\":\"x\"},"
                      "\"list\":[{\"id\":\"evt_no\"}]}", f, err), 0, "%s", err);
    cr_assert_eq(f[0].kind, PS_JSON_ABSENT);
    cr_assert_eq(f[6].kind, PS_JSON_ABSENT);
    cr_assert_eq(f[7].kind, PS_JSON_ABSENT);
}

Test(json_scan, a_string_too_long_to_copy_is_still_measured)
{
    char doc[1200] = "{\"id\":\"";
    memset(doc + 7, 'a', 1000);
    strcpy(doc + 1007, "\"}");
    ps_json_field_t f[NPATHS];
    char err[160];
    cr_assert_eq(scan(doc, f, err), 0, "%s", err);
    cr_assert_eq(f[0].kind, PS_JSON_STRING);
    cr_assert_eq(f[0].str_len, 1000);
    cr_assert_null(ps_json_str(&f[0]));
    cr_assert_null(ps_json_text(&f[0]));
}

/* A string of any length, escapes and all, as jansson reads it. */
Test(json_scan, strdup_copies_a_string_of_any_length)
{
    char doc[1400] = "{\"id\":\"\\u00e9\\\"";
    size_t n = strlen(doc);
    memset(doc + n, 'a', 1000);
    strcpy(doc + n + 1000, "\\n\",\"created\":7}");
    ps_json_field_t f[NPATHS];
    char err[160];
    cr_assert_eq(scan(doc, f, err), 0, "%s", err);
    json_t *root = json_loads(doc, 0, NULL);
    char *id = ps_json_strdup(&f[0]);
    cr_assert_str_eq(id, json_string_value(json_object_get(root, "id")));
    cr_assert_eq(strlen(id), 1004);
    cr_assert_null(ps_json_strdup(&f[3]), "a number is no string");
    cr_assert_null(ps_json_strdup(&f[2]), "nor is an absent member");
    free(id);
    json_decref(root);
}

/* A container asked for is given as its text, to be read on its own. */
Test(json_scan, a_container_is_given_whole_as_sent)
{
    static const char doc[] = "{\"a\":{\"b\":[1, {\"c\":2}] },\"d\":[],\"e\":{}}";
    ps_json_field_t f[4] = {{.path = "a"}, {.path = "a.b"}, {.path = "d"}, {.path = "e"}};
    static const char *const want[] = {"{\"b\":[1, {\"c\":2}] }", "[1, {\"c\":2}]", "[]", "{}"};
    char err[160];
    cr_assert_eq(ps_json_scan(doc, strlen(doc), f, 4, err, sizeof(err)), 0, "%s", err);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(f[i].raw_len, strlen(want[i]), "%s", f[i].path);
        cr_assert(memcmp(f[i].raw, want[i], f[i].raw_len) == 0, "%s", f[i].path);
    }
    cr_assert_eq(f[1].kind, PS_JSON_ARRAY);
}

Test(json_scan, text_is_a_string_that_states_something)
{
    ps_json_field_t f[3] = {{.path = "a"}, {.path = "b"}, {.path = "c"}};
    char err[160];
    cr_assert_eq(ps_json_scan("{\"a\":\"x\",\"b\":\"\",\"c\":7}", 22, f, 3, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_str_eq(ps_json_text(&f[0]), "x");
    cr_assert_str_eq(ps_json_str(&f[1]), "");
    cr_assert_null(ps_json_text(&f[1]));
    cr_assert_null(ps_json_text(&f[2]));
}

Test(json_scan, refuses_what_jansson_refuses)
{
    static const char *const bad[] = {
        "", "   ", "\"evt\"", "12", "null", "{", "{\"id\"}", "{\"id\":}", "{\"id\":1,}", "[1,]",
        "{\"id\":1}}", "{\"id\":1} x", "{\"id\":01}", "{\"id\":-}", "{\"id\":1.}", "{\"id\":1e}",
        "{\"id\":tru}", "{\"id\":\"a\x01\"}", "{\"id\":\"\\x\"}", "{\"id\":\"\\u12\"}",
        "{\"id\":\"\\ud800\"}", "{\"id\":\"\\udc00\"}", "{\"id\":\"\\ud800\\u0041\"}",
        "{\"id\":\"\\u0000\"}", "{\"id\":\"\xc0\xaf\"}", "{\"id\":\"\xed\xa0\x80\"}",
        "{\"id\":\"\xf4\x90\x80\x80\"}", "{\"id\":\"\xe2\x82\"}", "{\"id\":9223372036854775808}",
        "{\"id\":-9223372036854775809}", "{\"id\":1e400}", "{\"id\":\"unterminated}",
        "{'id':1}", "{\"id\":1 \"type\":2}", "[1 2]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ps_json_field_t f[NPATHS];
        char err[160] = "";
        cr_assert_eq(scan(bad[i], f, err), -1, "accepted: %s", bad[i]);
        cr_assert(strstr(err, " at byte "), "%s", err);
        cr_assert_null(json_loads(bad[i], 0, NULL), "jansson accepts %s", bad[i]);
    }
}

Test(json_scan, refuses_a_member_asked_for_given_twice)
{
    ps_json_field_t f[NPATHS];
    char err[160] = "";
    cr_assert_eq(scan("{\"id\":\"evt_a\",\"type\":\"x\",\"id\":\"evt_b\"}", f, err), -1);
    cr_assert(strstr(err, "duplicate"), "%s", err);
    cr_assert_eq(scan("{\"data\":{\"object\":{}},\"data\":{\"object\":{}}}", f, err), -1);
    cr_assert_eq(scan("{\"other\":1,\"other\":2,\"id\":\"evt_a\"}", f, err), 0, "%s", err);
}

Test(json_scan, nesting_is_limited_as_in_jansson)
{
    static char deep[2 * 2100 + 1];
    ps_json_field_t f[NPATHS];
    char err[160];
    for (int depth = 2048; depth <= 2049; depth++) {
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        deep[2 * depth] = '\0';
        json_t *j = json_loads(deep, 0, NULL);
        int want = j ? 0 : -1;
        json_decref(j);
        cr_assert_eq(scan(deep, f, err), want, "depth %d: %s", depth, err);
    }
}

Test(json_scan, accepts_numbers_and_literals_of_every_form)
{
    ps_json_field_t f[NPATHS];
    char err[160];
    cr_assert_eq(scan(" {\"created\":-9223372036854775808,\"livemode\":true,\"account\":null,"
                      "\"x\":[0,-0,1.5,-2e-3,3E+2,1e-400,\"\",{},[]]}\r\n\t", f, err), 0, "%s", err);
    cr_assert_eq(f[3].kind, PS_JSON_INTEGER);
    cr_assert_eq(f[3].integer, INT64_MIN);
    cr_assert_eq(f[5].kind, PS_JSON_TRUE);
    cr_assert_eq(f[4].kind, PS_JSON_NULL);
}

Test(json_scan, reads_array_elements_by_index_and_numbers_as_sent)
{
    ps_json_field_t f[] = {{.path = "items[1].unit_price"}, {.path = "items[0]"},
                           {.path = "items[2]"}, {.path = "deep[0][1]"}, {.path = "total"}};
    const char *doc = "{\"items\":[{\"unit_price\":1},{\"unit_price\":29.990},7e-2],"
                      "\"deep\":[[0,{\"x\":[]}]],\"total\":-0}";
    char err[160];
    cr_assert_eq(ps_json_scan(doc, strlen(doc), f, 5, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(f[0].kind, PS_JSON_REAL);
    cr_assert_eq(f[0].raw_len, 6);
    cr_assert(memcmp(f[0].raw, "29.990", 6) == 0);
    cr_assert_eq(f[1].kind, PS_JSON_OBJECT);
    cr_assert_eq(f[2].kind, PS_JSON_REAL);
    cr_assert(f[2].raw_len == 4 && memcmp(f[2].raw, "7e-2", 4) == 0);
    cr_assert_eq(f[3].kind, PS_JSON_OBJECT);
    cr_assert_eq(f[4].kind, PS_JSON_INTEGER);
    cr_assert(f[4].raw_len == 2 && memcmp(f[4].raw, "-0", 2) == 0);
}

/* Containers no field lies in are still checked, but not looked into: a
 * name that only begins like a field's path leads nowhere. */
Test(json_scan, finds_fields_beside_containers_it_does_not_look_into)
{
    ps_json_field_t f[] = {{.path = "a.b.c"}, {.path = "x[1].y"}, {.path = "ab"}};
    const char *doc = "{\"ab\":{\"c\":6},\"a\":{\"bb\":{\"c\":8},\"b\":{\"c\":5}},"
                      "\"x\":[{\"y\":1},{\"y\":2}],\"a2\":{\"b\":{\"c\":7}}}";
    char err[160];
    cr_assert_eq(ps_json_scan(doc, strlen(doc), f, 3, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(f[0].kind, PS_JSON_INTEGER);
    cr_assert_eq(f[0].integer, 5);
    cr_assert_eq(f[1].kind, PS_JSON_INTEGER);
    cr_assert_eq(f[1].integer, 2);
    cr_assert_eq(f[2].kind, PS_JSON_OBJECT);
    const char *bad = "{\"a2\":{\"b\":[1,}}";
    cr_assert_eq(ps_json_scan(bad, strlen(bad), f, 3, err, sizeof(err)), -1);
}

Test(json_scan, an_empty_key_is_not_the_document)
{
    ps_json_field_t f[] = {{.path = ""}, {.path = "id"}};
    const char *doc = "{\"\":[1],\"id\":\"evt_1\"}";
    char err[160];
    cr_assert_eq(ps_json_scan(doc, strlen(doc), f, 2, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(f[0].kind, PS_JSON_OBJECT);
    cr_assert_str_eq(ps_json_str(&f[1]), "evt_1");
}
