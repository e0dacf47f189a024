/* paystream-payments: applies Stripe events, API commands and usage records
 * to orders, payments, refunds, the ledger, customers and their billing,
 * exactly once in effect. The loop is librdkafka's consumer example:
 * poll a batch, apply it in one database transaction, then commit offsets. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/config.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/util.h"

#define STATS_EVERY_MS 10000

static const ps_cfg_var_t config[] = {
    PS_CFG_COMMON,
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
    PS_CFG_BILLING,
    {"PAYSTREAM_INVOICE_THRESHOLD", PS_CFG_STRING, "3000.00", 0, 0,
     "open balance (decimal, billing currency) at which a customer is invoiced; 0 turns it off"},
    {"PAYSTREAM_CHECKOUT_SUCCESS_URL", PS_CFG_STRING, "", 0, 0,
     "where Stripe Checkout sends a customer after paying (needed for Stripe Checkout)"},
    {"PAYSTREAM_CHECKOUT_CANCEL_URL", PS_CFG_STRING, "", 0, 0,
     "where Stripe Checkout sends a customer who goes back (needed for Stripe Checkout)"},
};
#define NCONFIG (sizeof(config) / sizeof(config[0]))

static volatile sig_atomic_t run = 1;

static void stop(int sig)
{
    (void)sig;
    run = 0;
}

static void log_stats(const apply_stats_t *s)
{
    char applied[24], dup[24], stale[24], rec[24], refused[24], dead[24], batches[24];
    snprintf(applied, sizeof(applied), "%" PRIu64, s->applied);
    snprintf(dup, sizeof(dup), "%" PRIu64, s->duplicate);
    snprintf(stale, sizeof(stale), "%" PRIu64, s->stale);
    snprintf(rec, sizeof(rec), "%" PRIu64, s->recorded);
    snprintf(refused, sizeof(refused), "%" PRIu64, s->refused);
    snprintf(dead, sizeof(dead), "%" PRIu64, s->dead_lettered);
    snprintf(batches, sizeof(batches), "%" PRIu64, s->batches);
    ps_log_info("progress", "applied", applied, "duplicates", dup, "stale", stale, "recorded",
                rec, "refused", refused, "dead_lettered", dead, "batches", batches, NULL);
}

/* At debug level, where a batch's time went: waiting for messages,
 * applying them in PostgreSQL, committing the offsets. */
static void log_batch(size_t n, int64_t poll_us, int64_t apply_us, int64_t commit_us)
{
    char count[24], poll[24], apply[24], commit[24];
    snprintf(count, sizeof(count), "%zu", n);
    snprintf(poll, sizeof(poll), "%" PRId64, poll_us / 1000);
    snprintf(apply, sizeof(apply), "%" PRId64, apply_us / 1000);
    snprintf(commit, sizeof(commit), "%" PRId64, commit_us / 1000);
    ps_log_debug("batch applied", "messages", count, "poll_ms", poll, "apply_ms", apply,
                 "commit_ms", commit, NULL);
}

/* --migrate: applies the schema migrations and exits. */
static int migrate(void)
{
    char err[512];
    ps_pg_t *pg = ps_pg_connect(ps_config_str("PAYSTREAM_PG_DSN"), NULL, 0, err, sizeof(err));
    if (pg == NULL) {
        ps_log_error("cannot connect to postgresql", "detail", err, NULL);
        return 1;
    }
    int n = ps_pg_migrate(pg, ps_config_str("PAYSTREAM_SCHEMA_DIR"), err, sizeof(err));
    ps_pg_close(pg);
    if (n < 0) {
        ps_log_error("migration failed", "detail", err, NULL);
        return 1;
    }
    char count[16];
    snprintf(count, sizeof(count), "%d", n);
    ps_log_info("migrations done", "applied", count, NULL);
    return 0;
}

