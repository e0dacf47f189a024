/* /api/v1/orders: reads straight from PostgreSQL; writes checked here and
 * published as commands (order.create, order.update, order.cancel) that the
 * payments worker applies. Amounts come in as decimal strings of the
 * order's currency and go out as integer minor units. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "paystream/kafka.h"
#include "resources.h"
#include "validate.h"

const ps_pg_stmt_t orders_statements[] = {
    {"order", "SELECT ps_order_json(id)::text, status, currency FROM orders "
              "WHERE id = $1 AND (actor = $2 OR $3::boolean)", 3},
    {"orders_page", "SELECT ps_orders_page($1, $2::boolean, $3, $4, $5::integer)::text", 5},
};
const size_t orders_nstatements = sizeof(orders_statements) / sizeof(orders_statements[0]);

static const char *const order_statuses[] = {"pending", "paid", "processing", "shipped",
                                             "delivered", "cancelled", "expired", "refunded",
                                             NULL};

void orders_create(api_call_t *call)
{
    json_t *body = validate_body(call);
    if (body == NULL)
        return;
    json_t *params = order_create_params(call, body);
    if (params)
        commands_submit(call, PS_TOPIC_COMMANDS_PAYMENTS, "order.create", NULL, "ord_", NULL,
                        params);
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
    http_finish(call->req, 200, ps_xstrdup(PQgetvalue(res, 0, 0)));
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
    json_t *body = validate_body(call);
    if (body == NULL)
        return;
    json_t *params = json_object();
    PGresult *res = NULL;
    if (validate_fields(call, body, "", fields) < 0)
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
        json_t *checked = order_items_params(call, items, PQgetvalue(res, 0, 2));
        if (checked == NULL)
            goto done;
        json_object_set_new(params, "items", checked);
    }
    if (order_details_params(call, body, params) < 0)
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
    commands_submit(call, PS_TOPIC_COMMANDS_PAYMENTS, "order.cancel", NULL, NULL, call->id,
                    json_object());
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
                      "cancelled, expired, refunded", "status");
            return;
        }
    }
    api_list_page(call, "orders_page", status, after);
}
