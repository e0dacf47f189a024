/* paystream-intake: the thin HTTP front. Verifies webhooks and publishes them
 * to Kafka, answering only once Kafka has acknowledged them. */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "auth.h"
#include "waiter.h"
#include "intake.h"
#include "paystream/config.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/util.h"

intake_t intake;

static const ps_cfg_var_t config[] = {
    PS_CFG_COMMON,
    {"PAYSTREAM_HTTP_ADDR", PS_CFG_STRING, "127.0.0.1", 0, 0,
     "IPv4 or IPv6 address to listen on (0.0.0.0 or :: for every interface; :: takes IPv4 too)"},
    {"PAYSTREAM_HTTP_PORT", PS_CFG_INT, "8080", 1, 65535, "TCP port to listen on"},
    {"PAYSTREAM_HTTP_THREADS", PS_CFG_INT, "2", 1, 64, "HTTP worker threads (one per core)"},
    {"PAYSTREAM_ADMIN_ADDR", PS_CFG_STRING, "127.0.0.1", 0, 0,
     "IPv4 or IPv6 address of the operators' listener (see PAYSTREAM_ADMIN_PORT)"},
    {"PAYSTREAM_ADMIN_PORT", PS_CFG_INT, "0", 0, 65535,
     "serve /health, /ready and /metrics on this port only, not with the webhooks and the "
     "API; 0 serves everything on PAYSTREAM_HTTP_PORT"},
    {"PAYSTREAM_MAX_BODY_BYTES", PS_CFG_INT, "1048576", 1024, 67108864,
     "largest request body accepted; larger ones get 413"},
    {"PAYSTREAM_PUBLISH_TIMEOUT_MS", PS_CFG_INT, "5000", 100, 300000,
     "how long a webhook waits for Kafka's acknowledgement before 503"},
    {"PAYSTREAM_PRODUCER_LINGER_MS", PS_CFG_INT, "1", 0, 1000,
     "how long the producer waits to batch messages"},
    {"STRIPE_WEBHOOK_SECRET", PS_CFG_SECRET, "", 0, 0,
     "whsec_ secret(s) of the platform endpoint, comma-separated while rolling"},
    {"STRIPE_CONNECT_WEBHOOK_SECRET", PS_CFG_SECRET, "", 0, 0,
     "whsec_ secret(s) of the Connect endpoint, comma-separated while rolling"},
    {"STRIPE_WEBHOOK_TOLERANCE_S", PS_CFG_INT, "300", 1, 86400,
     "largest age (or lead) of a signature timestamp, in seconds"},
    {"PAYPAL_WEBHOOK_ID", PS_CFG_STRING, "", 0, 0,
     "id(s) PayPal gave this server's webhook, comma-separated; unset, /webhooks/paypal "
     "answers 503"},
    {"PAYPAL_CERT_URL_PREFIXES", PS_CFG_STRING,
     "https://api.paypal.com/v1/notifications/certs/,https://api-m.paypal.com/v1/notifications/"
     "certs/,https://api.sandbox.paypal.com/v1/notifications/certs/,https://api-m.sandbox."
     "paypal.com/v1/notifications/certs/", 0, 0,
     "where PayPal's signing certificates may come from (PAYPAL-CERT-URL), comma-separated"},
    {"PAYPAL_CERT_CA_FILE", PS_CFG_STRING, "", 0, 0,
     "PEM file of the CAs PayPal's signing certificate must chain to; unset, the system's"},
    {"PAYSTREAM_JWT_SECRET", PS_CFG_SECRET, "", 0, 0,
     "HS256 key of the API's bearer tokens; unset, only API keys are accepted"},
    {"PAYSTREAM_API_THREADS", PS_CFG_INT, "4", 1, 64,
     "threads (each with a PostgreSQL connection) serving /api/v1"},
    {"PAYSTREAM_API_MAX_WAIT_S", PS_CFG_INT, "30", 0, 300,
     "longest Prefer: wait honoured, in seconds"},
    {"PAYSTREAM_RATE_LIMIT_PER_S", PS_CFG_INT, "50", 0, 1000000,
     "API writes per second per actor (token bucket refill); 0 turns the limit off"},
    {"PAYSTREAM_RATE_LIMIT_BURST", PS_CFG_INT, "100", 1, 1000000,
     "API writes an actor may make at once (token bucket size)"},
    {"PAYSTREAM_AUTH_FAILURES_PER_S", PS_CFG_INT, "1", 1, 1000000,
     "failed authentications per second per client address (refill); over it, 429"},
    {"PAYSTREAM_AUTH_FAILURE_BURST", PS_CFG_INT, "20", 1, 1000000,
     "failed authentications a client address may make at once"},
    PS_CFG_BILLING,
    PS_CFG_STRIPE_MODE,
};
#define NCONFIG (sizeof(config) / sizeof(config[0]))

