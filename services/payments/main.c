/* paystream-payments: applies Stripe events, API commands and usage records
 * to orders, payments, refunds, the ledger, customers and their billing,
 * exactly once in effect. The loop is librdkafka's consumer example:
 * poll a batch, apply it in one database transaction, then commit offsets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/config.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/outbox.h"
#include "paystream/util.h"
#include "paystream/worker.h"

static const ps_cfg_var_t config[] = {
    PS_CFG_COMMON,
    PS_CFG_FETCH_WAIT("5"),
    PS_CFG_METRICS,
    {"PAYSTREAM_PAYMENTS_GROUP", PS_CFG_STRING, "paystream-payments", 0, 0,
     "Kafka consumer group of the payments workers"},
    {"PAYSTREAM_BATCH_MAX", PS_CFG_INT, "2000", 1, 10000,
     "most messages applied in one database transaction"},
    {"STRIPE_SECRET_KEY", PS_CFG_SECRET, "", 0, 0,
     "sk_ key of Stripe's API; unset, payments go to the sandbox gateway"},
    {"STRIPE_API_BASE", PS_CFG_STRING, "https://api.stripe.com", 0, 0,
     "base URL of Stripe's API (a local stand-in in tests)"},
    {"STRIPE_TIMEOUT_MS", PS_CFG_INT, "30000", 1000, 600000,
     "longest wait for one answer of Stripe's API before asking again"},
    PS_CFG_STRIPE_MODE,
    {"PAYPAL_CLIENT_ID", PS_CFG_STRING, "", 0, 0,
     "client id of the PayPal REST app; with PAYPAL_CLIENT_SECRET, payments may go to PayPal"},
    {"PAYPAL_CLIENT_SECRET", PS_CFG_SECRET, "", 0, 0, "secret of the PayPal REST app"},
    {"PAYPAL_API_BASE", PS_CFG_STRING, "https://api-m.paypal.com", 0, 0,
     "base URL of PayPal's API (https://api-m.sandbox.paypal.com for PayPal's sandbox)"},
    {"PAYPAL_TIMEOUT_MS", PS_CFG_INT, "30000", 1000, 600000,
     "longest wait for one answer of PayPal's API before asking again"},
    {"PAYPAL_RETURN_URL", PS_CFG_STRING, "", 0, 0,
     "where PayPal sends a buyer who approved a payment (the shop then processes it again)"},
    {"PAYPAL_CANCEL_URL", PS_CFG_STRING, "", 0, 0, "where PayPal sends a buyer who went back"},
    PS_CFG_BILLING,
    {"PAYSTREAM_INVOICE_THRESHOLD", PS_CFG_STRING, "3000.00", 0, 0,
     "open balance (decimal, billing currency) at which a customer is invoiced; 0 turns it off"},
    {"PAYSTREAM_CHECKOUT_SUCCESS_URL", PS_CFG_STRING, "", 0, 0,
     "where Stripe Checkout sends a customer after paying (needed for Stripe Checkout)"},
    {"PAYSTREAM_CHECKOUT_CANCEL_URL", PS_CFG_STRING, "", 0, 0,
     "where Stripe Checkout sends a customer who goes back (needed for Stripe Checkout)"},
    {"PAYSTREAM_LOG_RETENTION_DAYS", PS_CFG_INT, "30", 4, 3650,
     "days the logs that dedupe messages (stripe_events, account_audit_log, inventory_inbox) "
     "and finished notifications are kept; longer than the topics' retention in Kafka"},
    {"PAYSTREAM_IDEMPOTENCY_HOURS", PS_CFG_INT, "24", 1, 8760,
     "hours an applied command (and so its Idempotency-Key) is kept at least"},
};
#define NCONFIG (sizeof(config) / sizeof(config[0]))

static volatile sig_atomic_t run = 1;

#define RETENTION_EVERY_MS (3600 * 1000)

/* Retention (schemas/functions/retention.sql): logs its every action. */
static void retention(ps_pg_t *pg)
{
    char days[16], hours[16];
    snprintf(days, sizeof(days), "%lld", (long long)ps_config_int("PAYSTREAM_LOG_RETENTION_DAYS"));
    snprintf(hours, sizeof(hours), "%lld", (long long)ps_config_int("PAYSTREAM_IDEMPOTENCY_HOURS"));
    const char *params[] = {days, hours};
    ps_pg_err_t err;
    PGresult *res = ps_pg_query(pg, "SELECT tbl, action, items::text "
                                    "FROM ps_retention_run(now(), $1::integer, $2::integer)",
                                2, params, &err);
    if (res == NULL) {
        ps_log_warn("retention did not run; next time it will", "detail", err.message, NULL);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++)
        ps_log_info("retention", "table", PQgetvalue(res, i, 0), "action", PQgetvalue(res, i, 1),
                    "items", PQgetvalue(res, i, 2), NULL);
    PQclear(res);
}

