/* Checking request bodies field by field. Each check that fails answers
 * 400 with the offending field as param ("items[2].quantity") and returns
 * -1; where is the path of obj in the body ("" at the top). */
#ifndef PAYSTREAM_INTAKE_VALIDATE_H
#define PAYSTREAM_INTAKE_VALIDATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "call.h"
#include "paystream/json_scan.h"

#define API_AMOUNT_MAX 1000000000000LL /* largest amount, in minor units */
#define API_EMAIL_MAX 254               /* longest email address (RFC 5321 path) */
#define API_NAME_MAX 200                /* longest name of a person or an item, in bytes */

/* The body as a JSON object (duplicate keys refused), or NULL after 400.
 * Free it with json_decref. */
json_t *validate_body(api_call_t *call);
/* Refuses any member of obj not in allowed (NULL-terminated). */
int validate_fields(api_call_t *call, json_t *obj, const char *where, const char *const *allowed);
/* A string of 1 to maxlen bytes; *out (borrowed from obj) is NULL when
 * absent and not required. */
int validate_string(api_call_t *call, json_t *obj, const char *where, const char *name,
                    int required, size_t maxlen, const char **out);
/* A name of a person or an item: 1 to API_NAME_MAX bytes of text on one
 * line (no control characters); *out is NULL when absent. */
int validate_name(api_call_t *call, json_t *obj, const char *where, const char *name,
                  const char **out);
/* An email address of at most API_EMAIL_MAX bytes, one that is safe in a
 * mail header; *out is NULL when absent and not required. */
int validate_email(api_call_t *call, json_t *obj, const char *where, const char *name,
                   int required, const char **out);
/* An integer within [min, max]. */
int validate_int(api_call_t *call, json_t *obj, const char *where, const char *name, int64_t min,
                 int64_t max, int64_t *out);
/* An ISO 4217 code, uppercased into out. */
int validate_currency(api_call_t *call, json_t *obj, const char *where, const char *name,
                      char out[4]);
/* An amount of currency in minor units within [min, API_AMOUNT_MAX]: a
 * decimal string ("29.99"), or a JSON number (29.99) that is a whole count
 * of the currency's minor units, read exactly from its digits. number is
 * the member as validate_scan_numbers found it, or NULL to scan the body
 * for it. */
int validate_amount(api_call_t *call, json_t *obj, const char *where, const char *name,
                    const char *currency, int64_t min, const ps_json_field_t *number,
                    int64_t *out);
/* Member name of each element of array, which is at where in the body
 * ("items"), as one scan of the body finds it: for validate_amount on
 * every element without a scan each. Free the result with free(). */
ps_json_field_t *validate_scan_numbers(api_call_t *call, json_t *array, const char *where,
                                       const char *name);
/* An object of at most max_bytes (as compact JSON) whose values are strings,
 * numbers, booleans or such objects, max_depth deep at most. *out is a
 * borrowed reference, NULL when absent; JSON null is refused. */
int validate_object(api_call_t *call, json_t *obj, const char *where, const char *name,
                    int max_depth, size_t max_bytes, json_t **out);

#endif
