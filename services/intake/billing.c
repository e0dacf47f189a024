/* Customers, usage and balance payments: POST /api/v1/customers, GET
 * /api/v1/customers/me, POST /api/v1/usage and POST /billing/create-payment.
 * The caller is the customer (an admin may record usage for anyone). Writes
 * are commands keyed by the customer, so one partition orders everything
 * that changes a balance: customer.create and checkout.create go to
 * paystream.commands.payments, usage records to paystream.commands.usage,
 * where upstream producers put theirs too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "paystream/kafka.h"
#include "resources.h"
#include "validate.h"

#define IDENTIFIER_MAX 100
#define QUANTITY_MAX 1000000000LL
#define USAGE_PAST_S (35 * 24 * 3600) /* Stripe takes meter events this old at most */
#define USAGE_FUTURE_S 300

const ps_pg_stmt_t billing_statements[] = {
    {"customer", "SELECT ps_customer_json(id)::text, currency, ps_customer_payable_minor(id) "
                 "FROM customers WHERE id = $1", 1},
};
const size_t billing_nstatements = sizeof(billing_statements) / sizeof(billing_statements[0]);

/* The customer's row (json, currency, payable minor units), or NULL: when
 * there is none, answers 404 if missing_answers, else returns NULL quietly
 * with *missing set. */
static PGresult *customer_read(api_call_t *call, const char *id, int missing_answers, int *missing)
{
    ps_pg_err_t err;
    const char *params[] = {id};
    PGresult *res = ps_pg_exec_prepared(call->pg, "customer", 1, params, &err);
    *missing = 0;
    if (res == NULL) {
        api_db_error(call, &err);
        return NULL;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        *missing = 1;
        if (missing_answers)
            api_error(call, 404, "customer_missing",
                      "no such customer; register with POST /api/v1/customers", "customer");
        return NULL;
    }
    return res;
}

/* A plausible address: one @ with something on both sides, no spaces. */
void customers_create(api_call_t *call)
{
    static const char *const fields[] = {"email", "name", NULL};
    json_t *body = validate_body(call);
    if (body == NULL)
        return;
    const char *email, *name;
    if (validate_fields(call, body, "", fields) < 0 ||
        validate_email(call, body, "", "email", 1, &email) < 0 ||
        validate_name(call, body, "", "name", &name) < 0)
        goto done;
    int missing;
    PGresult *res = customer_read(call, call->actor.id, 0, &missing);
    if (res == NULL && !missing)
        goto done;
    PQclear(res);
    if (!missing && api_checks_state(call)) {
        api_error(call, 409, "customer_exists",
                  "you are registered as a customer already; see GET /api/v1/customers/me", NULL);
        goto done;
    }
    commands_submit(call, PS_TOPIC_COMMANDS_PAYMENTS, "customer.create", call->actor.id, NULL,
                    call->actor.id, json_pack("{s:s, s:s?}", "email", email, "name", name));
done:
    json_decref(body);
}

void customers_me(api_call_t *call)
{
    int missing;
    PGresult *res = customer_read(call, call->actor.id, 1, &missing);
    if (res == NULL)
        return;
    http_finish(call->req, 200, ps_xstrdup(PQgetvalue(res, 0, 0)));
    PQclear(res);
}

/* Checks the meter, quantity and timestamp of a usage record; fills
 * *timestamp (now when absent). Returns 0, or -1 after answering 400. */
