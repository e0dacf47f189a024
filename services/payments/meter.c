/* Reporting usage to Stripe as billing meter events, in a thread of the
 * payments worker with a PostgreSQL connection of its own.
 *
 * Each round claims a batch of pending records (a lease: SKIP LOCKED picks
 * rows no other worker holds, and pushing next_report_at forward keeps them
 * from being claimed again while they are reported), reports them one by
 * one and records each answer. A worker that dies mid-batch leaves its
 * leases to expire; the records are then reported again with the same
 * identifier, which Stripe dedupes, so a record counts once. A record Stripe
 * refuses for good is marked failed with the reason; when the outcome is
 * unknown the record (and the rest of the batch) waits with backoff. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/log.h"
#include "paystream/metrics.h"
#include "paystream/util.h"

#define BATCH "100"
#define IDLE_MS 1000
#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS 300000

static const ps_pg_stmt_t statements[] = {
    {"meter_claim",
     "UPDATE usage_records u SET next_report_at = now() + interval '5 minutes' "
     "FROM customers c "
     "WHERE c.id = u.customer_id AND (u.customer_id, u.identifier) IN ("
     "  SELECT customer_id, identifier FROM usage_records "
     "  WHERE meter_status = 'pending' AND next_report_at <= now() "
     "  ORDER BY next_report_at LIMIT $1::integer FOR UPDATE SKIP LOCKED) "
     "RETURNING u.customer_id, u.identifier, u.meter, u.quantity, "
     "extract(epoch FROM u.occurred_at)::bigint, u.stripe_identifier, c.stripe_customer_id, "
     "u.report_attempts",
     1},
    {"meter_reported",
     "UPDATE usage_records SET meter_status = 'reported', reported_at = now(), last_error = NULL, "
     "report_attempts = report_attempts + 1 WHERE customer_id = $1 AND identifier = $2",
     2},
    {"meter_failed",
     "UPDATE usage_records SET meter_status = 'failed', last_error = $3, "
     "report_attempts = report_attempts + 1 WHERE customer_id = $1 AND identifier = $2",
     3},
    {"meter_retry",
     "UPDATE usage_records SET last_error = $3, report_attempts = report_attempts + 1, "
     "next_report_at = now() + $4::bigint * interval '1 millisecond' "
     "WHERE customer_id = $1 AND identifier = $2",
     4},
};

static struct {
    pthread_t thread;
    atomic_int running;
    char *dsn;
    ps_metric_t *backlog, *events;
    int64_t measure_due_ms;
} reporter;

/* The usage records still to report, once a second (by the partial index
 * of pending records). */
static void measure_backlog(ps_pg_t *pg)
{
    if (ps_mono_ms() < reporter.measure_due_ms)
        return;
    reporter.measure_due_ms = ps_mono_ms() + 1000;
    ps_pg_err_t err;
    PGresult *res = ps_pg_query(pg, "SELECT count(*) FROM usage_records "
                                    "WHERE meter_status = 'pending'", 0, NULL, &err);
    if (res && PQntuples(res) == 1)
        ps_metric_set(reporter.backlog, "", strtod(PQgetvalue(res, 0, 0), NULL));
    PQclear(res);
}

static void sleep_while_running(int64_t ms)
{
    for (int64_t waited = 0; waited < ms && atomic_load(&reporter.running); waited += 100)
        ps_sleep_ms(100);
}

/* Records what became of row i of a claim. */
static void record(ps_pg_t *pg, PGresult *claim, int i, const char *stmt, const char *error,
                   int64_t delay_ms)
{
    char delay[24];
    snprintf(delay, sizeof(delay), "%" PRId64, delay_ms);
    const char *values[] = {PQgetvalue(claim, i, 0), PQgetvalue(claim, i, 1), error, delay};
    int nparams = strcmp(stmt, "meter_reported") == 0 ? 2 : strcmp(stmt, "meter_failed") == 0 ? 3 : 4;
    ps_pg_err_t err;
    PGresult *res = ps_pg_exec_prepared(pg, stmt, nparams, values, &err);
    if (res == NULL) /* the lease runs out and the record is reported again */
        ps_log_warn("cannot record a meter event's outcome", "identifier", values[1], "detail",
                    err.message, NULL);
    PQclear(res);
}