static volatile sig_atomic_t run = 1;
static atomic_int polling = 1; /* until the stop's drain is over */

static void stop(int sig)
{
    (void)sig;
    run = 0;
}

/* Serves delivery reports: each one answers a waiting webhook. */
static void *poll_producer(void *arg)
{
    (void)arg;
    while (atomic_load(&polling))
        rd_kafka_poll(intake.producer, 100);
    return NULL;
}

void intake_delivered(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    (void)opaque;
    publish_t *pub = msg->_private;
    ps_metric_observe(intake.publish_latency, "", (double)(ps_mono_us() - pub->produced_us) / 1e6);
    pub->done(pub, msg->err);
}

/* A graceful stop: take no new request, let every one already taken get
 * its answer (webhooks their delivery report, API writes their queued
 * turn, waiting commands 202), then go. Everything answered 200 is in
 * Kafka; what was refused with 503 is retried by its sender. */
static int drain(struct MHD_Daemon *http)
{
    int64_t started = ps_mono_ms();
    int bound = (int)ps_config_int("PAYSTREAM_PUBLISH_TIMEOUT_MS") + 1000;
    ps_log_info("intake stopping: new requests get 503", NULL);
    int listen_fd = http_drain(http);
    api_stop();
    /* Each message in flight gets its report within the publish timeout. */
    for (int64_t end = ps_mono_ms() + bound; rd_kafka_outq_len(intake.producer) > 0 &&
                                              ps_mono_ms() < end;)
        ps_sleep_ms(10);
    waiter_stop();
    int left = http_wait_answered(bound);
    atomic_store(&polling, 0);
    char took[24], open[16];
    snprintf(took, sizeof(took), "%" PRId64, ps_mono_ms() - started);
    snprintf(open, sizeof(open), "%d", left);
    ps_log_info("intake drained", "took_ms", took, "unanswered", open, NULL);
    return listen_fd;
}

static void register_metrics(void)
{
    static const double latency_bounds[] = {0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
                                            0.1,   0.25,  0.5,   1,    2.5,   5};
    intake.requests = ps_metric_counter("paystream_http_requests_total",
                                        "HTTP requests by route and status");
    intake.verify_failures = ps_metric_counter("paystream_webhook_verification_failures_total",
                                               "webhooks rejected by signature checks");
    intake.publish_failures = ps_metric_counter("paystream_publish_failures_total",
                                                "messages Kafka did not acknowledge");
    intake.auth_failures = ps_metric_counter("paystream_auth_failures_total",
                                             "API requests whose credentials were refused");
    intake.key_lookups = ps_metric_counter("paystream_api_key_lookups_total",
                                           "API keys looked up in PostgreSQL (not cached)");
    intake.publish_latency = ps_metric_histogram(
        "paystream_publish_latency_seconds", "time from produce to Kafka acknowledgement",
        latency_bounds, sizeof(latency_bounds) / sizeof(latency_bounds[0]));
}

/* Starts the listener of webhooks and the API and, when PAYSTREAM_ADMIN_PORT
 * is set, the operators' own. Returns 0, or 1 with err saying why. */
static int start_listeners(struct MHD_Daemon **http, struct MHD_Daemon **admin, char *err,
                           size_t errlen)
{
    char why[256];
    int admin_port = (int)ps_config_int("PAYSTREAM_ADMIN_PORT");
    int threads = (int)ps_config_int("PAYSTREAM_HTTP_THREADS");
    const char *addr = ps_config_str("PAYSTREAM_HTTP_ADDR");
    *http = http_start(addr, (int)ps_config_int("PAYSTREAM_HTTP_PORT"), threads,
                       admin_port ? LISTEN_PUBLIC : LISTEN_ALL, why, sizeof(why));
    if (*http == NULL) {
        snprintf(err, errlen, "PAYSTREAM_HTTP_ADDR/_PORT: %s", why);
        return 1;
    }
    ps_log_info("intake listening", "addr", addr, "port", ps_config_str("PAYSTREAM_HTTP_PORT"),
                "serves", admin_port ? "webhooks, api" : "everything", "version", PS_VERSION,
                NULL);
    if (admin_port == 0)
        return 0;
    *admin = http_start(ps_config_str("PAYSTREAM_ADMIN_ADDR"), admin_port, 1, LISTEN_ADMIN, why,
                        sizeof(why));
    if (*admin == NULL) {
        snprintf(err, errlen, "PAYSTREAM_ADMIN_ADDR/_PORT: %s", why);
        return 1;
    }
    ps_log_info("intake listening", "addr", ps_config_str("PAYSTREAM_ADMIN_ADDR"), "port",
                ps_config_str("PAYSTREAM_ADMIN_PORT"), "serves", "health, ready, metrics", NULL);
    return 0;
}

