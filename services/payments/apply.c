/* Applying a poll batch exactly once in effect. Its Stripe events go in one
 * transaction and one call of ps_apply_stripe_events, its commands in one of
 * ps_apply_commands, its usage records in one of ps_apply_usage (dedupe
 * included in each); if any message makes one fail
 * for a reason of its own, that part is applied message by message so that
 * only that one is retried and, in the end, dead-lettered.
 * Failures of the database itself are retried until it comes back: the
 * messages are not at fault, and dead-lettering them would lose order. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/util.h"

#define MAX_ATTEMPTS 4      /* for a message whose own apply fails */
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 30000

const ps_pg_stmt_t payments_statements[] = {
    {"apply_stripe_events", "SELECT ord, event_id, outcome FROM ps_apply_stripe_events($1::jsonb)", 1},
    {"apply_commands", "SELECT ord, command_id, outcome FROM ps_apply_commands($1::jsonb)", 1},
    {"apply_usage", "SELECT ord, record_id, outcome FROM ps_apply_usage($1::jsonb)", 1},
    {"gateway_begin", "SELECT call::text, duplicate FROM ps_gateway_begin($1::jsonb)", 1},
    {"gateway_finish", "SELECT ps_gateway_finish($1::jsonb, $2::jsonb)", 2},
    {"billing_begin", "SELECT call::text, duplicate FROM ps_billing_begin($1::jsonb)", 1},
    {"billing_finish", "SELECT ps_billing_finish($1::jsonb, $2::jsonb)", 2},
    {"insert_dead_letter",
     "INSERT INTO dead_letters (topic, \"partition\", \"offset\", message_id, reason, payload) "
     "VALUES ($1, $2, $3, $4, $5, $6::bytea) ON CONFLICT DO NOTHING", 6},
};
const size_t payments_nstatements = sizeof(payments_statements) / sizeof(payments_statements[0]);

/* The messages of one kind in a poll batch and the statement that applies
 * them. */
typedef struct {
    const char *stmt;
    batch_event_t **ecs;
    size_t n;
} group_t;

/* Counts the outcome of each message of a batch: rows of (ord, id,
 * outcome), ord counting ecs from 1. */
static void count_outcomes(apply_stats_t *stats, batch_event_t **ecs, size_t count,
                           PGresult *res)
{
    for (int row = 0; row < PQntuples(res); row++) {
        long ord = strtol(PQgetvalue(res, row, 0), NULL, 10);
        const char *outcome = PQgetvalue(res, row, 2);
        if (strcmp(outcome, "applied") == 0)
            stats->applied++;
        else if (strcmp(outcome, "duplicate") == 0)
            stats->duplicate++;
        else if (strcmp(outcome, "stale") == 0)
            stats->stale++;
        else if (strcmp(outcome, "refused") == 0)
            stats->refused++;
        else
            stats->recorded++;
        if (ord >= 1 && (size_t)ord <= count)
            ps_log_debug("message applied", "message_id", ecs[ord - 1]->env.message_id,
                         ecs[ord - 1]->command_id[0] ? "command_id" : "event_id",
                         PQgetvalue(res, row, 1), "outcome", outcome, NULL);
    }
}

/* The JSON array of a batch's events. */
static char *batch_json(batch_event_t **ecs, size_t count)
{
    size_t len = 3;
    for (size_t i = 0; i < count; i++)
        len += strlen(ecs[i]->json) + 1;
    char *out = ps_xmalloc(len), *w = out;
    *w++ = '[';
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            *w++ = ',';
        size_t n = strlen(ecs[i]->json);
        memcpy(w, ecs[i]->json, n);
        w += n;
    }
    *w++ = ']';
    *w = '\0';
    return out;
}

/* Waits out a database failure that is not the messages' fault; returns -1
 * when shutdown interrupts the wait. */
static int wait_for_database(ps_pg_t *pg, const ps_pg_err_t *err, int *attempt,
                             volatile sig_atomic_t *run)
{
    int64_t delay = ps_backoff_ms((*attempt)++, BACKOFF_BASE_MS, BACKOFF_CAP_MS);
    char ms[24];
    snprintf(ms, sizeof(ms), "%" PRId64, delay);
    ps_log_warn("database cannot apply the batch now; retrying", "sqlstate", err->sqlstate,
                "detail", err->message, "retry_in_ms", ms, NULL);
    for (int64_t waited = 0; waited < delay && *run; waited += 100)
        ps_sleep_ms(100);
    if (!*run)
        return -1;
    ps_pg_err_t e;
    ps_pg_ensure(pg, &e);
    return 0;
}

int db_run(ps_pg_t *pg, const ps_pg_call_t *call, PGresult **res, ps_pg_err_t *err,
           volatile sig_atomic_t *run)
{
    int attempt = 0;
    while (*run) {
        if (ps_pg_ensure(pg, err) == 0 && ps_pg_batch(pg, call, 1, res, err) == 0)
            return 0;
        if (!err->transient)
            return 1;
        if (wait_for_database(pg, err, &attempt, run) < 0)
            break;
    }
    return -1;
}

/* Applies ecs (count of them) with stmt in one transaction until it
 * commits, fails for a reason of the messages (returns 1, err filled), or
 * shutdown (-1). */
