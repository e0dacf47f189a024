/* The bodies of order writes, checked field by field and turned into the
 * parameters of their commands: only the request is read here, so this is
 * also what the API body fuzzer drives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resources.h"
#include "validate.h"

#define ITEMS_MAX 100
#define QUANTITY_MAX 100000
#define ADDRESS_BYTES_MAX 4096
#define METADATA_BYTES_MAX 8192
#define EXPIRES_IN_MAX (30 * 24 * 3600) /* an unpaid order lapses within 30 days at most */

json_t *order_items_params(api_call_t *call, json_t *items, const char *currency)
{
    static const char *const fields[] = {"product_id", "name", "quantity", "unit_price", NULL};
    if (!json_is_array(items) || json_array_size(items) == 0 ||
        json_array_size(items) > ITEMS_MAX) {
        api_errorf(call, 400, "parameter_invalid", "items",
                   "items must be an array of 1 to %d items", ITEMS_MAX);
        return NULL;
    }
    json_t *out = json_array();
    ps_json_field_t *prices = validate_scan_numbers(call, items, "items", "unit_price");
    int64_t total = 0;
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item) {
        char where[32];
        snprintf(where, sizeof(where), "items[%zu]", i);
        const char *product_id, *name;
        int64_t quantity, unit_price;
        if (!json_is_object(item)) {
            api_errorf(call, 400, "parameter_invalid", where, "%s must be an object", where);
            goto bad;
        }
        if (validate_fields(call, item, where, fields) < 0 ||
            validate_string(call, item, where, "product_id", 1, 64, &product_id) < 0 ||
            validate_name(call, item, where, "name", &name) < 0 ||
            validate_int(call, item, where, "quantity", 1, QUANTITY_MAX, &quantity) < 0 ||
            validate_amount(call, item, where, "unit_price", currency, 0, &prices[i],
                            &unit_price) < 0)
            goto bad;
        /* Both are bounded, so the product fits; the sum is checked as it grows. */
        total += quantity * unit_price;
        if (quantity * unit_price > API_AMOUNT_MAX || total > API_AMOUNT_MAX) {
            api_error(call, 400, "amount_too_large",
                      "the order's total is larger than this server accepts", "items");
            goto bad;
        }
        json_array_append_new(out, json_pack("{s:s, s:s?, s:I, s:I}", "product_id", product_id,
                                             "name", name, "quantity", (json_int_t)quantity,
                                             "unit_price_minor", (json_int_t)unit_price));
    }
    free(prices);
    return out;
bad:
    free(prices);
    json_decref(out);
    return NULL;
}

int order_details_params(api_call_t *call, json_t *body, json_t *params)
{
    static const struct {
        const char *name;
        int depth;
        size_t bytes;
    } fields[] = {{"shipping_address", 2, ADDRESS_BYTES_MAX},
                  {"billing_address", 2, ADDRESS_BYTES_MAX},
                  {"metadata", 1, METADATA_BYTES_MAX}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        json_t *v;
        if (validate_object(call, body, "", fields[i].name, fields[i].depth, fields[i].bytes,
                            &v) < 0)
            return -1;
        if (v)
            json_object_set(params, fields[i].name, v);
    }
    return 0;
}

/* Copies the optional customer fields of a new order: whom its emails go
 * to, and how many seconds it may stay unpaid before it expires. */
static int customer_params(api_call_t *call, json_t *body, json_t *params)
{
    const char *email, *name;
    int64_t expires_in;
    if (validate_email(call, body, "", "email", 0, &email) < 0 ||
        validate_name(call, body, "", "customer_name", &name) < 0)
        return -1;
    if (email)
        json_object_set_new(params, "email", json_string(email));
    if (name)
        json_object_set_new(params, "customer_name", json_string(name));
    if (json_object_get(body, "expires_in")) {
        if (validate_int(call, body, "", "expires_in", 1, EXPIRES_IN_MAX, &expires_in) < 0)
            return -1;
        json_object_set_new(params, "expires_in", json_integer(expires_in));
    }
    return 0;
}

json_t *order_create_params(api_call_t *call, json_t *body)
{
    static const char *const fields[] = {"currency", "items", "shipping_address",
                                         "billing_address", "metadata", "email",
                                         "customer_name", "expires_in", NULL};
    char currency[4];
    if (validate_fields(call, body, "", fields) < 0 ||
        validate_currency(call, body, "", "currency", currency) < 0)
        return NULL;
    if (json_object_get(body, "items") == NULL) {
        api_error(call, 400, "parameter_invalid", "items is required", "items");
        return NULL;
    }
    json_t *items = order_items_params(call, json_object_get(body, "items"), currency);
    if (items == NULL)
        return NULL;
    json_t *params = json_pack("{s:s, s:o}", "currency", currency, "items", items);
    if (order_details_params(call, body, params) < 0 || customer_params(call, body, params) < 0) {
        json_decref(params);
        return NULL;
    }
    return params;
}
