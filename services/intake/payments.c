/* /api/v1/payments and /api/v1/transactions: reads straight from
 * PostgreSQL; payment.create, payment.process and payment.refund checked
 * here and published as commands keyed by the payment's order, so that one
 * partition orders every command of an order (two refunds racing for the
 * last amount are applied one after the other, and the second is refused). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "paystream/kafka.h"
#include "resources.h"
#include "validate.h"

const ps_pg_stmt_t payments_statements[] = {
    {"payment", "SELECT ps_payment_json(id)::text, coalesce(order_id, ''), status, currency, "
                "gateway FROM payments WHERE id = $1 AND (actor = $2 OR $3::boolean)", 3},
    {"payments_page", "SELECT ps_payments_page($1, $2::boolean, $3, $4, $5::integer)::text", 5},
    {"transactions_page",
     "SELECT ps_transactions_page($1, $2::boolean, $3, $4, $5::integer)::text", 5},
    {"order_open", "SELECT status, currency, ps_order_open_minor(id) FROM orders "
                   "WHERE id = $1 AND (actor = $2 OR $3::boolean)", 3},
    {"account_refusal", "SELECT r::text, r->'error'->>'code' "
                        "FROM ps_account_refusal($1, true, $2, $3::boolean) r", 3},
};
const size_t payments_nstatements = sizeof(payments_statements) / sizeof(payments_statements[0]);

/* The payment of the path as call->actor may see it (json, order_id,
 * status, currency), or NULL after answering. */
static PGresult *payment_read(api_call_t *call)
{
    return api_read_owned(call, "payment", "payment");
}

/* The Kafka key of a payment's commands: its order, else itself. */
static const char *payment_key(PGresult *res, const char *payment_id)
{
    const char *order = PQgetvalue(res, 0, 1);
    return *order ? order : payment_id;
}

void payments_get(api_call_t *call)
{
    PGresult *res = payment_read(call);
    if (res == NULL)
        return;
    http_finish(call->req, 200, ps_xstrdup(PQgetvalue(res, 0, 0)));
    PQclear(res);
}

void payments_list(api_call_t *call)
{
    api_list_page(call, "payments_page", api_arg(call, "order_id"),
                  api_arg(call, "starting_after"));
}

void transactions_list(api_call_t *call)
{
    api_list_page(call, "transactions_page", api_arg(call, "payment_id"), NULL);
}

void transactions_get(api_call_t *call)
{
    ps_pg_err_t err;
    const char *params[] = {call->actor.id, call->actor.admin ? "true" : "false", NULL, call->id,
                            "1"};
    PGresult *res = ps_pg_exec_prepared(call->pg, "transactions_page", 5, params, &err);
    if (res == NULL) {
        api_db_error(call, &err);
        return;
    }
    json_t *page = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    json_t *row = json_array_get(json_object_get(page, "data"), 0);
    if (row == NULL)
        api_errorf(call, 404, "resource_missing", "id", "no such transaction: %s", call->id);
    else
        api_reply(call, 200, json_incref(row));
    json_decref(page);
}

/* Refuses a payment on behalf of a connected account that cannot take it,
 * or that the caller is neither an admin of nor linked to, with the
 * worker's own rule (ps_account_refusal), which it applies again to the
 * command. Returns 0, or -1 after answering. */
static int account_can_charge(api_call_t *call, const char *account)
{
    ps_pg_err_t err;
    const char *params[] = {account, call->actor.id, call->actor.admin ? "true" : "false"};
    PGresult *res = ps_pg_exec_prepared(call->pg, "account_refusal", 3, params, &err);
    int rc = -1;
    if (res == NULL) {
        api_db_error(call, &err);
    } else if (PQgetisnull(res, 0, 0)) {
        rc = 0;
    } else {
        unsigned status = strcmp(PQgetvalue(res, 0, 1), "account_unknown") == 0 ? 404 : 409;
        http_finish(call->req, status, ps_xstrdup(PQgetvalue(res, 0, 0)));
    }
    PQclear(res);
    return rc;
}

