/* ps_json_scan against jansson: a document is JSON for one exactly when it is
 * for the other, and each member asked for has the kind and value jansson
 * reads. Two exceptions, where ps_json_scan is the stricter: a duplicate of
 * a member asked for (jansson without JSON_REJECT_DUPLICATES keeps the
 * last), and a NUL byte right after a number or a literal, which jansson
 * skips and RFC 8259 (and PostgreSQL's jsonb) refuse. */
#include "fuzz.h"
#include "paystream/json_scan.h"

#include <jansson.h>

static const char *const paths[] = {"id", "type", "created", "data", "data.object",
                                    "data.object.id", "data.object.customer", "account",
                                    "items[1].unit_price", "[0]", "[1][0]"};
#define NPATHS (sizeof(paths) / sizeof(paths[0]))

/* The value at path ("a.b[2].c", "" the root) as jansson reads it. */
static json_t *at(json_t *root, const char *path)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *v = root;
    for (char *save, *part = strtok_r(buf, ".", &save); part; part = strtok_r(NULL, ".", &save)) {
        char *bracket = strchr(part, '[');
        if (bracket != part) {
            if (bracket)
                *bracket = '\0';
            v = json_object_get(v, part);
            if (bracket)
                *bracket = '[';
        }
        for (char *b = bracket; b; b = strchr(b + 1, '['))
            v = json_array_get(v, strtoul(b + 1, NULL, 10));
    }
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ps_json_field_t f[NPATHS];
    for (size_t i = 0; i < NPATHS; i++)
        f[i].path = paths[i];
    char err[160] = "";
    int rc = ps_json_scan((const char *)data, size, f, NPATHS, err, sizeof(err));
    json_t *root = json_loadb((const char *)data, size, 0, NULL);
    if (rc < 0) {
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(root == NULL || strstr(err, "duplicate") != NULL || memchr(data, 0, size));
    } else {
        FUZZ_CHECK(root != NULL);
        for (size_t i = 0; i < NPATHS; i++) {
            json_t *v = at(root, paths[i]);
            FUZZ_CHECK(f[i].kind == ps_json_kind_of(v));
            if (f[i].kind == PS_JSON_INTEGER)
                FUZZ_CHECK(f[i].integer == json_integer_value(v));
            if (f[i].kind == PS_JSON_INTEGER || f[i].kind == PS_JSON_REAL) {
                /* The number's own text: it reads as the same value. */
                char text[400];
                FUZZ_CHECK(f[i].raw != NULL && f[i].raw_len > 0);
                if (f[i].raw_len < sizeof(text)) {
                    memcpy(text, f[i].raw, f[i].raw_len);
                    text[f[i].raw_len] = '\0';
                    json_t *again = json_loads(text, JSON_DECODE_ANY, NULL);
                    FUZZ_CHECK(again != NULL && json_equal(again, v));
                    json_decref(again);
                }
            }
            if (f[i].kind == PS_JSON_STRING) {
                FUZZ_CHECK(f[i].str_len == json_string_length(v));
                if (ps_json_str(&f[i]))
                    FUZZ_CHECK(memcmp(f[i].str, json_string_value(v), f[i].str_len) == 0);
                char *whole = ps_json_strdup(&f[i]);
                FUZZ_CHECK(memcmp(whole, json_string_value(v), f[i].str_len + 1) == 0);
                free(whole);
            }
            if (f[i].kind == PS_JSON_OBJECT || f[i].kind == PS_JSON_ARRAY) {
                /* The container's own text: it reads as the same value. */
                json_t *again = json_loadb(f[i].raw, f[i].raw_len, 0, NULL);
                FUZZ_CHECK(again != NULL && json_equal(again, v));
                json_decref(again);
            }
        }
    }
    json_decref(root);
    return 0;
}
