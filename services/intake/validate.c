/* Checking request bodies field by field, with errors that name the field. */
#include <stdio.h>
#include <string.h>

#include "validate.h"
#include "paystream/json_scan.h"
#include "paystream/money.h"

#define PARAM_MAX 96

static void param_name(char *out, const char *where, const char *name)
{
    snprintf(out, PARAM_MAX, "%s%s%s", where, *where ? "." : "", name);
}

/* Answers 400 "<param> <what>" with param where.name; returns -1. */
static int invalid(api_call_t *call, const char *where, const char *name, const char *what)
{
    char param[PARAM_MAX];
    param_name(param, where, name);
    api_errorf(call, 400, "parameter_invalid", param, "%s %s", param, what);
    return -1;
}

json_t *validate_body(api_call_t *call)

{
    const request_t *req = call->req;
    if (req->len == 0) {
        api_error(call, 400, "body_missing", "the body is empty; send a JSON object", NULL);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(req->body, req->len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        /* The parser quotes the body near the fault: bytes of any kind. */
        char why[JSON_ERROR_TEXT_LENGTH];
        ps_printable(why, jerr.text, sizeof(why));
        api_errorf(call, 400, "malformed_json", NULL,
                   "the body is not valid JSON: %s (line %d, column %d)", why, jerr.line,
                   jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        api_error(call, 400, "malformed_json", "the body must be a JSON object", NULL);
        return NULL;
    }
    return root;
}

int validate_fields(api_call_t *call, json_t *obj, const char *where, const char *const *allowed)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key) != 0)
            i++;
        if (allowed[i] == NULL) {
            char shown[48] = "\"\""; /* an empty key, shown as one */
            if (*key)
                ps_printable(shown, key, sizeof(shown));
            return invalid(call, where, shown, "is not a field of this request");
        }
    }
    return 0;
}

int validate_string(api_call_t *call, json_t *obj, const char *where, const char *name,
                    int required, size_t maxlen, const char **out)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (v == NULL && !required)
        return 0;
    if (v == NULL)
        return invalid(call, where, name, "is required");
    if (!json_is_string(v))
        return invalid(call, where, name, "must be a string");
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len == 0 || len > maxlen || strlen(s) != len) {
        char why[64];
        snprintf(why, sizeof(why), "must be a string of 1 to %zu bytes", maxlen);
        return invalid(call, where, name, why);
    }
    *out = s;
    return 0;
}

int validate_name(api_call_t *call, json_t *obj, const char *where, const char *name,
                  const char **out)
{
    if (validate_string(call, obj, where, name, 0, API_NAME_MAX, out) < 0)
        return -1;
    for (const char *c = *out; c && *c; c++) {
        if ((unsigned char)*c < ' ' || *c == 0x7f)
            return invalid(call, where, name, "must not hold line breaks or control characters");
    }
    return 0;
}

int validate_email(api_call_t *call, json_t *obj, const char *where, const char *name,
                   int required, const char **out)
{
    if (validate_string(call, obj, where, name, required, API_EMAIL_MAX, out) < 0)
        return -1;
    const char *s = *out, *at = s ? strchr(s, '@') : NULL;
    if (s == NULL)
        return 0;
    int ok = at && at != s && at[1] && strchr(at + 1, '@') == NULL && strchr(at + 1, '.');
    for (const char *c = s; ok && *c; c++)
        ok = (unsigned char)*c > ' ' && (unsigned char)*c < 0x7f &&
             strchr("<>,;\"()[]\\", *c) == NULL;
    return ok ? 0 : invalid(call, where, name, "must be an email address");
}

int validate_int(api_call_t *call, json_t *obj, const char *where, const char *name, int64_t min,
                 int64_t max, int64_t *out)
{
    json_t *v = json_object_get(obj, name);
    if (v == NULL)
        return invalid(call, where, name, "is required");
    char why[80];
    snprintf(why, sizeof(why), "must be a whole number from %lld to %lld", (long long)min,
             (long long)max);
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return invalid(call, where, name, why);
    *out = json_integer_value(v);
    return 0;
}

