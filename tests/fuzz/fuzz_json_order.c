/* ps_json_jsonb_order against jansson: what it writes is the document it
 * read (jansson reads both as the same value, or neither), no longer, with
 * each object's members in jsonb's order when no key holds an escape. */
#include "fuzz.h"
#include "paystream/json_order.h"

#include <jansson.h>

/* Whether every object under v has its keys in jsonb's order. */
static int in_jsonb_order(json_t *v)
{
    size_t i;
    json_t *member;
    const char *prev = NULL, *key;
    if (json_is_array(v)) {
        json_array_foreach(v, i, member) {
            if (!in_jsonb_order(member))
                return 0;
        }
        return 1;
    }
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = malloc(size ? size : 1);
    FUZZ_CHECK(out != NULL);
    long n = ps_json_jsonb_order((const char *)data, size, out);
    if (n >= 0) {
        FUZZ_CHECK((size_t)n <= size);
        json_t *before = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
        json_t *after = json_loadb(out, (size_t)n, JSON_DECODE_ANY, NULL);
        FUZZ_CHECK((before == NULL) == (after == NULL));
        if (before) {
            FUZZ_CHECK(json_equal(before, after));
            if (memchr(data, '\\', size) == NULL)
                FUZZ_CHECK(in_jsonb_order(after));
        }
        json_decref(before);
        json_decref(after);
    }
    free(out);
    return 0;
}
