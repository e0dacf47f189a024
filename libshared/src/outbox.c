/* The outbox relay; see paystream/outbox.h. */
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "paystream/config.h"
#include "paystream/envelope.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/metrics.h"
#include "paystream/outbox.h"
#include "paystream/pg.h"
#include "paystream/util.h"

#define ROUND_ROWS 500
#define ROUND_ROWS_SQL "500"    /* the same, for the query */
#define DELIVERY_TIMEOUT_MS 30000
#define LOOK_AGAIN_MS 1000       /* a missed NOTIFY costs at most this */
#define RETRY_MS 2000
#define LOCK_KEY "7013560201"    /* pg_try_advisory_lock key of the relay */
#define PENDING (-1)

static struct {
    pthread_t thread;
    atomic_int running;
    int started;
    char *dsn;
    rd_kafka_t *producer;
} relay;

/* Delivery report: msg->_private is the row's status slot. */
static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    (void)opaque;
    int *status = msg->_private;
    *status = (int)msg->err;
}

/* Sleeps up to ms, or less when the relay is stopped. */
static void pause_ms(int64_t ms)
{
    for (int64_t waited = 0; waited < ms && atomic_load(&relay.running); waited += 100)
        ps_sleep_ms(100);
}

static const ps_pg_stmt_t relay_statements[] = {
    {"outbox_round",
     "SELECT id, message_id, aggregate, type, source, payload::text, "
     "(extract(epoch FROM created_at) * 1000)::bigint FROM outbox "
     "WHERE published_at IS NULL ORDER BY id LIMIT " ROUND_ROWS_SQL, 0},
    {"outbox_mark", "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", 1},
};