/* The worker loop; returns the process exit code. */
static int consume(ps_pg_t *pg, rd_kafka_t *consumer, rd_kafka_t *dlq)
{
    size_t batch_max = (size_t)ps_config_int("PAYSTREAM_BATCH_MAX");
    rd_kafka_message_t **msgs = ps_xcalloc(batch_max, sizeof(*msgs));
    apply_stats_t stats = {0}, logged = {0};
    int64_t next_stats = ps_mono_ms() + STATS_EVERY_MS;
    int rc = 0;
    while (run) {
        int fatal = 0;
        int64_t t0 = ps_mono_us();
        size_t n = ps_kafka_poll_batch(consumer, msgs, batch_max, 100, &fatal);
        int64_t t1 = ps_mono_us();
        if (n > 0 && apply_batch(pg, dlq, msgs, n, &stats, &run) == 0) {
            int64_t t2 = ps_mono_us();
            ps_kafka_commit_batch(consumer, msgs, n);
            log_batch(n, t1 - t0, t2 - t1, ps_mono_us() - t2);
        }
        for (size_t i = 0; i < n; i++)
            rd_kafka_message_destroy(msgs[i]);
        if (fatal) {
            rc = 3;
            break;
        }
        if (ps_mono_ms() >= next_stats) {
            if (memcmp(&stats, &logged, sizeof(stats)) != 0)
                log_stats(&stats);
            logged = stats;
            next_stats = ps_mono_ms() + STATS_EVERY_MS;
        }
    }
    log_stats(&stats);
    free(msgs);
    return rc;
}

int main(int argc, char **argv)
{
    char err[512];
    ps_malloc_tune();
    int do_migrate = argc == 2 && strcmp(argv[1], "--migrate") == 0;
    if (argc > 1 && !do_migrate) {
        int help = strcmp(argv[1], "--help") == 0;
        ps_config_usage(help ? stdout : stderr, "paystream-payments",
                        "Applies Stripe events, API commands and usage records to orders,\n"
                        "payments, refunds, the ledger, customers and their billing.\n"
                        "  --migrate  apply the schema migrations and exit\n"
                        "  --help     this text", config, NCONFIG);
        return help ? 0 : 2;
    }
    if (ps_config_start("payments", config, NCONFIG) < 0)
        return 2;
    if (do_migrate)
        return migrate();
    if (usage_init(err, sizeof(err)) < 0) {
        fprintf(stderr, "paystream-payments: %s\n", err);
        return 2;
    }
    gateway_init(); /* first: libcurl's global set-up wants no other threads yet */

    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    const char *brokers = ps_config_str("PAYSTREAM_KAFKA_BROKERS");
    static const char *const topics[] = {PS_TOPIC_STRIPE_EVENTS, PS_TOPIC_COMMANDS_PAYMENTS,
                                         PS_TOPIC_COMMANDS_USAGE, NULL};
    ps_pg_t *pg = ps_pg_connect(ps_config_str("PAYSTREAM_PG_DSN"), payments_statements,
                                payments_nstatements, err, sizeof(err));
    if (pg == NULL) {
        ps_log_error("cannot connect to postgresql", "detail", err,
                     "hint", "is the server up and the schema migrated (--migrate)?", NULL);
        return 1;
    }
    rd_kafka_t *dlq = ps_kafka_producer_new(brokers, "paystream-payments-dlq", ps_kafka_dr_sync,
                                            10000, 0, err, sizeof(err));
    rd_kafka_t *consumer = dlq ? ps_kafka_consumer_new(brokers,
                                                       ps_config_str("PAYSTREAM_PAYMENTS_GROUP"),
                                                       topics, err, sizeof(err))
                               : NULL;
    if (consumer == NULL) {
        ps_log_error("cannot create the kafka clients", "detail", err, NULL);
        if (dlq)
            rd_kafka_destroy(dlq);
        ps_pg_close(pg);
        return 1;
    }
    if (gateway_stripe_enabled() &&
        meter_reporter_start(ps_config_str("PAYSTREAM_PG_DSN"), err, sizeof(err)) < 0)
        ps_log_error("usage will not be reported to Stripe", "detail", err, NULL);
    ps_log_info("payments worker started", "group", ps_config_str("PAYSTREAM_PAYMENTS_GROUP"),
                "gateway", gateway_for(0), "version", PS_VERSION, NULL);
    int rc = consume(pg, consumer, dlq);
    meter_reporter_stop();
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    rd_kafka_flush(dlq, 10000);
    rd_kafka_destroy(dlq);
    ps_pg_close(pg);
    gateway_free();
    ps_log_info("payments worker stopped", NULL);
    return rc;
}
