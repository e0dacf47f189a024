/* Every route of the intake, in one table: the webhooks and the probes,
 * answered on the HTTP threads, and the API, answered on the API threads
 * (api.c). http.c finds a request's route here and answers 404 and 405. */
#include "commands.h"
#include "intake.h"
#include "resources.h"

#define ROUTE(m, p, h) {m, p, h, NULL, 0, 0, NULL}
#define ADMIN(m, p, h) {m, p, h, NULL, 1, 0, NULL}
#define READ(m, p, args, fn) {m, p, NULL, fn, 0, 0, args}
#define WRITE(m, p, fn) {m, p, NULL, fn, 0, 1, ""}

const route_t routes[] = {
    ROUTE("POST", "/webhooks/stripe", handle_stripe_webhook),
    ROUTE("POST", "/webhooks/stripe/connect", handle_stripe_connect_webhook),
    ROUTE("POST", "/webhooks/paypal", handle_paypal_webhook),
    ROUTE("GET", "/billing", handle_page),
    ROUTE("GET", "/billing/billing.js", handle_page),
    ROUTE("GET", "/billing/billing.css", handle_page),
    ADMIN("GET", "/health", handle_health),
    ADMIN("GET", "/ready", handle_ready),
    ADMIN("GET", "/metrics", handle_metrics),
    WRITE("POST", "/api/v1/orders", orders_create),
    READ("GET", "/api/v1/orders", "limit starting_after status", orders_list),
    READ("GET", "/api/v1/orders/*", "", orders_get),
    WRITE("PUT", "/api/v1/orders/*", orders_update),
    WRITE("DELETE", "/api/v1/orders/*", orders_cancel),
    WRITE("POST", "/api/v1/payments", payments_create),
    READ("GET", "/api/v1/payments", "limit starting_after order_id", payments_list),
    READ("GET", "/api/v1/payments/*", "", payments_get),
    WRITE("POST", "/api/v1/payments/*/process", payments_process),
    WRITE("POST", "/api/v1/payments/*/refund", payments_refund),
    READ("GET", "/api/v1/transactions", "limit payment_id", transactions_list),
    READ("GET", "/api/v1/transactions/*", "", transactions_get),
    READ("GET", "/api/v1/commands/*", "", commands_get),
    WRITE("POST", "/api/v1/customers", customers_create),
    READ("GET", "/api/v1/customers/me", "", customers_me),
    WRITE("POST", "/api/v1/usage", usage_create),
    WRITE("POST", "/billing/create-payment", billing_create_payment),
    READ("GET", "/api/v1/accounts/*", "", accounts_get),
    READ("GET", "/api/v1/products", "limit starting_after", products_list),
    READ("GET", "/api/v1/products/*", "", products_get),
    WRITE("PUT", "/api/v1/products/*", products_put),
};
const size_t nroutes = sizeof(routes) / sizeof(routes[0]);