void payments_create(api_call_t *call)
{
    static const char *const fields[] = {"order_id", "amount", "currency", "account",
                                         "payment_method", NULL};
    json_t *body = validate_body(call);
    if (body == NULL)
        return;
    const char *order_id, *account, *gateway;
    char currency[4];
    int64_t amount;
    PGresult *res = NULL;
    if (validate_fields(call, body, "", fields) < 0 ||
        validate_string(call, body, "", "order_id", 1, ROUTE_ID_MAX, &order_id) < 0 ||
        validate_currency(call, body, "", "currency", currency) < 0 ||
        validate_amount(call, body, "", "amount", currency, 1, NULL, &amount) < 0 ||
        validate_string(call, body, "", "account", 0, ROUTE_ID_MAX, &account) < 0 ||
        validate_string(call, body, "", "payment_method", 0, 16, &gateway) < 0 ||
        (account && (account_id_check(call, account, "account") < 0 ||
                     (api_checks_state(call) && account_can_charge(call, account) < 0))))
        goto done;
    /* The order service's clients choose the gateway here; the worker
     * knows which it has (payment_gateway in commands.c). */
    if (gateway && strcmp(gateway, "stripe") != 0 && strcmp(gateway, "sandbox") != 0 &&
        strcmp(gateway, "paypal") != 0) {
        api_error(call, 400, "parameter_invalid",
                  "payment_method must be stripe, paypal or sandbox (the gateway)",
                  "payment_method");
        goto done;
    }
    if (gateway && strcmp(gateway, "paypal") == 0 && account) {
        api_error(call, 400, "parameter_invalid",
                  "a payment on behalf of a connected account goes to Stripe, not paypal",
                  "payment_method");
        goto done;
    }
    ps_pg_err_t err;
    const char *params[] = {order_id, call->actor.id, call->actor.admin ? "true" : "false"};
    res = ps_pg_exec_prepared(call->pg, "order_open", 3, params, &err);
    if (res == NULL) {
        api_db_error(call, &err);
        goto done;
    }
    if (PQntuples(res) == 0) {
        api_errorf(call, 404, "resource_missing", "order_id", "no such order: %s", order_id);
        goto done;
    }
    const char *status = PQgetvalue(res, 0, 0), *order_currency = PQgetvalue(res, 0, 1);
    const char *open = PQgetvalue(res, 0, 2);
    if (api_checks_state(call) && strcmp(status, "pending") != 0) {
        api_errorf(call, 409, "order_not_pending", "order_id",
                   "order %s is %s; only a pending order takes a payment", order_id, status);
        goto done;
    }
    if (strcmp(order_currency, currency) != 0) {
        api_errorf(call, 400, "currency_mismatch", "currency", "the order is in %s",
                   order_currency);
        goto done;
    }
    if (api_checks_state(call) && strtoll(open, NULL, 10) != amount) {
        api_errorf(call, 400, "amount_mismatch", "amount",
                   "the amount must equal the order's open amount, %s minor units of %s", open,
                   currency);
        goto done;
    }
    commands_submit(call, PS_TOPIC_COMMANDS_PAYMENTS, "payment.create", order_id, "pay_", NULL,
                    json_pack("{s:s, s:I, s:s, s:s?, s:s?}", "order_id", order_id, "amount_minor",
                              (json_int_t)amount, "currency", currency, "account", account,
                              "gateway_asked", gateway));
done:
    PQclear(res);
    json_decref(body);
}

/* The payment method of a process: a pm_ id for a card payment; nothing,
 * or "paypal", for a PayPal payment, whose buyer approves it at PayPal
 * (the first process makes the PayPal order, the next captures it).
 * Returns it, or NULL after answering 400. */
static const char *process_method(api_call_t *call, const char *method, const char *param,
                                  const char *gateway)
{
    if (strcmp(gateway, "paypal") == 0) {
        if (method == NULL || strcmp(method, "paypal") == 0)
            return "paypal";
        api_errorf(call, 400, "parameter_invalid", param,
                   "a PayPal payment is approved at PayPal: leave %s out", param);
        return NULL;
    }
    if (method == NULL) {
        api_error(call, 400, "parameter_invalid", "payment_method is required", "payment_method");
        return NULL;
    }
    if (strncmp(method, "pm_", 3) != 0) {
        api_errorf(call, 400, "parameter_invalid", param, "%s must be a pm_ id", param);
        return NULL;
    }
    return method;
}