/* One round; returns how many records it claimed. */
static int report_round(ps_pg_t *pg)
{
    ps_pg_err_t err;
    const char *limit[] = {BATCH};
    PGresult *claim = ps_pg_ensure(pg, &err) == 0
                          ? ps_pg_exec_prepared(pg, "meter_claim", 1, limit, &err)
                          : NULL;
    if (claim == NULL) {
        ps_log_warn("cannot claim usage records to report", "detail", err.message, NULL);
        return 0;
    }
    int n = PQntuples(claim), unreachable = 0;
    int64_t delay = 0;
    char why[512];
    for (int i = 0; i < n; i++) {
        if (unreachable) {
            record(pg, claim, i, "meter_retry", "not tried: Stripe did not answer", delay);
            continue;
        }
        meter_event_t ev = {
            .event_name = PQgetvalue(claim, i, 2),
            .value = strtoll(PQgetvalue(claim, i, 3), NULL, 10),
            .timestamp = strtoll(PQgetvalue(claim, i, 4), NULL, 10),
            .identifier = PQgetvalue(claim, i, 5),
            .stripe_customer_id = PQgetvalue(claim, i, 6),
        };
        int rc = stripe_meter_event(&ev, why, sizeof(why));
        ps_metric_add(reporter.events,
                      rc == 0 ? "result=\"reported\"" : rc == 1 ? "result=\"failed\""
                                                             : "result=\"retry\"",
                      1);
        if (rc == 0) {
            record(pg, claim, i, "meter_reported", NULL, 0);
        } else if (rc == 1) {
            ps_log_error("Stripe refused a meter event; it will not be retried", "identifier",
                         ev.identifier, "detail", why, NULL);
            record(pg, claim, i, "meter_failed", why, 0);
        } else {
            int attempts = atoi(PQgetvalue(claim, i, 7));
            delay = ps_backoff_ms(attempts, BACKOFF_BASE_MS, BACKOFF_CAP_MS);
            ps_log_warn("meter event outcome unknown; retrying with the same identifier",
                        "identifier", ev.identifier, "detail", why, NULL);
            record(pg, claim, i, "meter_retry", why, delay);
            unreachable = 1;
        }
    }
    PQclear(claim);
    if (unreachable)
        sleep_while_running(delay);
    return n;
}

static void *reporter_loop(void *arg)
{
    (void)arg;
    char err[256];
    ps_pg_t *pg = NULL;
    while (atomic_load(&reporter.running)) {
        if (pg == NULL &&
            (pg = ps_pg_connect(reporter.dsn, statements, sizeof(statements) / sizeof(statements[0]),
                                err, sizeof(err))) == NULL) {
            ps_log_warn("meter reporter cannot connect to postgresql", "detail", err, NULL);
            sleep_while_running(IDLE_MS * 5);
            continue;
        }
        int reported = report_round(pg);
        measure_backlog(pg);
        if (reported < atoi(BATCH))
            sleep_while_running(IDLE_MS);
    }
    ps_pg_close(pg);
    return NULL;
}

int meter_reporter_start(const char *dsn, char *err, size_t errlen)
{
    reporter.backlog = ps_metric_gauge("paystream_meter_backlog",
                                       "usage records not yet reported to Stripe as meter events");
    reporter.events = ps_metric_counter("paystream_meter_events_total",
                                        "meter events sent to Stripe, by result: reported, "
                                        "failed (refused for good), retry (outcome unknown)");
    reporter.dsn = ps_xstrdup(dsn);
    atomic_store(&reporter.running, 1);
    if (pthread_create(&reporter.thread, NULL, reporter_loop, NULL) != 0) {
        snprintf(err, errlen, "cannot start the meter reporter thread");
        free(reporter.dsn);
        reporter.dsn = NULL;
        return -1;
    }
    return 0;
}

void meter_reporter_stop(void)
{
    if (reporter.dsn == NULL)
        return;
    atomic_store(&reporter.running, 0);
    pthread_join(reporter.thread, NULL);
    free(reporter.dsn);
    reporter.dsn = NULL;
}