static int run_batch(ps_pg_t *pg, const char *stmt, batch_event_t **ecs, size_t count,
                     apply_stats_t *stats, ps_pg_err_t *err, volatile sig_atomic_t *run)
{
    char *json = batch_json(ecs, count);
    ps_pg_call_t call = {.stmt = stmt, .nparams = 1, .values = {json}};
    PGresult *res;
    int rc = db_run(pg, &call, &res, err, run);
    if (rc == 0) {
        count_outcomes(stats, ecs, count, res);
        PQclear(res);
    }
    free(json);
    return rc;
}

/* Applies one message alone, with bounded retries, then dead-letters it. */
static int apply_one(ps_pg_t *pg, rd_kafka_t *dlq, const char *stmt, batch_event_t *ec,
                     apply_stats_t *stats, volatile sig_atomic_t *run)
{
    ps_pg_err_t err = {0};
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        int rc = run_batch(pg, stmt, &ec, 1, stats, &err, run);
        if (rc <= 0)
            return rc;
        if (attempt + 1 < MAX_ATTEMPTS)
            ps_sleep_ms(ps_backoff_ms(attempt, BACKOFF_BASE_MS, BACKOFF_CAP_MS));
    }
    char reason[700];
    snprintf(reason, sizeof(reason), "database refused the message (SQLSTATE %s): %s",
             err.sqlstate, err.message);
    if (dead_letter(pg, dlq, ec->msg, ec->env.message_id, reason, run) < 0)
        return -1;
    stats->dead_lettered++;
    return 0;
}

/* Applies ecs in one transaction, or message by message when that fails
 * for a reason of the messages. Returns 0, or -1 on shutdown. */
static int apply_run(ps_pg_t *pg, rd_kafka_t *dlq, const char *stmt, batch_event_t **ecs,
                     size_t n, apply_stats_t *stats, volatile sig_atomic_t *run)
{
    if (n == 0)
        return 0;
    ps_pg_err_t err = {0};
    int r = run_batch(pg, stmt, ecs, n, stats, &err, run);
    if (r != 1)
        return r;
    ps_log_warn("batch refused; applying its messages one by one", "sqlstate", err.sqlstate,
                "detail", err.message, NULL);
    for (size_t i = 0; i < n; i++) {
        if (apply_one(pg, dlq, stmt, ecs[i], stats, run) < 0)
            return -1;
    }
    return 0;
}

/* Applies a group. Commands that call the gateway go one at a time, in
 * their place in the log; the runs of other commands between them go in
 * one transaction each. */
static int apply_group(ps_pg_t *pg, rd_kafka_t *dlq, const group_t *g, apply_stats_t *stats,
                       volatile sig_atomic_t *run)
{
    size_t start = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (g->ecs[i]->begin == NULL)
            continue;
        if (apply_run(pg, dlq, g->stmt, g->ecs + start, i - start, stats, run) < 0 ||
            gateway_command_apply(pg, dlq, g->ecs[i], stats, run) < 0)
            return -1;
        start = i + 1;
    }
    return apply_run(pg, dlq, g->stmt, g->ecs + start, g->n - start, stats, run);
}

void batch_event_bad(batch_event_t *ec, const char *what, const char *detail)
{
    ec->bad = 1;
    snprintf(ec->reason, sizeof(ec->reason), "%s: %s", what, detail);
}

int batch_event_envelope(batch_event_t *ec)
{
    char err[256] = "";
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_message_headers(ec->msg, &hdrs);
    if (ps_envelope_from_headers(hdrs, &ec->env, err, sizeof(err)) < 0) {
        batch_event_bad(ec, "bad envelope", err);
        return -1;
    }
    return 0;
}

static void batch_event_release(batch_event_t *ec)
{
    free(ec->json);
    memset(ec, 0, sizeof(*ec));
}

int apply_batch(ps_pg_t *pg, rd_kafka_t *dlq, rd_kafka_message_t **msgs, size_t n,
                apply_stats_t *stats, volatile sig_atomic_t *run)
{
    batch_event_t *ecs = ps_xcalloc(n, sizeof(*ecs));
    group_t groups[] = {
        {"apply_stripe_events", ps_xcalloc(n, sizeof(batch_event_t *)), 0},
        {"apply_commands", ps_xcalloc(n, sizeof(batch_event_t *)), 0},
        {"apply_usage", ps_xcalloc(n, sizeof(batch_event_t *)), 0},
    };
    int rc = 0;
    stats->batches++;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *topic = rd_kafka_topic_name(msgs[i]->rkt);
        group_t *g = &groups[0];
        ecs[i].msg = msgs[i];
        if (strcmp(topic, PS_TOPIC_COMMANDS_PAYMENTS) == 0) {
            g = &groups[1];
            command_prepare(&ecs[i]);
        } else if (strcmp(topic, PS_TOPIC_COMMANDS_USAGE) == 0) {
            g = &groups[2];
            usage_prepare(&ecs[i]);
        } else {
            stripe_event_prepare(&ecs[i]);
        }
        if (!ecs[i].bad) {
            g->ecs[g->n++] = &ecs[i];
            continue;
        }
        /* A message that can never apply: no retry will change that. */
        rc = dead_letter(pg, dlq, msgs[i], ecs[i].env.message_id, ecs[i].reason, run);
        if (rc == 0)
            stats->dead_lettered++;
    }
    for (size_t k = 0; k < sizeof(groups) / sizeof(groups[0]); k++) {
        if (rc == 0)
            rc = apply_group(pg, dlq, &groups[k], stats, run);
        free(groups[k].ecs);
    }
    for (size_t i = 0; i < n; i++)
        batch_event_release(&ecs[i]);
    free(ecs);
    return rc;
}