void payments_process(api_call_t *call)
{
    /* payment_method_id is the order service's name for payment_method, and
     * its confirmation_method is what paystream does either way: the intent
     * is confirmed by the server, in the request that creates it. */
    static const char *const fields[] = {"payment_method", "payment_method_id",
                                         "confirmation_method", NULL};
    json_t *body = validate_body(call);
    if (body == NULL)
        return;
    const char *method, *method_id, *confirmation;
    PGresult *res = NULL;
    if (validate_fields(call, body, "", fields) < 0 ||
        validate_string(call, body, "", "payment_method", 0, 100, &method) < 0 ||
        validate_string(call, body, "", "payment_method_id", 0, 100, &method_id) < 0 ||
        validate_string(call, body, "", "confirmation_method", 0, 16, &confirmation) < 0)
        goto done;
    const char *param = method ? "payment_method" : "payment_method_id";
    if (method && method_id && strcmp(method, method_id) != 0) {
        api_error(call, 400, "parameter_invalid",
                  "payment_method and payment_method_id name different payment methods",
                  "payment_method_id");
        goto done;
    }
    method = method ? method : method_id;
    if (confirmation && strcmp(confirmation, "automatic") != 0 && strcmp(confirmation, "manual") != 0) {
        api_error(call, 400, "parameter_invalid", "confirmation_method must be automatic or manual",
                  "confirmation_method");
        goto done;
    }
    if ((res = payment_read(call)) == NULL ||
        (method = process_method(call, method, param, PQgetvalue(res, 0, 4))) == NULL)
        goto done;
    const char *status = PQgetvalue(res, 0, 2);
    if (api_checks_state(call) && strcmp(status, "pending") != 0 && strcmp(status, "failed") != 0) {
        api_errorf(call, 409, "payment_not_processable", "id",
                   "payment %s is %s; only a pending or failed payment is processed", call->id,
                   status);
        goto done;
    }
    commands_submit(call, PS_TOPIC_COMMANDS_PAYMENTS, "payment.process",
                    payment_key(res, call->id), NULL, call->id,
                    json_pack("{s:s}", "payment_method", method));
done:
    PQclear(res);
    json_decref(body);
}

void payments_refund(api_call_t *call)
{
    static const char *const fields[] = {"amount", "reason", NULL};
    static const char *const reasons[] = {"duplicate", "fraudulent", "requested_by_customer", NULL};
    json_t *body = validate_body(call);
    if (body == NULL)
        return;
    const char *reason, *description = NULL;
    PGresult *res = NULL;
    if (validate_fields(call, body, "", fields) < 0 ||
        validate_name(call, body, "", "reason", &reason) < 0)
        goto done;
    /* One of Stripe's reasons goes to the gateway; other words ("Product
     * defect") are the refund's description, kept by paystream. */
    size_t i = 0;
    while (reason && reasons[i] && strcmp(reasons[i], reason) != 0)
        i++;
    if (reason && reasons[i] == NULL)
        description = reason, reason = NULL;
    if ((res = payment_read(call)) == NULL)
        goto done;
    json_t *params = json_pack("{s:s?, s:s?}", "reason", reason, "description", description);
    if (json_object_get(body, "amount")) {
        int64_t amount;
        if (validate_amount(call, body, "", "amount", PQgetvalue(res, 0, 3), 1, NULL, &amount) < 0) {
            json_decref(params);
            goto done;
        }
        json_object_set_new(params, "amount_minor", json_integer((json_int_t)amount));
    }
    commands_submit(call, PS_TOPIC_COMMANDS_PAYMENTS, "payment.refund",
                    payment_key(res, call->id), NULL, call->id, params);
done:
    PQclear(res);
    json_decref(body);
}
