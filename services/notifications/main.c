/* paystream-notifications: for each domain event that warrants it, an
 * email (SMTP) and a signed webhook to each subscriber that wants it. The
 * consumer plans them, once per event however often it is delivered (the
 * notifications table's unique key); the senders (sender.c) send them and
 * retry with backoff. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notifications.h"
#include "paystream/config.h"
#include "paystream/domain_event.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/metrics.h"
#include "paystream/outbox.h"
#include "paystream/util.h"
#include "paystream/worker.h"

#define ADMINS_MAX_BYTES 2048

static const ps_cfg_var_t config[] = {
    PS_CFG_COMMON,
    PS_CFG_FETCH_WAIT("100"),
    PS_CFG_METRICS,
    {"PAYSTREAM_NOTIFY_GROUP", PS_CFG_STRING, "paystream-notifications", 0, 0,
     "Kafka consumer group of the notifications workers"},
    {"PAYSTREAM_NOTIFY_BATCH_MAX", PS_CFG_INT, "500", 1, 10000,
     "most domain events planned in one database transaction"},
    {"PAYSTREAM_SMTP_URL", PS_CFG_STRING, "", 0, 0,
     "SMTP server, smtp://host:port (smtps:// for TLS); unset, no email is sent"},
    {"PAYSTREAM_SMTP_USER", PS_CFG_STRING, "", 0, 0, "SMTP user name, when the server wants one"},
    {"PAYSTREAM_SMTP_PASSWORD", PS_CFG_SECRET, "", 0, 0, "SMTP password"},
    {"PAYSTREAM_SMTP_STARTTLS", PS_CFG_BOOL, "false", 0, 0,
     "require STARTTLS on an smtp:// URL (refuse to send in clear text)"},
    {"PAYSTREAM_SMTP_ALLOW_PLAINTEXT_AUTH", PS_CFG_BOOL, "false", 0, 0,
     "let the SMTP user and password go over a clear-text smtp:// connection (a relay on a "
     "trusted network); otherwise that setting is refused at start"},
    {"PAYSTREAM_SMTP_FROM", PS_CFG_STRING, "paystream@localhost", 0, 0,
     "sender address of every email"},
    {"PAYSTREAM_NOTIFY_ADMINS", PS_CFG_STRING, "", 0, 0,
     "comma-separated addresses of the platform's admins (connected account alerts)"},
    {"PAYSTREAM_TEMPLATE_DIR", PS_CFG_STRING, PS_DEFAULT_TEMPLATE_DIR, 0, 0,
     "folder of the email templates (NAME.txt and NAME.html)"},
    {"PAYSTREAM_NOTIFY_SENDERS", PS_CFG_INT, "4", 1, 64,
     "notifications sent at once (one slow receiver holds up one sender at most)"},
    {"PAYSTREAM_NOTIFY_TIMEOUT_MS", PS_CFG_INT, "10000", 100, 300000,
     "longest wait for an SMTP server or a webhook receiver"},
    {"PAYSTREAM_NOTIFY_MAX_ATTEMPTS", PS_CFG_INT, "12", 1, 100,
     "attempts before a notification is marked failed"},
    {"PAYSTREAM_NOTIFY_RETRY_BASE_MS", PS_CFG_INT, "30000", 10, 86400000,
     "wait after the first failed attempt; doubled after each (with jitter)"},
    {"PAYSTREAM_NOTIFY_RETRY_MAX_MS", PS_CFG_INT, "3600000", 10, 86400000,
     "longest wait between two attempts"},
};
#define NCONFIG (sizeof(config) / sizeof(config[0]))

static volatile sig_atomic_t run = 1;

/* The plan statement, with the admins' addresses as a text[] literal. */
static char plan_sql[ADMINS_MAX_BYTES + 256];
static ps_pg_stmt_t statements[] = {{"plan_notifications", plan_sql, 1}, PS_WORKER_STATEMENTS};

/* Checks PAYSTREAM_NOTIFY_ADMINS (addresses of plain characters, so that
 * the list is safe in the statement) and writes plan_sql. */
static int make_plan_sql(char *err, size_t errlen)
{
    const char *admins = ps_config_str("PAYSTREAM_NOTIFY_ADMINS");
    if (strlen(admins) > ADMINS_MAX_BYTES ||
        admins[strspn(admins, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "0123456789.@_+-,")] != '\0') {
        snprintf(err, errlen, "PAYSTREAM_NOTIFY_ADMINS: a comma-separated list of email addresses");
        return -1;
    }
    snprintf(plan_sql, sizeof(plan_sql),
             "SELECT ord, message_id, outcome, note::text FROM ps_plan_notifications($1::jsonb, "
             "array_remove(string_to_array('%s', ','), ''), %s)",
             admins, *ps_config_str("PAYSTREAM_SMTP_URL") ? "true" : "false");
    return 0;
}

static ps_metric_t *queued, *queue_oldest;

/* Between batches, once a second: how many notifications wait to be sent
 * (or are being sent) and for how long the oldest has, by channel (by the
 * partial index of those rows). */
