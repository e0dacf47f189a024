/* The API's resources: their handlers (run on an API thread after
 * authentication, see routes.c) and the statements each file runs on that
 * thread's connection. A write checks its body (validate.h) and becomes a
 * command (commands.h). */
#ifndef PAYSTREAM_INTAKE_RESOURCES_H
#define PAYSTREAM_INTAKE_RESOURCES_H

#include <jansson.h>
#include <stddef.h>

#include "call.h"

/* orders.c */
extern const ps_pg_stmt_t orders_statements[];
extern const size_t orders_nstatements;
void orders_create(api_call_t *call);
void orders_get(api_call_t *call);
void orders_list(api_call_t *call);
void orders_update(api_call_t *call);
void orders_cancel(api_call_t *call);

/* order_body.c: the bodies of order writes. Each returns the parameters
 * of the command (a new reference), or NULL after answering 400. */
/* The whole body of POST /api/v1/orders. */
json_t *order_create_params(api_call_t *call, json_t *body);
/* items (1 to 100 lines), with amounts in minor units of currency. */
json_t *order_items_params(api_call_t *call, json_t *items, const char *currency);
/* Copies the optional addresses and metadata of body into params; -1 after
 * answering 400. */
int order_details_params(api_call_t *call, json_t *body, json_t *params);

/* payments.c: payments and the ledger. */
extern const ps_pg_stmt_t payments_statements[];
extern const size_t payments_nstatements;
void payments_create(api_call_t *call);
void payments_get(api_call_t *call);
void payments_list(api_call_t *call);
void payments_process(api_call_t *call);
void payments_refund(api_call_t *call);
void transactions_get(api_call_t *call);
void transactions_list(api_call_t *call);

/* billing.c: customers, usage and balance payments. */
extern const ps_pg_stmt_t billing_statements[];
extern const size_t billing_nstatements;
void customers_create(api_call_t *call);
void customers_me(api_call_t *call);
void usage_create(api_call_t *call);
void billing_create_payment(api_call_t *call);

/* products.c: the catalog's stock, for admins. */
extern const ps_pg_stmt_t products_statements[];
extern const size_t products_nstatements;
void products_list(api_call_t *call);
void products_get(api_call_t *call);
void products_put(api_call_t *call);

/* accounts.c: connected accounts. */
extern const ps_pg_stmt_t accounts_statements[];
extern const size_t accounts_nstatements;
void accounts_get(api_call_t *call);
/* Whether id is an acct_ id; -1 after answering 400 for param. */
int account_id_check(api_call_t *call, const char *id, const char *param);

#endif
