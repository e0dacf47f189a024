/* paystream-connect-accounts: applies Stripe Connect events to the
 * platform's connected accounts, their payout destinations and persons,
 * exactly once in effect, and relays the domain events they cause. */
#include <stdio.h>

#include "connect.h"
#include "paystream/config.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/outbox.h"
#include "paystream/util.h"

static const ps_cfg_var_t config[] = {
    PS_CFG_COMMON,
    PS_CFG_FETCH_WAIT("100"),
    PS_CFG_METRICS,
    PS_CFG_STRIPE_MODE,
    {"PAYSTREAM_CONNECT_GROUP", PS_CFG_STRING, "paystream-connect-accounts", 0, 0,
     "Kafka consumer group of the connect-accounts workers"},
    {"PAYSTREAM_CONNECT_BATCH_MAX", PS_CFG_INT, "500", 1, 10000,
     "most Connect events applied in one database transaction"},
};
#define NCONFIG (sizeof(config) / sizeof(config[0]))

static volatile sig_atomic_t run = 1;

int main(int argc, char **argv)
{
    ps_malloc_tune(PS_MALLOC_WORKER);
    int rc = ps_worker_start(argc, argv, "connect-accounts",
                             "Applies Stripe Connect events to connected accounts, their bank\n"
                             "accounts, cards and persons, and publishes the domain events\n"
                             "they cause.",
                             config, NCONFIG, &run);
    if (rc >= 0)
        return rc;
    char err[256];
    int livemode = ps_config_stripe_livemode(err, sizeof(err));
    if (livemode < 0) {
        fprintf(stderr, "paystream-connect-accounts: %s\n", err);
        return 2;
    }
    connect_events_init(livemode);
    static const char *const topics[] = {PS_TOPIC_STRIPE_CONNECT_EVENTS, NULL};
    ps_worker_t w;
    if (ps_worker_open(&w, "paystream-connect-accounts", ps_config_str("PAYSTREAM_CONNECT_GROUP"),
                       topics, connect_statements, connect_nstatements) < 0)
        return 1;
    w.prepare = connect_prepare_batch;
    w.release = ps_alike_release;
    if (ps_outbox_relay_start_worker("paystream-connect-accounts-outbox") < 0) {
        ps_worker_close(&w);
        return 1;
    }
    ps_log_info("connect-accounts worker started", "group",
                ps_config_str("PAYSTREAM_CONNECT_GROUP"), "stripe_mode", livemode ? "live" : "test",
                "version", PS_VERSION, NULL);
    rc = ps_worker_consume(&w, (size_t)ps_config_int("PAYSTREAM_CONNECT_BATCH_MAX"),
                               connect_apply_batch, &run);
    ps_outbox_relay_stop();
    ps_worker_close(&w);
    ps_log_info("connect-accounts worker stopped", NULL);
    return rc;
}