int validate_currency(api_call_t *call, json_t *obj, const char *where, const char *name,
                      char out[4])
{
    const char *code;
    if (validate_string(call, obj, where, name, 1, 3, &code) < 0)
        return -1;
    if (ps_currency_normalize(code, out) < 0)
        return invalid(call, where, name, "must be an ISO 4217 currency code such as \"usd\"");
    return 0;
}

/* An amount sent as a JSON number, read exactly from its text in the body
 * (jansson keeps only a double of it): from number when the caller scanned
 * for it already, else by a scan for this one field. */
static int number_amount(api_call_t *call, const char *where, const char *name,
                         const char *currency, const ps_json_field_t *number, int64_t *out,
                         char *why, size_t whylen)
{
    char path[PARAM_MAX];
    ps_json_field_t f = {.path = path};
    if (number == NULL) {
        param_name(path, where, name);
        char err[128];
        /* jansson read the body, so the scan does too, but for the bytes it
         * is stricter on (json_scan.h). */
        if (ps_json_scan(call->req->body, call->req->len, &f, 1, err, sizeof(err)) < 0) {
            snprintf(why, whylen, "cannot be read from the body: %s", err);
            return -1;
        }
        number = &f;
    }
    if (number->raw == NULL) {
        snprintf(why, whylen, "cannot be read from the body: not found");
        return -1;
    }
    return ps_money_parse_json_number(number->raw, number->raw_len, currency, out, why, whylen);
}

int validate_amount(api_call_t *call, json_t *obj, const char *where, const char *name,
                    const char *currency, int64_t min, const ps_json_field_t *number,
                    int64_t *out)
{
    json_t *v = json_object_get(obj, name);
    if (v == NULL)
        return invalid(call, where, name, "is required");
    if (!json_is_string(v) && !json_is_number(v))
        return invalid(call, where, name, "must be an amount such as \"29.99\" or 29.99");
    char why[160], what[190];
    int rc = json_is_string(v)
                 ? ps_money_parse(json_string_value(v), currency, out, why, sizeof(why))
                 : number_amount(call, where, name, currency, number, out, why, sizeof(why));
    if (rc < 0) {
        snprintf(what, sizeof(what), "is not a valid amount: %s", why);
        return invalid(call, where, name, what);
    }
    if (*out < min)
        return invalid(call, where, name, "must be above zero");
    if (*out > API_AMOUNT_MAX)
        return invalid(call, where, name, "is larger than this server accepts");
    return 0;
}

ps_json_field_t *validate_scan_numbers(api_call_t *call, json_t *array, const char *where,
                                       const char *name)
{
    size_t n = json_array_size(array);
    ps_json_field_t *fields = ps_xcalloc(n ? n : 1, sizeof(*fields) + PARAM_MAX);
    char *paths = (char *)(fields + (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        char *path = paths + i * PARAM_MAX;
        snprintf(path, PARAM_MAX, "%s[%zu].%s", where, i, name);
        fields[i].path = path;
    }
    char err[128];
    /* A body that jansson read and the scan does not (json_scan.h) leaves
     * every raw NULL: each numeric amount is then refused by name. */
    if (ps_json_scan(call->req->body, call->req->len, fields, n, err, sizeof(err)) < 0)
        for (size_t i = 0; i < n; i++)
            fields[i].raw = NULL;
    return fields;
}

/* Whether every value in v is a scalar or an object within depth levels. */
static int shallow(json_t *v, int depth)
{
    if (json_is_array(v) || depth < 0)
        return 0;
    if (!json_is_object(v))
        return !json_is_null(v);
    const char *key;
    json_t *member;
    json_object_foreach(v, key, member) {
        if (!shallow(member, depth - 1))
            return 0;
    }
    return 1;
}

int validate_object(api_call_t *call, json_t *obj, const char *where, const char *name,
                    int max_depth, size_t max_bytes, json_t **out)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (v == NULL)
        return 0;
    char why[112];
    snprintf(why, sizeof(why),
             "must be an object of strings, numbers or objects, nested %d deep at most", max_depth);
    if (!json_is_object(v) || !shallow(v, max_depth))
        return invalid(call, where, name, why);
    if (json_dumpb(v, NULL, 0, JSON_COMPACT) > max_bytes) {
        snprintf(why, sizeof(why), "must be an object of at most %zu bytes", max_bytes);
        return invalid(call, where, name, why);
    }
    *out = v;
    return 0;
}