static void measure_queue(ps_pg_t *pg)
{
    ps_pg_err_t err;
    PGresult *res = ps_pg_query(pg,
                                "SELECT c.channel, count(n.id), coalesce(extract(epoch FROM now() "
                                "- min(n.created_at)), 0) FROM (VALUES ('email'), ('webhook')) "
                                "c(channel) LEFT JOIN notifications n ON n.channel = c.channel "
                                "AND n.status IN ('pending', 'sending') GROUP BY c.channel",
                                0, NULL, &err);
    for (int i = 0; res && i < PQntuples(res); i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "channel=\"%s\"", PQgetvalue(res, i, 0));
        ps_metric_set(queued, labels, strtod(PQgetvalue(res, i, 1), NULL));
        ps_metric_set(queue_oldest, labels, strtod(PQgetvalue(res, i, 2), NULL));
    }
    PQclear(res);
}

static int plan_batch(ps_pg_t *pg, rd_kafka_t *dlq, rd_kafka_message_t **msgs, size_t n,
                      void *prepared, ps_apply_stats_t *stats, volatile sig_atomic_t *run_flag)
{
    (void)msgs;
    (void)n;
    uint64_t applied = stats->applied;
    int rc = ps_alike_apply(pg, dlq, prepared, "plan_notifications", stats, run_flag);
    if (stats->applied > applied)
        senders_wake();
    return rc;
}

static void sender_config(sender_config_t *c, const templates_t *templates)
{
    memset(c, 0, sizeof(*c));
    c->dsn = ps_config_str("PAYSTREAM_PG_DSN");
    c->templates = templates;
    c->smtp.url = ps_config_str("PAYSTREAM_SMTP_URL");
    c->smtp.user = ps_config_str("PAYSTREAM_SMTP_USER");
    c->smtp.password = ps_config_str("PAYSTREAM_SMTP_PASSWORD");
    c->smtp.from = ps_config_str("PAYSTREAM_SMTP_FROM");
    c->smtp.starttls = ps_config_bool("PAYSTREAM_SMTP_STARTTLS");
    c->smtp.timeout_ms = c->timeout_ms = (long)ps_config_int("PAYSTREAM_NOTIFY_TIMEOUT_MS");
    c->threads = (int)ps_config_int("PAYSTREAM_NOTIFY_SENDERS");
    c->max_attempts = (int)ps_config_int("PAYSTREAM_NOTIFY_MAX_ATTEMPTS");
    c->retry_base_ms = ps_config_int("PAYSTREAM_NOTIFY_RETRY_BASE_MS");
    c->retry_max_ms = ps_config_int("PAYSTREAM_NOTIFY_RETRY_MAX_MS");
}

int main(int argc, char **argv)
{
    char err[512];
    ps_malloc_tune(PS_MALLOC_WORKER);
    int rc = ps_worker_start(argc, argv, "notifications",
                             "Sends the emails and signed outbound webhooks that domain events\n"
                             "warrant, each once, retrying with backoff.",
                             config, NCONFIG, &run);
    if (rc >= 0)
        return rc;
    sender_config_t sc;
    templates_t *templates = templates_load(ps_config_str("PAYSTREAM_TEMPLATE_DIR"), err,
                                            sizeof(err));
    sender_config(&sc, templates);
    if (templates == NULL || make_plan_sql(err, sizeof(err)) < 0 ||
        smtp_check(&sc.smtp, ps_config_bool("PAYSTREAM_SMTP_ALLOW_PLAINTEXT_AUTH"), err,
                   sizeof(err)) < 0) {
        fprintf(stderr, "paystream-notifications: %s\n", err);
        templates_free(templates);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread */
    static const char *const topics[] = {PS_TOPIC_DOMAIN_EVENTS, NULL};
    ps_worker_t w;
    if (ps_worker_open(&w, "paystream-notifications", ps_config_str("PAYSTREAM_NOTIFY_GROUP"),
                       topics, statements, sizeof(statements) / sizeof(statements[0])) < 0) {
        templates_free(templates);
        return 1;
    }
    queued = ps_metric_gauge("paystream_notifications_queued",
                             "notifications waiting to be sent or being sent, by channel");
    queue_oldest = ps_metric_gauge("paystream_notification_queue_oldest_seconds",
                                   "age of the oldest notification not sent yet, by channel");
    w.prepare = ps_domain_events_prepare;
    w.release = ps_alike_release;
    w.tick = measure_queue;
    w.tick_ms = 1000;
    if (senders_start(&sc, err, sizeof(err)) < 0) {
        ps_log_error("cannot start the senders", "detail", err, NULL);
        ps_worker_close(&w);
        templates_free(templates);
        return 1;
    }
    if (*sc.smtp.url == '\0')
        ps_log_warn("PAYSTREAM_SMTP_URL is not set: no email will be sent", NULL);
    ps_log_info("notifications worker started", "group", ps_config_str("PAYSTREAM_NOTIFY_GROUP"),
                "version", PS_VERSION, NULL);
    rc = ps_worker_consume(&w, (size_t)ps_config_int("PAYSTREAM_NOTIFY_BATCH_MAX"), plan_batch,
                           &run);
    senders_stop();
    ps_worker_close(&w);
    templates_free(templates);
    curl_global_cleanup();
    ps_log_info("notifications worker stopped", NULL);
    return rc;
}