int main(int argc, char **argv)
{
    char err[512];
    if (argc > 1) {
        int help = strcmp(argv[1], "--help") == 0;
        ps_config_usage(help ? stdout : stderr, "paystream-intake",
                        "Takes Stripe webhooks and API commands over HTTP, verifies them and "
                        "publishes them to Kafka.\n  --help  this text", config, NCONFIG);
        return help ? 0 : 2;
    }
    ps_malloc_tune(PS_MALLOC_SERVE);
    if (ps_config_start("intake", config, NCONFIG) < 0)
        return 2;
    if (webhooks_init(err, sizeof(err)) < 0 || paypal_webhooks_init(err, sizeof(err)) < 0 ||
        auth_init(err, sizeof(err)) < 0) {
        fprintf(stderr, "paystream-intake: %s\n", err);
        return 2;
    }
    if (ps_billing_parse(ps_config_str("PAYSTREAM_BILLING_CURRENCY"),
                         ps_config_str("PAYSTREAM_METER_PRICES"), &intake.billing, err,
                         sizeof(err)) < 0) {
        fprintf(stderr,
                "paystream-intake: PAYSTREAM_BILLING_CURRENCY or PAYSTREAM_METER_PRICES: %s\n",
                err);
        return 2;
    }
    if ((intake.livemode = ps_config_stripe_livemode(err, sizeof(err))) < 0) {
        fprintf(stderr, "paystream-intake: %s\n", err);
        return 2;
    }
    register_metrics();
    intake.max_body = (size_t)ps_config_int("PAYSTREAM_MAX_BODY_BYTES");
    intake.pg_dsn = ps_config_str("PAYSTREAM_PG_DSN");
    intake.producer = ps_kafka_producer_new(
        ps_config_str("PAYSTREAM_KAFKA_BROKERS"), "paystream-intake", intake_delivered,
        (int)ps_config_int("PAYSTREAM_PUBLISH_TIMEOUT_MS"),
        (int)ps_config_int("PAYSTREAM_PRODUCER_LINGER_MS"), err, sizeof(err));
    if (intake.producer == NULL) {
        ps_log_error("cannot create the kafka producer", "detail", err, NULL);
        return 1;
    }
    intake.max_wait_ms = (int)ps_config_int("PAYSTREAM_API_MAX_WAIT_S") * 1000;
    auth_limits((double)ps_config_int("PAYSTREAM_RATE_LIMIT_PER_S"),
                (double)ps_config_int("PAYSTREAM_RATE_LIMIT_BURST"),
                (double)ps_config_int("PAYSTREAM_AUTH_FAILURES_PER_S"),
                (double)ps_config_int("PAYSTREAM_AUTH_FAILURE_BURST"));
    if (waiter_start(intake.pg_dsn, err, sizeof(err)) < 0 ||
        api_start(intake.pg_dsn, (int)ps_config_int("PAYSTREAM_API_THREADS"), err,
                  sizeof(err)) < 0) {
        ps_log_error("cannot start the API", "detail", err, NULL);
        rd_kafka_destroy(intake.producer);
        return 1;
    }
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGPIPE, SIG_IGN);
    pthread_t poller;
    pthread_create(&poller, NULL, poll_producer, NULL);
    probes_start();
    struct MHD_Daemon *http = NULL, *admin = NULL;
    int rc = start_listeners(&http, &admin, err, sizeof(err));
    if (rc != 0) {
        ps_log_error("cannot start the HTTP server", "detail", err, NULL);
        run = 0;
    }
    while (run)
        ps_sleep_ms(200);
    int listen_fd = drain(http);
    pthread_join(poller, NULL);
    probes_stop();
    if (http)
        MHD_stop_daemon(http);
    if (admin)
        MHD_stop_daemon(admin);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    rd_kafka_flush(intake.producer, 1000);
    rd_kafka_destroy(intake.producer);
    webhooks_free();
    paypal_webhooks_free();
    auth_free();
    ps_log_info("intake stopped", NULL);
    return rc;
}
