/* Commands that call a gateway, in three steps: the begin statement
 * (ps_gateway_begin, ps_billing_begin) checks the rules and returns the call
 * (one transaction), the gateway is called, the finish statement records
 * its answer (another). See schemas/functions/payments.sql and billing.sql
 * for why this is exactly once in effect. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/log.h"
#include "paystream/util.h"

#define GATEWAY_BACKOFF_BASE_MS 200
#define GATEWAY_BACKOFF_CAP_MS 30000

/* Waits before asking the gateway again; -1 when shutdown interrupts. */
static int gateway_wait(const ps_batch_msg_t *ec, const char *why, int attempt,
                        volatile sig_atomic_t *run)
{
    int64_t delay = ps_backoff_ms(attempt, GATEWAY_BACKOFF_BASE_MS, GATEWAY_BACKOFF_CAP_MS);
    char ms[24];
    snprintf(ms, sizeof(ms), "%" PRId64, delay);
    ps_log_warn("the gateway's answer is unknown; asking again with the same idempotency key",
                "message_id", ec->env.message_id, "detail", why, "retry_in_ms", ms, NULL);
    for (int64_t waited = 0; waited < delay && *run; waited += 100)
        ps_sleep_ms(100);
    return *run ? 0 : -1;
}

/* What a command that calls a gateway carries through the batch (its
 * message's ctx). */
typedef struct {
    const char *begin, *finish; /* its two statements */
    char command_id[48];        /* the gateway's Idempotency-Key */
} gateway_command_t;

void gateway_command_mark(ps_batch_msg_t *ec, const char *command_id, const char *begin,
                          const char *finish)
{
    gateway_command_t *g = ps_xcalloc(1, sizeof(*g));
    g->begin = begin;
    g->finish = finish;
    ps_strlcpy(g->command_id, command_id, sizeof(g->command_id));
    ec->ctx = g;
    ec->alone = 1;
}

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Asks the gateway until it answers. The answer may not be skipped: a
 * call whose outcome is unknown may have charged, so it is repeated with the
 * same key (the partition waits) rather than given up. */
static int ask_gateway(const ps_batch_msg_t *ec, json_t *callj, json_t **outcome,
                       volatile sig_atomic_t *run)
{
    const gateway_command_t *g = ec->ctx;
    char err[256];
    for (int attempt = 0;; attempt++) {
        if (gateway_call(callj, g->command_id, outcome, err, sizeof(err)) == 0)
            return 0;
        if (gateway_wait(ec, err, attempt, run) < 0)
            return -1;
    }
}

static int dead(ps_pg_t *pg, rd_kafka_t *dlq, ps_batch_msg_t *ec, const char *step,
                const ps_pg_err_t *err, ps_apply_stats_t *stats, volatile sig_atomic_t *run)
{
    char reason[700];
    snprintf(reason, sizeof(reason), "database refused %s (SQLSTATE %s): %s", step,
             err->sqlstate, err->message);
    if (ps_dead_letter(pg, dlq, ec->msg, ec->env.message_id, reason, run) < 0)
        return -1;
    stats->dead_lettered++;
    return 0;
}

int gateway_command_apply(ps_pg_t *pg, rd_kafka_t *dlq, ps_batch_msg_t *ec,
                          ps_apply_stats_t *stats, volatile sig_atomic_t *run)
{
    const gateway_command_t *g = ec->ctx;
    ps_pg_err_t err = {0};
    PGresult *res;
    ps_pg_call_t begin = {.stmt = g->begin, .nparams = 1, .values = {ec->json}};
    int r = ps_db_run(pg, &begin, &res, &err, run);
    if (r != 0)
        return r < 0 ? -1 : dead(pg, dlq, ec, "the command", &err, stats, run);
    int duplicate = PQgetvalue(res, 0, 1)[0] == 't';
    json_t *callj = PQgetisnull(res, 0, 0) ? NULL : json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    if (duplicate || callj == NULL) {
        if (duplicate)
            stats->duplicate++;
        else
            stats->refused++;
        return 0;
    }
    json_t *outcome = NULL;
    if (ask_gateway(ec, callj, &outcome, run) < 0) {
        json_decref(callj);
        return -1;
    }
    json_decref(callj);
    char *outcome_text = json_dumps(outcome, JSON_COMPACT);
    ps_log_info("gateway answered", "message_id", ec->env.message_id, "command_id",
                g->command_id, "outcome", str(outcome, "outcome"), NULL);
    json_decref(outcome);
    ps_pg_call_t finish = {.stmt = g->finish, .nparams = 2,
                           .values = {ec->json, outcome_text}};
    r = ps_db_run(pg, &finish, &res, &err, run);
    free(outcome_text);
    if (r == 0) {
        PQclear(res);
        stats->applied++;
        return 0;
    }
    return r < 0 ? -1 : dead(pg, dlq, ec, "the gateway's answer", &err, stats, run);
}
