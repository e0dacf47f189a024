/* /api/v1/orders: reads straight from PostgreSQL; writes checked here and
 * published as commands (order.create, order.update, order.cancel) that the
 * payments worker applies. Amounts come in as decimal strings of the
 * order's currency and go out as integer minor units. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "paystream/kafka.h"

#define ITEMS_MAX 100
#define QUANTITY_MAX 100000
#define ADDRESS_BYTES_MAX 4096
#define METADATA_BYTES_MAX 8192
#define EXPIRES_IN_MAX (30 * 24 * 3600) /* an unpaid order lapses within 30 days at most */

static const char *const order_statuses[] = {"pending", "paid", "processing", "shipped",
                                             "delivered", "cancelled", "expired", "refunded",
                                             NULL};

/* Checks items and returns them as the worker takes them, with amounts in
 * minor units of currency; NULL after 400. */
static json_t *items_params(api_call_t *call, json_t *items, const char *currency)
{
    static const char *const fields[] = {"product_id", "name", "quantity", "unit_price", NULL};
    if (!json_is_array(items) || json_array_size(items) == 0 ||
        json_array_size(items) > ITEMS_MAX) {
        api_errorf(call, 400, "parameter_invalid", "items",
                   "items must be an array of 1 to %d items", ITEMS_MAX);
        return NULL;
    }
    json_t *out = json_array();
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
        if (check_fields(call, item, where, fields) < 0 ||
            field_string(call, item, where, "product_id", 1, 64, &product_id) < 0 ||
            field_name(call, item, where, "name", &name) < 0 ||
            field_int(call, item, where, "quantity", 1, QUANTITY_MAX, &quantity) < 0 ||
            field_amount(call, item, where, "unit_price", currency, 0, &unit_price) < 0)
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
    return out;
bad:
    json_decref(out);
    return NULL;
}

/* Copies the optional address and metadata fields of body into params. */
static int details_params(api_call_t *call, json_t *body, json_t *params)
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
        if (field_object(call, body, "", fields[i].name, fields[i].depth, fields[i].bytes, &v) < 0)
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
    if (field_email(call, body, "", "email", 0, &email) < 0 ||
        field_name(call, body, "", "customer_name", &name) < 0)
        return -1;
    if (email)
        json_object_set_new(params, "email", json_string(email));
    if (name)
        json_object_set_new(params, "customer_name", json_string(name));
    if (json_object_get(body, "expires_in")) {
        if (field_int(call, body, "", "expires_in", 1, EXPIRES_IN_MAX, &expires_in) < 0)
            return -1;
        json_object_set_new(params, "expires_in", json_integer(expires_in));
    }
    return 0;
}

void orders_create(api_call_t *call)
{
    static const char *const fields[] = {"currency", "items", "shipping_address",
                                         "billing_address", "metadata", "email",
                                         "customer_name", "expires_in", NULL};
    json_t *body = body_object(call);
    if (body == NULL)
        return;
    char currency[4];
    json_t *items = NULL, *params = NULL;
    if (check_fields(call, body, "", fields) < 0 ||
        field_currency(call, body, "", "currency", currency) < 0)
        goto done;
    if (json_object_get(body, "items") == NULL) {
        api_error(call, 400, "parameter_invalid", "items is required", "items");
        goto done;
    }
    items = items_params(call, json_object_get(body, "items"), currency);
    if (items == NULL)
        goto done;
    params = json_pack("{s:s, s:o}", "currency", currency, "items", items);
    if (details_params(call, body, params) < 0 || customer_params(call, body, params) < 0)
        goto done;
    commands_submit(call, PS_TOPIC_COMMANDS_PAYMENTS, "order.create", NULL, "ord_", NULL, params);
    params = NULL;
done:
    json_decref(params);
    json_decref(body);
}

/* The order of the path as call->actor may see it (json, status,
 * currency), or NULL after answering. */
static PGresult *order_read(api_call_t *call)
{
    return api_read_owned(call, "order", "order");
}

void orders_get(api_call_t *call)
{
    PGresult *res = order_read(call);
    if (res == NULL)
        return;
    http_finish(call->req, 200, strdup(PQgetvalue(res, 0, 0)));
    PQclear(res);
}

/* Reads the order for a change; answers 409 unless it is pending (see
 * api_checks_state). */
static PGresult *pending_order(api_call_t *call, const char *change)
{
    PGresult *res = order_read(call);
    if (res && api_checks_state(call) && strcmp(PQgetvalue(res, 0, 1), "pending") != 0) {
        api_errorf(call, 409, "order_not_pending", "id",
                   "order %s is %s; only a pending order can be %s", call->id,
                   PQgetvalue(res, 0, 1), change);
        PQclear(res);
        return NULL;
    }
    return res;
}

void orders_update(api_call_t *call)
{
    static const char *const fields[] = {"items", "shipping_address", "billing_address",
                                         "metadata", NULL};
    json_t *body = body_object(call);
    if (body == NULL)
        return;
    json_t *params = json_object();
    PGresult *res = NULL;
    if (check_fields(call, body, "", fields) < 0)
        goto done;
    if (json_object_size(body) == 0) {
        api_error(call, 400, "parameter_missing", "nothing to change: send items, an address "
                  "or metadata", NULL);
        goto done;
    }
    if ((res = pending_order(call, "changed")) == NULL)
        goto done;
    json_t *items = json_object_get(body, "items");
    if (items) {
        json_t *checked = items_params(call, items, PQgetvalue(res, 0, 2));
        if (checked == NULL)
            goto done;
        json_object_set_new(params, "items", checked);
    }
    if (details_params(call, body, params) < 0)
        goto done;
    commands_submit(call, PS_TOPIC_COMMANDS_PAYMENTS, "order.update", NULL, NULL, call->id, params);
    params = NULL;
done:
    PQclear(res);
    json_decref(params);
    json_decref(body);
}

void orders_cancel(api_call_t *call)
{
    PGresult *res = pending_order(call, "cancelled");
    if (res == NULL)
        return;
    PQclear(res);
    commands_submit(call, PS_TOPIC_COMMANDS_PAYMENTS, "order.cancel", NULL, NULL, call->id, json_object());
}

void orders_list(api_call_t *call)
{
    const char *after = api_arg(call, "starting_after"), *status = api_arg(call, "status");
    if (status) {
        size_t i = 0;
        while (order_statuses[i] && strcmp(order_statuses[i], status) != 0)
            i++;
        if (order_statuses[i] == NULL) {
            api_error(call, 400, "parameter_invalid",
                      "status must be one of pending, paid, processing, shipped, delivered, "
                      "cancelled, refunded", "status");
            return;
        }
    }
    api_list_page(call, "orders_page", status, after);
}