static PGconn *relay_connect(void)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *values[] = {relay.dsn, "5", "paystream-outbox-relay", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    PGresult *res = PQstatus(conn) == CONNECTION_OK ? PQexec(conn, "LISTEN ps_outbox") : NULL;
    int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    /* Prepared and planned once per session: the relay runs a round after
     * nearly every commit that adds to the outbox, and each was planned
     * anew (a plan for the few ids of one round looks cheaper than the
     * generic one, so PostgreSQL would go on making them). By index scans,
     * whatever the outbox's size when they are planned (the first round
     * may see it empty and plan a sequential scan for good). Not bitmap
     * scans: rows marked published stay in the index of unpublished ones
     * until a vacuum, and only an index scan marks their entries dead once
     * it has seen them; a bitmap scan visited every one of them again in
     * every round (0.7 ms a round after 900 domain events, 0.05 once they
     * were marked). */
    if (ok) {
        res = PQexec(conn, "SET plan_cache_mode = force_generic_plan; "
                           "SET enable_seqscan = off; SET enable_bitmapscan = off");
        ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
    }
    if (ok) {
        res = ps_pg_prepare(conn, relay_statements,
                            sizeof(relay_statements) / sizeof(relay_statements[0]));
        ok = res == NULL;
        PQclear(res);
    }
    if (!ok) {
        ps_log_warn("outbox relay cannot open its postgresql session; retrying", "detail",
                    PQerrorMessage(conn), NULL);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Whether this relay holds the lock (it keeps it as long as its session). */
static int take_lock(PGconn *conn)
{
    PGresult *res = PQexec(conn, "SELECT pg_try_advisory_lock(" LOCK_KEY ")");
    int got = res && PQresultStatus(res) == PGRES_TUPLES_OK && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return got;
}

/* Waits for a NOTIFY or LOOK_AGAIN_MS; -1 when the connection is lost. */
static int wait_notify(PGconn *conn)
{
    int fd = PQsocket(conn);
    fd_set in;
    FD_ZERO(&in);
    FD_SET(fd, &in);
    struct timeval tv = {LOOK_AGAIN_MS / 1000, (LOOK_AGAIN_MS % 1000) * 1000};
    if (select(fd + 1, &in, NULL, NULL, &tv) < 0 || !PQconsumeInput(conn))
        return -1;
    PGnotify *n;
    while ((n = PQnotifies(conn)) != NULL)
        PQfreemem(n);
    return 0;
}

/* Queues row i of res; returns 0, or the error (no report will come). */
static int produce_row(PGresult *res, int i, int *status)
{
    ps_envelope_t env = {0};
    ps_strlcpy(env.message_id, PQgetvalue(res, i, 1), sizeof(env.message_id));
    ps_strlcpy(env.type, PQgetvalue(res, i, 3), sizeof(env.type));
    ps_strlcpy(env.source, PQgetvalue(res, i, 4), sizeof(env.source));
    env.received_at_ms = strtoll(PQgetvalue(res, i, 6), NULL, 10);
    const char *value = PQgetvalue(res, i, 5);
    *status = PENDING;
    rd_kafka_resp_err_t err = ps_envelope_produce(relay.producer, PS_TOPIC_DOMAIN_EVENTS,
                                                  PQgetvalue(res, i, 2), value, strlen(value),
                                                  &env, status);
    if (err)
        *status = (int)err;
    return (int)err;
}

/* Waits for the reports of the n rows queued; purges what is still
 * waiting at the deadline, so that every slot is set on return. */
static void await_reports(int *status, int n)
{
    int64_t deadline = ps_mono_ms() + DELIVERY_TIMEOUT_MS;
    for (;;) {
        int pending = 0;
        for (int i = 0; i < n; i++)
            pending += status[i] == PENDING;
        if (pending == 0)
            return;
        if (ps_mono_ms() >= deadline)
            rd_kafka_purge(relay.producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(relay.producer, 50);
    }
}

/* Marks rows 0..k-1 of res published, by id: a row of a smaller id that
 * commits later is not touched. */
static int mark_published(PGconn *conn, PGresult *res, int k)
{
    size_t cap = (size_t)k * 21 + 3, len = 0;
    char *ids = ps_xmalloc(cap);
    ids[len++] = '{';
    for (int i = 0; i < k; i++)
        len += (size_t)snprintf(ids + len, cap - len, "%s%s", i ? "," : "", PQgetvalue(res, i, 0));
    snprintf(ids + len, cap - len, "}");
    const char *params[] = {ids};
    PGresult *upd = PQexecPrepared(conn, "outbox_mark", 1, params, NULL, NULL, 0);
    int ok = PQresultStatus(upd) == PGRES_COMMAND_OK;
    if (!ok)
        ps_log_warn("outbox rows published but not marked; they will be published again",
                    "detail", PQerrorMessage(conn), NULL);
    PQclear(upd);
    free(ids);
    return ok ? 0 : -1;
}

/* One round: publishes up to ROUND_ROWS rows in id order and marks the
 * ones acknowledged before the first failure (the rest go again next
 * round, so that one aggregate's events keep their order). Returns the
 * rows marked, or -1. */
static int publish_round(PGconn *conn)
{
    PGresult *res = PQexecPrepared(conn, "outbox_round", 0, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ps_log_warn("outbox relay cannot read the outbox", "detail", PQerrorMessage(conn), NULL);
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res), queued = 0;
    int *status = ps_xcalloc((size_t)(n ? n : 1), sizeof(*status));
    while (queued < n && produce_row(res, queued, &status[queued]) == 0)
        queued++;
    await_reports(status, queued);
    int k = 0;
    while (k < n && status[k] == 0)
        k++;
    if (k < n)
        ps_log_warn("kafka did not take a domain event; publishing it again shortly", "message_id",
                    PQgetvalue(res, k, 1), "type", PQgetvalue(res, k, 3), "detail",
                    rd_kafka_err2str((rd_kafka_resp_err_t)status[k]), NULL);
    int rc = k > 0 && mark_published(conn, res, k) < 0 ? -1 : k;
    if (rc > 0) {
        char count[16];
        snprintf(count, sizeof(count), "%d", k);
        ps_log_debug("domain events published", "count", count, NULL);
    }
    free(status);
    PQclear(res);
    return k < n && rc >= 0 ? -1 : rc;
}

static struct {
    ps_metric_t *backlog, *oldest, *published;
    int64_t due_ms;
} om;

/* The outbox's unpublished rows and the age of the oldest, once a second
 * (by the partial index of unpublished rows: the query reads only those). */
static void measure_backlog(PGconn *conn)
{
    if (ps_mono_ms() < om.due_ms)
        return;
    om.due_ms = ps_mono_ms() + 1000;
    PGresult *res = PQexec(conn, "SELECT count(*), coalesce(extract(epoch FROM now() - "
                                 "min(created_at)), 0) FROM outbox WHERE published_at IS NULL");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        ps_metric_set(om.backlog, "", strtod(PQgetvalue(res, 0, 0), NULL));
        ps_metric_set(om.oldest, "", strtod(PQgetvalue(res, 0, 1), NULL));
    }
    PQclear(res);
}

static void *relay_thread(void *arg)
{
    (void)arg;
    PGconn *conn = NULL;
    int leader = 0;
    while (atomic_load(&relay.running)) {
        if (conn == NULL && (conn = relay_connect()) == NULL) {
            pause_ms(RETRY_MS);
            continue;
        }
        if (!leader) {
            leader = take_lock(conn);
            if (leader) {
                ps_log_info("outbox relay publishing", NULL);
            } else {
                if (PQstatus(conn) != CONNECTION_OK) {
                    PQfinish(conn);
                    conn = NULL;
                } else {
                    measure_backlog(conn); /* every relay says it, publishing or not */
                }
                pause_ms(RETRY_MS); /* another relay publishes */
                continue;
            }
        }
        int n = publish_round(conn);
        if (n > 0)
            ps_metric_add(om.published, "", (uint64_t)n);
        measure_backlog(conn);
        if (n == ROUND_ROWS)
            continue;
        if (n < 0 || wait_notify(conn) < 0) {
            if (PQstatus(conn) != CONNECTION_OK) {
                PQfinish(conn); /* the lock went with the session */
                conn = NULL;
                leader = 0;
            }
            pause_ms(RETRY_MS);
        }
    }
    PQfinish(conn);
    return NULL;
}

int ps_outbox_relay_start(const char *dsn, const char *brokers, const char *client_id,
                          char *err, size_t errlen)
{
    om.backlog = ps_metric_gauge("paystream_outbox_backlog",
                                 "domain events in the outbox not published yet");
    om.oldest = ps_metric_gauge("paystream_outbox_oldest_seconds",
                                "age of the oldest domain event not published yet (0: none)");
    om.published = ps_metric_counter("paystream_outbox_published_total",
                                     "domain events this process's relay published");
    relay.producer = ps_kafka_producer_new(brokers, client_id, delivered, DELIVERY_TIMEOUT_MS, 5,
                                           err, errlen);
    if (relay.producer == NULL)
        return -1;
    relay.dsn = ps_xmalloc(strlen(dsn) + 1);
    memcpy(relay.dsn, dsn, strlen(dsn) + 1);
    atomic_store(&relay.running, 1);
    if (pthread_create(&relay.thread, NULL, relay_thread, NULL) != 0) {
        snprintf(err, errlen, "cannot start the outbox relay thread");
        rd_kafka_destroy(relay.producer);
        free(relay.dsn);
        return -1;
    }
    relay.started = 1;
    return 0;
}

void ps_outbox_relay_stop(void)
{
    if (!relay.started)
        return;
    atomic_store(&relay.running, 0);
    pthread_join(relay.thread, NULL);
    rd_kafka_flush(relay.producer, 5000);
    rd_kafka_destroy(relay.producer);
    free(relay.dsn);
    relay.started = 0;
}

int ps_outbox_relay_start_worker(const char *client_id)
{
    char err[512];
    if (ps_outbox_relay_start(ps_config_str("PAYSTREAM_PG_DSN"),
                              ps_config_str("PAYSTREAM_KAFKA_BROKERS"), client_id, err,
                              sizeof(err)) == 0)
        return 0;
    ps_log_error("cannot start the outbox relay", "detail", err, NULL);
    return -1;
}