static int usage_fields(api_call_t *call, json_t *body, int64_t *quantity, int64_t *timestamp)
{
    const char *meter = json_string_value(json_object_get(body, "meter"));
    const ps_meter_price_t *price = meter ? ps_billing_meter(&intake.billing, meter) : NULL;
    if (price == NULL) {
        char names[256], shown[64];
        ps_billing_meter_names(&intake.billing, names, sizeof(names));
        ps_printable(shown, meter ? meter : "", sizeof(shown));
        api_errorf(call, 400, "meter_unknown", "meter", "meter \"%s\" is not priced; meters: %s",
                   shown, names);
        return -1;
    }
    if (validate_int(call, body, "", "quantity", 1, QUANTITY_MAX, quantity) < 0)
        return -1;
    if (price->unit_minor > 0 && *quantity > API_AMOUNT_MAX / price->unit_minor) {
        api_error(call, 400, "parameter_invalid",
                  "quantity times the meter's unit price is larger than this server accepts",
                  "quantity");
        return -1;
    }
    int64_t now = (int64_t)time(NULL);
    *timestamp = now;
    if (json_object_get(body, "timestamp") &&
        validate_int(call, body, "", "timestamp", now - USAGE_PAST_S, now + USAGE_FUTURE_S,
                  timestamp) < 0)
        return -1;
    return 0;
}

void usage_create(api_call_t *call)
{
    static const char *const fields[] = {"customer", "meter", "quantity", "timestamp",
                                         "identifier", NULL};
    json_t *body = validate_body(call);
    if (body == NULL)
        return;
    const char *customer, *identifier;
    int64_t quantity, timestamp;
    PGresult *res = NULL;
    if (validate_fields(call, body, "", fields) < 0 ||
        validate_string(call, body, "", "customer", 0, PS_JWT_SUB_MAX, &customer) < 0 ||
        validate_string(call, body, "", "identifier", 1, IDENTIFIER_MAX, &identifier) < 0)
        goto done;
    if (!ps_is_token(identifier, IDENTIFIER_MAX)) {
        api_error(call, 400, "parameter_invalid",
                  "identifier must be printable ASCII without spaces", "identifier");
        goto done;
    }
    if (customer && strcmp(customer, call->actor.id) != 0 && !call->actor.admin) {
        api_error(call, 400, "parameter_invalid",
                  "only an admin records usage for another customer; leave customer out",
                  "customer");
        goto done;
    }
    if (customer == NULL)
        customer = call->actor.id;
    if (usage_fields(call, body, &quantity, &timestamp) < 0)
        goto done;
    int missing;
    if ((res = customer_read(call, customer, 1, &missing)) == NULL)
        goto done;
    commands_submit(call, PS_TOPIC_COMMANDS_USAGE, "usage.record", customer, NULL, customer,
                    json_pack("{s:s, s:s, s:I, s:I, s:s}", "customer", customer, "meter",
                              json_string_value(json_object_get(body, "meter")), "quantity",
                              (json_int_t)quantity, "timestamp", (json_int_t)timestamp,
                              "identifier", identifier));
done:
    PQclear(res);
    json_decref(body);
}

void billing_create_payment(api_call_t *call)
{
    static const char *const fields[] = {"amount", NULL};
    json_t *body = validate_body(call);
    if (body == NULL)
        return;
    PGresult *res = NULL;
    int missing;
    int64_t amount;
    if (validate_fields(call, body, "", fields) < 0 ||
        (res = customer_read(call, call->actor.id, 1, &missing)) == NULL)
        goto done;
    const char *currency = PQgetvalue(res, 0, 1), *payable = PQgetvalue(res, 0, 2);
    if (validate_amount(call, body, "", "amount", currency, 1, NULL, &amount) < 0)
        goto done;
    if (api_checks_state(call) && amount > strtoll(payable, NULL, 10)) {
        api_errorf(call, 400, "amount_exceeds_balance", "amount",
                   "the amount must be at most the open balance, %s minor units of %s",
                   strtoll(payable, NULL, 10) > 0 ? payable : "0", currency);
        goto done;
    }
    /* The answer is the session's URL: wait for it unless asked not to. */
    if (call->prefer == NULL)
        call->wait_ms = intake.max_wait_ms;
    commands_submit(call, PS_TOPIC_COMMANDS_PAYMENTS, "checkout.create", call->actor.id, NULL,
                    call->actor.id, json_pack("{s:I, s:s}", "amount_minor", (json_int_t)amount,
                                              "currency", currency));
done:
    PQclear(res);
    json_decref(body);
}
