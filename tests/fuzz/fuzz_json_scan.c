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
                                    "data.object.id", "data.object.customer", "account"};
#define NPATHS (sizeof(paths) / sizeof(paths[0]))

static json_t *at(json_t *root, const char *path)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *v = root;
    for (char *save, *name = strtok_r(buf, ".", &save); name; name = strtok_r(NULL, ".", &save))
        v = json_object_get(v, name);
    return v;
}

static ps_json_kind_t kind_of(json_t *v)
{
    switch (v ? json_typeof(v) : -1) {
    case JSON_OBJECT: return PS_JSON_OBJECT;
    case JSON_ARRAY: return PS_JSON_ARRAY;
    case JSON_STRING: return PS_JSON_STRING;
    case JSON_INTEGER: return PS_JSON_INTEGER;
    case JSON_REAL: return PS_JSON_REAL;
    case JSON_TRUE: return PS_JSON_TRUE;
    case JSON_FALSE: return PS_JSON_FALSE;
    case JSON_NULL: return PS_JSON_NULL;
    default: return PS_JSON_ABSENT;
    }
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
            FUZZ_CHECK(f[i].kind == kind_of(v));
            if (f[i].kind == PS_JSON_INTEGER)
                FUZZ_CHECK(f[i].integer == json_integer_value(v));
            if (f[i].kind == PS_JSON_STRING) {
                FUZZ_CHECK(f[i].str_len == json_string_length(v));
                if (ps_json_str(&f[i]))
                    FUZZ_CHECK(memcmp(f[i].str, json_string_value(v), f[i].str_len) == 0);
            }
        }
    }
    json_decref(root);
    return 0;
}