static int system_livemode;

/* Says which gateway payments go to, for the intake's /health; once, as
 * soon as PostgreSQL takes it. The words are this program's own. */
static void state_gateway(ps_pg_t *pg)
{
    static int stated;
    char sql[320];
    ps_pg_err_t err;
    if (stated)
        return;
    snprintf(sql, sizeof(sql),
             "INSERT INTO service_state (service, state) VALUES ('payments', "
             "'{\"gateway\": \"%s\", \"stripe_mode\": \"%s\"}') ON CONFLICT (service) DO UPDATE "
             "SET state = excluded.state, updated_at = now()",
             gateway_for(0), system_livemode ? "live" : "test");
    if (ps_pg_exec(pg, sql, &err) == 0)
        stated = 1;
    else
        ps_log_warn("cannot state the gateway for /health; trying again", "detail", err.message,
                    NULL);
}

/* Between batches, once a second: the gateway stated until it is; pending
 * orders whose time ran out expire (and release their stock, through
 * order.expired), and those the inventory rejected out of stock are
 * cancelled; at start and hourly, retention. */
static void housekeeping(ps_pg_t *pg)
{
    static int64_t retention_due;
    ps_pg_err_t err;
    state_gateway(pg);
    if (ps_pg_exec(pg, "SELECT ps_orders_expire(500)", &err) < 0)
        ps_log_warn("cannot expire orders", "detail", err.message, NULL);
    if (ps_pg_exec(pg, "SELECT ps_orders_cancel_out_of_stock(500)", &err) < 0)
        ps_log_warn("cannot cancel orders rejected out of stock", "detail", err.message, NULL);
    if (ps_mono_ms() >= retention_due) {
        retention(pg);
        retention_due = ps_mono_ms() + RETENTION_EVERY_MS;
    }
}

int main(int argc, char **argv)
{
    char err[512];
    ps_malloc_tune(PS_MALLOC_WORKER);
    int rc = ps_worker_start(argc, argv, "payments",
                             "Applies Stripe events, API commands and usage records to orders,\n"
                             "payments, refunds, the ledger, customers and their billing.",
                             config, NCONFIG, &run);
    if (rc >= 0)
        return rc;
    int livemode = ps_config_stripe_livemode(err, sizeof(err));
    if (livemode < 0 || usage_init(err, sizeof(err)) < 0) {
        fprintf(stderr, "paystream-payments: %s\n", err);
        return 2;
    }
    stripe_events_init(livemode);
    system_livemode = livemode;
    gateway_init(); /* first: libcurl's global set-up wants no other threads yet */
    /* Connect events too: a payment made on behalf of a connected account
     * (Stripe-Account) is reported to the Connect endpoint. */
    static const char *const topics[] = {PS_TOPIC_STRIPE_EVENTS, PS_TOPIC_STRIPE_CONNECT_EVENTS,
                                         PS_TOPIC_PAYPAL_EVENTS, PS_TOPIC_COMMANDS_PAYMENTS,
                                         PS_TOPIC_COMMANDS_USAGE, NULL};
    ps_worker_t w;
    if (ps_worker_open(&w, "paystream-payments", ps_config_str("PAYSTREAM_PAYMENTS_GROUP"), topics,
                       payments_statements, payments_nstatements) < 0)
        return 1;
    w.tick = housekeeping;
    w.tick_ms = 1000;
    w.prepare = apply_prepare;
    w.release = apply_release;
    /* Orders and payments write domain events to the outbox. */
    if (ps_outbox_relay_start_worker("paystream-payments-outbox") < 0) {
        ps_worker_close(&w);
        return 1;
    }
    if (gateway_stripe_enabled() &&
        meter_reporter_start(ps_config_str("PAYSTREAM_PG_DSN"), err, sizeof(err)) < 0)
        ps_log_error("usage will not be reported to Stripe", "detail", err, NULL);
    ps_log_info("payments worker started", "group", ps_config_str("PAYSTREAM_PAYMENTS_GROUP"),
                "gateway", gateway_for(0), "stripe_mode", livemode ? "live" : "test",
                "version", PS_VERSION, NULL);
    rc = ps_worker_consume(&w, (size_t)ps_config_int("PAYSTREAM_BATCH_MAX"), apply_batch,
                               &run);
    meter_reporter_stop();
    ps_outbox_relay_stop();
    ps_worker_close(&w);
    gateway_free();
    ps_log_info("payments worker stopped", NULL);
    return rc;
}
