/* paystream-inventory: keeps products' stock in step with orders, from the
 * domain events of paystream.domain.events. An order's lines are reserved
 * when it is created, committed when it is paid, released when it is
 * cancelled or expires and put back on a full refund; the rules live in
 * ps_apply_inventory_events (schemas/functions/stock.sql), where
 * the database's locks and checks keep stock from going negative. */
#include <stdio.h>

#include "paystream/config.h"
#include "paystream/domain_event.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/outbox.h"
#include "paystream/util.h"
#include "paystream/worker.h"

static const ps_cfg_var_t config[] = {
    PS_CFG_COMMON,
    PS_CFG_FETCH_WAIT("50"),
    PS_CFG_METRICS,
    {"PAYSTREAM_INVENTORY_GROUP", PS_CFG_STRING, "paystream-inventory", 0, 0,
     "Kafka consumer group of the inventory workers"},
    {"PAYSTREAM_INVENTORY_BATCH_MAX", PS_CFG_INT, "500", 1, 10000,
     "most domain events applied in one database transaction"},
    {"PAYSTREAM_RESTOCK_ON_REFUND", PS_CFG_BOOL, "true", 0, 0,
     "put a fully refunded order's units back in stock"},
};
#define NCONFIG (sizeof(config) / sizeof(config[0]))

#define APPLY(restock)                                                                  \
    {"apply_inventory_events",                                                          \
     "SELECT ord, message_id, outcome, note::text "                                     \
     "FROM ps_apply_inventory_events($1::jsonb, " restock ")",                          \
     1}
static const ps_pg_stmt_t restocking[] = {APPLY("true"), PS_WORKER_STATEMENTS};
static const ps_pg_stmt_t keeping[] = {APPLY("false"), PS_WORKER_STATEMENTS};
#define NSTATEMENTS (sizeof(restocking) / sizeof(restocking[0]))

static volatile sig_atomic_t run = 1;

static int apply_batch(ps_pg_t *pg, rd_kafka_t *dlq, rd_kafka_message_t **msgs, size_t n,
                       void *prepared, ps_apply_stats_t *stats, volatile sig_atomic_t *run_flag)
{
    (void)msgs;
    (void)n;
    return ps_alike_apply(pg, dlq, prepared, "apply_inventory_events", stats, run_flag);
}

int main(int argc, char **argv)
{
    ps_malloc_tune(PS_MALLOC_WORKER);
    int rc = ps_worker_start(argc, argv, "inventory",
                             "Reserves, commits, releases and restocks products' units as\n"
                             "orders are created, paid, cancelled, expire and are refunded.",
                             config, NCONFIG, &run);
    if (rc >= 0)
        return rc;
    static const char *const topics[] = {PS_TOPIC_DOMAIN_EVENTS, NULL};
    ps_worker_t w;
    if (ps_worker_open(&w, "paystream-inventory", ps_config_str("PAYSTREAM_INVENTORY_GROUP"),
                       topics, ps_config_bool("PAYSTREAM_RESTOCK_ON_REFUND") ? restocking : keeping,
                       NSTATEMENTS) < 0)
        return 1;
    w.prepare = ps_domain_events_prepare;
    w.release = ps_alike_release;
    /* It writes order.rejected_out_of_stock to the outbox. */
    if (ps_outbox_relay_start_worker("paystream-inventory-outbox") < 0) {
        ps_worker_close(&w);
        return 1;
    }
    ps_log_info("inventory worker started", "group", ps_config_str("PAYSTREAM_INVENTORY_GROUP"),
                "restock_on_refund", ps_config_bool("PAYSTREAM_RESTOCK_ON_REFUND") ? "true" : "false",
                "version", PS_VERSION, NULL);
    rc = ps_worker_consume(&w, (size_t)ps_config_int("PAYSTREAM_INVENTORY_BATCH_MAX"), apply_batch,
                           &run);
    ps_outbox_relay_stop();
    ps_worker_close(&w);
    ps_log_info("inventory worker stopped", NULL);
    return rc;
}
