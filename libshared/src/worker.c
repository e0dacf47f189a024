/* The shared worker: see paystream/worker.h. Failures of the database
 * itself are waited out: the messages are not at fault, and dead-lettering
 * them would lose order. A message whose own apply fails is retried a few
 * times alone and then dead-lettered, so that the partition moves on. */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "paystream/config.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/metrics.h"
#include "paystream/migrate.h"
#include "paystream/util.h"
#include "paystream/worker.h"

#define MAX_ATTEMPTS 4      /* for a message whose own apply fails */
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 30000
#define DLQ_TIMEOUT_MS 10000
#define STATS_EVERY_MS 10000
#define LAG_EVERY_MS 1000
#define GATHER_POLL_MS 2    /* a poll's wait while the batch before is applied */

/* The metrics every worker has (deploy/dashboards/README.md). */
static struct {
    ps_metric_t *messages, *batches, *apply_seconds, *dead_letters, *lag;
} wm;

static void metrics_register(void)
{
    static const double seconds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    wm.messages = ps_metric_counter("paystream_messages_total",
                                    "messages consumed, by what applying them did: applied, "
                                    "duplicate, stale, recorded, refused, dead_lettered");
    wm.batches = ps_metric_counter("paystream_batches_total", "poll batches applied");
    wm.apply_seconds = ps_metric_histogram("paystream_batch_apply_seconds",
                                           "time to apply one poll batch, database included",
                                           seconds, sizeof(seconds) / sizeof(seconds[0]));
    wm.dead_letters = ps_metric_counter("paystream_dead_letters_total",
                                        "messages dead-lettered, by topic and kind of reason");
    wm.lag = ps_metric_gauge("paystream_consumer_lag",
                             "messages of each partition this worker holds that it has not "
                             "consumed yet: the partition's end less its position");
}

/* Counts what the stats gained since counted. */
static void metrics_count(const ps_apply_stats_t *now, ps_apply_stats_t *counted)
{
    const struct {
        const char *labels;
        uint64_t now, *was;
    } outcomes[] = {
        {"outcome=\"applied\"", now->applied, &counted->applied},
        {"outcome=\"duplicate\"", now->duplicate, &counted->duplicate},
        {"outcome=\"stale\"", now->stale, &counted->stale},
        {"outcome=\"recorded\"", now->recorded, &counted->recorded},
        {"outcome=\"refused\"", now->refused, &counted->refused},
        {"outcome=\"dead_lettered\"", now->dead_lettered, &counted->dead_lettered},
    };
    for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++) {
        if (outcomes[i].now > *outcomes[i].was)
            ps_metric_add(wm.messages, outcomes[i].labels, outcomes[i].now - *outcomes[i].was);
        *outcomes[i].was = outcomes[i].now;
    }
    ps_metric_add(wm.batches, "", now->batches - counted->batches);
    counted->batches = now->batches;
}

#define LAG_SERIES_MAX 64

/* Sets the lag of every partition the consumer holds, and 0 for those it
 * held before and no longer does (another worker reports them now). Reads
 * what librdkafka knows already: the end offset of the last fetch. */
static void metrics_lag(rd_kafka_t *consumer)
{
    static char held[LAG_SERIES_MAX][160];
    static size_t nheld;
    char now[LAG_SERIES_MAX][160];
    size_t nnow = 0;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(consumer, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_position(consumer, parts);
    for (int i = 0; i < parts->cnt && nnow < LAG_SERIES_MAX; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t lo, hi;
        if (p->offset < 0 ||
            rd_kafka_get_watermark_offsets(consumer, p->topic, p->partition, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0)
            continue; /* nothing consumed since it was assigned: not known yet */
        snprintf(now[nnow], sizeof(now[0]), "topic=\"%s\",partition=\"%" PRId32 "\"", p->topic,
                 p->partition);
        ps_metric_set(wm.lag, now[nnow++], (double)(hi > p->offset ? hi - p->offset : 0));
    }
    rd_kafka_topic_partition_list_destroy(parts);
    for (size_t i = 0; i < nheld; i++) {
        size_t j = 0;
        while (j < nnow && strcmp(held[i], now[j]) != 0)
            j++;
        if (j == nnow)
            ps_metric_set(wm.lag, held[i], 0);
    }
    memcpy(held, now, sizeof(now[0]) * nnow);
    nheld = nnow;
}

/* The kind of a dead letter's reason, for a label: its words before the
 * first ':' or '(' ("not a command", "database refused the message"). */
static void reason_kind(const char *reason, char *out, size_t len)
{
    size_t n = 0;
    for (const char *c = reason; *c && *c != ':' && *c != '(' && n + 1 < len; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            *c == ' ' || *c == '_' || *c == '-' || *c == '.')
            out[n++] = *c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* Writes a log line a batch statement asked for: note is a JSON object
 * with level (debug, info, warn, error), msg and fields to show, which go
 * after the message id (strings as they are, other values as JSON). */
static void log_note(const ps_batch_msg_t *m, const char *note)
{
    json_t *o = json_loads(note, 0, NULL);
    ps_log_level_t level = PS_LOG_INFO;
    const char *msg = json_string_value(json_object_get(o, "msg"));
    const char *kv[2 * PS_LOG_MAX_FIELDS + 1];
    char *dumped[PS_LOG_MAX_FIELDS];
    size_t n = 0, ndumped = 0;
    if (msg == NULL) {
        json_decref(o);
        return;
    }
    const char *level_name = json_string_value(json_object_get(o, "level"));
    if (level_name)
        ps_log_level_parse(level_name, &level);
    kv[n++] = "message_id";
    kv[n++] = m->env.message_id;
    const char *key;
    json_t *value;
    json_object_foreach(o, key, value) {
        if (strcmp(key, "msg") == 0 || strcmp(key, "level") == 0 || n >= 2 * PS_LOG_MAX_FIELDS)
            continue;
        kv[n++] = key;
        if (json_is_string(value)) {
            kv[n++] = json_string_value(value);
        } else {
            dumped[ndumped] = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
            kv[n++] = dumped[ndumped++];
        }
    }
    kv[n] = NULL;
    ps_log_kv(level, msg, kv);
    for (size_t i = 0; i < ndumped; i++)
        free(dumped[i]);
    json_decref(o);
}

/* Counts the outcome of each message of a batch: rows of (ord, id,
 * outcome[, note]), ord counting ms from 1. */
static void count_outcomes(ps_apply_stats_t *stats, ps_batch_msg_t **ms, size_t count,
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
        if (ord >= 1 && (size_t)ord <= count && PQnfields(res) > 3 && !PQgetisnull(res, row, 3))
            log_note(ms[ord - 1], PQgetvalue(res, row, 3));
        if (ord >= 1 && (size_t)ord <= count)
            ps_log_debug("message applied", "message_id", ms[ord - 1]->env.message_id,
                         PQfname(res, 1), PQgetvalue(res, row, 1), "outcome", outcome, NULL);
    }
}

/* The JSON array of a batch's events. */
static char *batch_json(ps_batch_msg_t **ms, size_t count)
{
    size_t len = 3;
    for (size_t i = 0; i < count; i++)
        len += strlen(ms[i]->json) + 1;
    char *out = ps_xmalloc(len), *w = out;
    *w++ = '[';
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            *w++ = ',';
        size_t n = strlen(ms[i]->json);
        memcpy(w, ms[i]->json, n);
        w += n;
    }
    *w++ = ']';
    *w = '\0';
    return out;
}

static char *put_be32(char *w, uint32_t v)
{
    w[0] = (char)(v >> 24);
    w[1] = (char)(v >> 16);
    w[2] = (char)(v >> 8);
    w[3] = (char)v;
    return w + 4;
}

/* The payloads of a batch's messages as a text[] in PostgreSQL's binary
 * form (array_recv's): dimensions, then each element's length and bytes.
 * Binary, so that 2 KB of JSON goes in as it is, with no escaping either
 * way. */
static char *payloads_array(ps_batch_msg_t **ms, size_t count, int *len)
{
    enum { TEXT_OID = 25 };
    size_t n = 20 + 4 * count;
    for (size_t i = 0; i < count; i++)
        n += ms[i]->msg->len;
    char *out = ps_xmalloc(n), *w = out;
    w = put_be32(w, 1);  /* dimensions */
    w = put_be32(w, 0);  /* no NULLs */
    w = put_be32(w, TEXT_OID);
    w = put_be32(w, (uint32_t)count);
    w = put_be32(w, 1);  /* lower bound */
    for (size_t i = 0; i < count; i++) {
        w = put_be32(w, (uint32_t)ms[i]->msg->len);
        if (ms[i]->msg->len)
            memcpy(w, ms[i]->msg->payload, ms[i]->msg->len);
        w += ms[i]->msg->len;
    }
    *len = (int)n;
    return out;
}

/* Waits out a database failure that is not the messages' fault; returns -1
 * when shutdown interrupts the wait. */
static int wait_for_database(ps_pg_t *pg, const ps_pg_err_t *err, int *attempt,
                             volatile sig_atomic_t *run)
{
    int64_t delay = ps_backoff_ms((*attempt)++, BACKOFF_BASE_MS, BACKOFF_CAP_MS);
    char wait[24];
    snprintf(wait, sizeof(wait), "%" PRId64, delay);
    ps_log_warn("database cannot apply the batch now; retrying", "sqlstate", err->sqlstate,
                "detail", err->message, "retry_in_ms", wait, NULL);
    for (int64_t waited = 0; waited < delay && *run; waited += 100)
        ps_sleep_ms(100);
    if (!*run)
        return -1;
    ps_pg_err_t e;
    ps_pg_ensure(pg, &e);
    return 0;
}

int ps_db_run(ps_pg_t *pg, const ps_pg_call_t *call, PGresult **res, ps_pg_err_t *err,
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

/* Applies ms (count of them) with stmt in one transaction until it
 * commits, fails for a reason of the messages (returns 1, err filled), or
 * shutdown (-1). */
static int run_batch(ps_pg_t *pg, const char *stmt, ps_batch_msg_t **ms, size_t count,
                     ps_apply_stats_t *stats, ps_pg_err_t *err, volatile sig_atomic_t *run)
{
    char *json = batch_json(ms, count), *payloads = NULL;
    ps_pg_call_t call = {.stmt = stmt, .nparams = 1, .values = {json}};
    if (ms[0]->payload_apart) {
        payloads = payloads_array(ms, count, &call.lengths[1]);
        call.nparams = 2;
        call.values[1] = payloads;
        call.formats[1] = 1;
    }
    PGresult *res;
    int rc = ps_db_run(pg, &call, &res, err, run);
    if (rc == 0) {
        count_outcomes(stats, ms, count, res);
        PQclear(res);
    }
    free(json);
    free(payloads);
    return rc;
}

/* Applies one message alone, with bounded retries, then dead-letters it. */
static int apply_one(ps_pg_t *pg, rd_kafka_t *dlq, const char *stmt, ps_batch_msg_t *m,
                     ps_apply_stats_t *stats, volatile sig_atomic_t *run)
{
    ps_pg_err_t err = {0};
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        int rc = run_batch(pg, stmt, &m, 1, stats, &err, run);
        if (rc <= 0)
            return rc;
        if (attempt + 1 < MAX_ATTEMPTS)
            ps_sleep_ms(ps_backoff_ms(attempt, BACKOFF_BASE_MS, BACKOFF_CAP_MS));
    }
    char reason[700];
    snprintf(reason, sizeof(reason), "database refused the message (SQLSTATE %s): %s",
             err.sqlstate, err.message);
    if (ps_dead_letter(pg, dlq, m->msg, m->env.message_id, reason, run) < 0)
        return -1;
    stats->dead_lettered++;
    return 0;
}

/* Applies ms in one transaction, or message by message when that fails
 * for a reason of the messages. Returns 0, or -1 on shutdown. */
static int apply_run(ps_pg_t *pg, rd_kafka_t *dlq, const char *stmt, ps_batch_msg_t **ms,
                     size_t n, ps_apply_stats_t *stats, volatile sig_atomic_t *run)
{
    if (n == 0)
        return 0;
    ps_pg_err_t err = {0};
    int r = run_batch(pg, stmt, ms, n, stats, &err, run);
    if (r != 1)
        return r;
    ps_log_warn("batch refused; applying its messages one by one", "sqlstate", err.sqlstate,
                "detail", err.message, NULL);
    for (size_t i = 0; i < n; i++) {
        if (apply_one(pg, dlq, stmt, ms[i], stats, run) < 0)
            return -1;
    }
    return 0;
}

int ps_apply_group(ps_pg_t *pg, rd_kafka_t *dlq, const char *stmt, ps_batch_msg_t **ms, size_t n,
                   ps_apply_alone_fn alone, ps_apply_stats_t *stats, volatile sig_atomic_t *run)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ms[i]->alone || alone == NULL)
            continue;
        if (apply_run(pg, dlq, stmt, ms + start, i - start, stats, run) < 0 ||
            alone(pg, dlq, ms[i], stats, run) < 0)
            return -1;
        start = i + 1;
    }
    return apply_run(pg, dlq, stmt, ms + start, n - start, stats, run);
}

typedef struct {
    ps_batch_msg_t *ms;
    size_t n;
} alike_t;

void *ps_alike_prepare(rd_kafka_message_t **msgs, size_t n, ps_prepare_fn prepare)
{
    alike_t *b = ps_xcalloc(1, sizeof(*b));
    b->ms = ps_xcalloc(n ? n : 1, sizeof(*b->ms));
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        b->ms[i].msg = msgs[i];
        prepare(&b->ms[i]);
    }
    return b;
}

void ps_alike_release(void *prepared)
{
    alike_t *b = prepared;
    for (size_t i = 0; i < b->n; i++)
        ps_batch_msg_release(&b->ms[i]);
    free(b->ms);
    free(b);
}

int ps_alike_apply(ps_pg_t *pg, rd_kafka_t *dlq, void *prepared, const char *stmt,
                   ps_apply_stats_t *stats, volatile sig_atomic_t *run)
{
    alike_t *b = prepared;
    ps_batch_msg_t **good = ps_xcalloc(b->n ? b->n : 1, sizeof(*good));
    size_t ngood = 0;
    int rc = 0;
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        ps_batch_msg_t *m = &b->ms[i];
        if (!m->bad) {
            good[ngood++] = m;
            continue;
        }
        rc = ps_dead_letter(pg, dlq, m->msg, m->env.message_id, m->reason, run);
        if (rc == 0)
            stats->dead_lettered++;
    }
    if (rc == 0)
        rc = ps_apply_group(pg, dlq, stmt, good, ngood, NULL, stats, run);
    free(good);
    return rc;
}

void ps_batch_msg_bad(ps_batch_msg_t *m, const char *what, const char *detail)
{
    m->bad = 1;
    snprintf(m->reason, sizeof(m->reason), "%s: %s", what, detail);
}

int ps_batch_msg_envelope(ps_batch_msg_t *m)
{
    char err[256] = "";
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_message_headers(m->msg, &hdrs);
    if (ps_envelope_from_headers(hdrs, &m->env, err, sizeof(err)) < 0) {
        ps_batch_msg_bad(m, "bad envelope", err);
        return -1;
    }
    return 0;
}

void ps_batch_msg_release(ps_batch_msg_t *m)
{
    free(m->json);
    free(m->ctx);
    memset(m, 0, sizeof(*m));
}

/* Copies msg's headers and adds where it came from and why it failed. */
static rd_kafka_headers_t *dlq_headers(const rd_kafka_message_t *msg, const char *reason)
{
    rd_kafka_headers_t *src = NULL, *h;
    char part[16], off[24];
    rd_kafka_message_headers(msg, &src);
    h = src ? rd_kafka_headers_copy(src) : rd_kafka_headers_new(4);
    snprintf(part, sizeof(part), "%" PRId32, msg->partition);
    snprintf(off, sizeof(off), "%" PRId64, msg->offset);
    rd_kafka_header_add(h, "dlq_reason", -1, reason, -1);
    rd_kafka_header_add(h, "dlq_topic", -1, rd_kafka_topic_name(msg->rkt), -1);
    rd_kafka_header_add(h, "dlq_partition", -1, part, -1);
    rd_kafka_header_add(h, "dlq_offset", -1, off, -1);
    return h;
}

/* bytes in bytea's hex input form, so that any bytes survive a text
 * parameter; malloc'd. */
static char *bytea_hex(const void *bytes, size_t len)
{
    char *hex = ps_xmalloc(2 * len + 3);
    memcpy(hex, "\\x", 2);
    ps_hex_encode(bytes ? bytes : (const void *)"", len, hex + 2);
    return hex;
}

/* The message's headers as [{"name", "value"}] (a value that is not UTF-8
 * text is null), malloc'd. */
static char *headers_json(const rd_kafka_message_t *msg)
{
    rd_kafka_headers_t *h = NULL;
    json_t *list = json_array();
    const char *name;
    const void *value;
    size_t size;
    rd_kafka_message_headers(msg, &h);
    for (size_t i = 0; h && rd_kafka_header_get_all(h, i, &name, &value, &size) == 0; i++) {
        json_t *text = value ? json_stringn(value, size) : NULL;
        json_array_append_new(list, json_pack("{s:s, s:o}", "name", name, "value",
                                              text ? text : json_null()));
    }
    char *text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    return text;
}

static int record_row(ps_pg_t *pg, const rd_kafka_message_t *msg, const char *message_id,
                      const char *reason, ps_pg_err_t *err)
{
    char part[16], off[24];
    snprintf(part, sizeof(part), "%" PRId32, msg->partition);
    snprintf(off, sizeof(off), "%" PRId64, msg->offset);
    char *payload = bytea_hex(msg->payload, msg->len);
    char *key = msg->key ? bytea_hex(msg->key, msg->key_len) : NULL;
    char *headers = headers_json(msg);
    const char *values[8] = {rd_kafka_topic_name(msg->rkt), part, off,
                             message_id && *message_id ? message_id : NULL, reason, payload,
                             key, headers};
    PGresult *res = ps_pg_ensure(pg, err) == 0
                        ? ps_pg_exec_prepared(pg, "insert_dead_letter", 8, values, err)
                        : NULL;
    free(payload);
    free(key);
    free(headers);
    PQclear(res);
    return res ? 0 : -1;
}

int ps_dead_letter(ps_pg_t *pg, rd_kafka_t *dlq, const rd_kafka_message_t *msg,
                const char *message_id, const char *reason, volatile sig_atomic_t *run)
{
    char topic[256], err[512], part[16], off[24];
    snprintf(topic, sizeof(topic), "%s%s", rd_kafka_topic_name(msg->rkt), PS_DLQ_SUFFIX);
    snprintf(part, sizeof(part), "%" PRId32, msg->partition);
    snprintf(off, sizeof(off), "%" PRId64, msg->offset);
    ps_log_error("message dead-lettered", "message_id", message_id, "topic",
                 rd_kafka_topic_name(msg->rkt), "partition", part, "offset", off, "reason",
                 reason, NULL);
    int published = 0;
    for (int attempt = 0; *run; attempt++) {
        ps_pg_err_t pgerr = {0};
        if (!published)
            published = ps_kafka_produce_sync(dlq, topic, msg->key, msg->key_len, msg->payload,
                                              msg->len, dlq_headers(msg, reason), DLQ_TIMEOUT_MS,
                                              err, sizeof(err)) == 0;
        if (published && record_row(pg, msg, message_id, reason, &pgerr) == 0) {
            char kind[48], labels[320];
            reason_kind(reason, kind, sizeof(kind));
            snprintf(labels, sizeof(labels), "topic=\"%s\",reason=\"%s\"",
                     rd_kafka_topic_name(msg->rkt), kind);
            ps_metric_add(wm.dead_letters, labels, 1);
            return 0;
        }
        ps_log_warn("dead letter not stored yet; retrying", "message_id", message_id, "detail",
                    published ? pgerr.message : err, NULL);
        ps_sleep_ms(ps_backoff_ms(attempt, 200, 30000));
    }
    return -1;
}

static void log_stats(const ps_apply_stats_t *s)
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

/* A poll batch on its way from the polling thread to the applying one
 * (msgs NULL: none). */
typedef struct {
    rd_kafka_message_t **msgs;
    size_t n;
    void *prepared;
    int64_t poll_us;
} batch_t;

/* The two threads of ps_worker_consume. The polling thread polls and
 * prepares a batch while the caller's thread applies the one before it:
 * the worker's own work on a batch no longer waits for PostgreSQL's on the
 * last, nor PostgreSQL for it. */
struct ps_pipeline {
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* any change below */
    batch_t ahead;         /* polled and prepared, not taken yet */
    batch_t gathering;     /* being polled (the polling thread's alone) */
    size_t gathering_bytes;
    int applying;          /* the applying thread has a batch */
    int polling_ended;     /* the polling thread stopped: *run dropped, or fatal */
    int fatal;             /* the consumer must stop */
    ps_kafka_revoke_hook_t revoke;
    ps_worker_t *w;
    size_t batch_max;
    volatile sig_atomic_t *run;
};

/* Destroys b's messages, keeping its array: the polling thread may be
 * adding to it. */
static void batch_empty(batch_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        rd_kafka_message_destroy(b->msgs[i]);
    b->n = 0;
}

static void batch_drop(ps_worker_t *w, batch_t *b)
{
    if (b->prepared && w->release)
        w->release(b->prepared);
    batch_empty(b);
    free(b->msgs);
    memset(b, 0, sizeof(*b));
}

/* Waits on the pipeline's condition for at most ms; the caller holds mu. */
static void pipe_wait(struct ps_pipeline *p, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&p->cv, &p->mu, &until);
}

/* The group takes the partitions away (called while polling): what was
 * polled ahead or is being gathered is dropped, since the partitions' next
 * owner starts from the committed offsets, and the batch being applied
 * finishes and is committed first, as it would be without the thread. */
static void pipe_on_revoke(void *arg)
{
    struct ps_pipeline *p = arg;
    batch_empty(&p->gathering);
    p->gathering_bytes = 0;
    pthread_mutex_lock(&p->mu);
    batch_drop(p->w, &p->ahead);
    while (p->applying)
        pipe_wait(p, 100);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static int pipe_applying(struct ps_pipeline *p)
{
    pthread_mutex_lock(&p->mu);
    int applying = p->applying;
    pthread_mutex_unlock(&p->mu);
    return applying;
}

/* Polls into the batch being gathered until it is full, or holds messages
 * and the applying thread is free for them. So a batch holds what arrived
 * while the one before it was applied, as when the worker polled only
 * after applying: handed over at its first message, batches came out
 * small, and each costs a transaction and the broker a fetch. */
static void pipe_gather(struct ps_pipeline *p, int *fatal)
{
    batch_t *g = &p->gathering;
    for (;;) {
        int full = ps_kafka_poll_batch(p->w->consumer, g->msgs, &g->n, &p->gathering_bytes,
                                       p->batch_max, g->n > 0 ? GATHER_POLL_MS : 100, fatal);
        if (full || *fatal || !*p->run || (g->n > 0 && !pipe_applying(p)))
            return;
    }
}

static void *pipe_poll(void *arg)
{
    struct ps_pipeline *p = arg;
    int fatal = 0;
    while (*p->run && !fatal) {
        pthread_mutex_lock(&p->mu);
        while (p->ahead.msgs && *p->run)
            pipe_wait(p, 100);
        pthread_mutex_unlock(&p->mu);
        if (!*p->run)
            break;
        p->gathering.msgs = ps_xcalloc(p->batch_max, sizeof(*p->gathering.msgs));
        p->gathering_bytes = 0;
        int64_t t0 = ps_mono_us();
        pipe_gather(p, &fatal);
        batch_t b = p->gathering;
        memset(&p->gathering, 0, sizeof(p->gathering));
        b.poll_us = ps_mono_us() - t0;
        if (b.n > 0 && p->w->prepare)
            b.prepared = p->w->prepare(b.msgs, b.n);
        pthread_mutex_lock(&p->mu);
        if (b.n > 0)
            p->ahead = b;
        else
            free(b.msgs);
        p->fatal = fatal;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    p->polling_ended = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Takes the batch polled ahead, waiting up to 100 ms for one; none when
 * polling has ended or *run dropped (a batch polled then is dropped:
 * nothing of it was applied or committed). Sets *ended when no batch will
 * come any more. */
static batch_t pipe_take(struct ps_pipeline *p, int *ended)
{
    pthread_mutex_lock(&p->mu);
    if (p->ahead.msgs == NULL && !p->polling_ended)
        pipe_wait(p, 100);
    if (p->ahead.msgs && !*p->run)
        batch_drop(p->w, &p->ahead);
    batch_t b = p->ahead;
    memset(&p->ahead, 0, sizeof(p->ahead));
    p->applying = b.msgs != NULL;
    *ended = p->polling_ended && b.msgs == NULL;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return b;
}

static void pipe_applied(struct ps_pipeline *p, batch_t *b)
{
    pthread_mutex_lock(&p->mu);
    batch_drop(p->w, b);
    p->applying = 0;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int ps_worker_consume(ps_worker_t *w, size_t batch_max, ps_apply_batch_fn apply,
                      volatile sig_atomic_t *run)
{
    struct ps_pipeline *p = w->pipe;
    ps_apply_stats_t stats = {0}, logged = {0}, counted = {0};
    int64_t next_stats = ps_mono_ms() + STATS_EVERY_MS, next_tick = 0, next_lag = 0;
    p->batch_max = batch_max;
    p->run = run;
    pthread_t poller;
    if (pthread_create(&poller, NULL, pipe_poll, p) != 0) {
        ps_log_error("cannot start the polling thread", NULL);
        return 1;
    }
    for (;;) {
        if (w->tick && ps_mono_ms() >= next_tick) {
            w->tick(w->pg);
            next_tick = ps_mono_ms() + w->tick_ms;
        }
        if (ps_mono_ms() >= next_lag) {
            metrics_lag(w->consumer);
            next_lag = ps_mono_ms() + LAG_EVERY_MS;
        }
        int ended;
        batch_t b = pipe_take(p, &ended);
        if (ended)
            break;
        if (b.msgs) {
            stats.batches++;
            int64_t t1 = ps_mono_us();
            if (apply(w->pg, w->dlq, b.msgs, b.n, b.prepared, &stats, run) == 0) {
                int64_t t2 = ps_mono_us();
                /* The batch that a stop signal ended is committed before
                 * the group hands its partitions over. */
                ps_kafka_commit_batch(w->consumer, b.msgs, b.n, !*run);
                log_batch(b.n, b.poll_us, t2 - t1, ps_mono_us() - t2);
                ps_metric_observe(wm.apply_seconds, "", (double)(t2 - t1) / 1e6);
            }
            metrics_count(&stats, &counted);
            pipe_applied(p, &b);
        }
        if (ps_mono_ms() >= next_stats) {
            if (memcmp(&stats, &logged, sizeof(stats)) != 0)
                log_stats(&stats);
            logged = stats;
            next_stats = ps_mono_ms() + STATS_EVERY_MS;
        }
    }
    pthread_join(poller, NULL);
    log_stats(&stats);
    return p->fatal ? 3 : 0;
}

/* The pipeline's state, made before the consumer, whose revoke hook it is. */
static struct ps_pipeline *pipe_new(ps_worker_t *w)
{
    struct ps_pipeline *p = ps_xcalloc(1, sizeof(*p));
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&p->mu, NULL);
    p->revoke.fn = pipe_on_revoke;
    p->revoke.arg = p;
    p->w = w;
    return p;
}

static void pipe_free(struct ps_pipeline *p)
{
    if (p == NULL)
        return;
    batch_drop(p->w, &p->ahead);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int ps_worker_open(ps_worker_t *w, const char *name, const char *group,
                   const char *const *topics, const ps_pg_stmt_t *stmts, size_t nstmts)
{
    char err[512], client[128];
    const char *brokers = ps_config_str("PAYSTREAM_KAFKA_BROKERS");
    memset(w, 0, sizeof(*w));
    w->pg = ps_pg_connect(ps_config_str("PAYSTREAM_PG_DSN"), stmts, nstmts, err, sizeof(err));
    if (w->pg == NULL) {
        ps_log_error("cannot connect to postgresql", "detail", err,
                     "hint", "is the server up and the schema migrated (--migrate)?", NULL);
        return -1;
    }
    snprintf(client, sizeof(client), "%s-dlq", name);
    w->dlq = ps_kafka_producer_new(brokers, client, ps_kafka_dr_sync, DLQ_TIMEOUT_MS, 0, err,
                                   sizeof(err));
    w->pipe = pipe_new(w);
    if (w->dlq)
        w->consumer = ps_kafka_consumer_new(brokers, group, topics,
                                            (int)ps_config_int("PAYSTREAM_FETCH_WAIT_MS"),
                                            &w->pipe->revoke, err, sizeof(err));
    if (w->consumer == NULL) {
        ps_log_error("cannot create the kafka clients", "detail", err, NULL);
        if (w->dlq)
            rd_kafka_destroy(w->dlq);
        pipe_free(w->pipe);
        ps_pg_close(w->pg);
        memset(w, 0, sizeof(*w));
        return -1;
    }
    metrics_register();
    int port = (int)ps_config_int("PAYSTREAM_METRICS_PORT");
    if (port > 0 &&
        ps_metrics_serve(ps_config_str("PAYSTREAM_METRICS_ADDR"), port, err, sizeof(err)) < 0) {
        ps_log_error("cannot serve the metrics", "detail", err, NULL);
        ps_worker_close(w);
        return -1;
    }
    return 0;
}

void ps_worker_close(ps_worker_t *w)
{
    ps_metrics_serve_stop();
    rd_kafka_consumer_close(w->consumer);
    rd_kafka_destroy(w->consumer);
    rd_kafka_flush(w->dlq, DLQ_TIMEOUT_MS);
    rd_kafka_destroy(w->dlq);
    pipe_free(w->pipe);
    ps_pg_close(w->pg);
    memset(w, 0, sizeof(*w));
}

static int migrate(void)
{
    char err[512];
    ps_pg_t *pg = ps_pg_connect(ps_config_str("PAYSTREAM_PG_DSN"), NULL, 0, err, sizeof(err));
    if (pg == NULL) {
        ps_log_error("cannot connect to postgresql", "detail", err, NULL);
        return 1;
    }
    int n = ps_migrate(pg, ps_config_str("PAYSTREAM_SCHEMA_DIR"), err, sizeof(err));
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

static volatile sig_atomic_t *stop_flag;

static void on_stop_signal(int sig)
{
    (void)sig;
    *stop_flag = 0;
}

int ps_worker_start(int argc, char **argv, const char *service, const char *summary,
                    const ps_cfg_var_t *config, size_t nconfig, volatile sig_atomic_t *run)
{
    char prog[64];
    snprintf(prog, sizeof(prog), "paystream-%s", service);
    int do_migrate = argc == 2 && strcmp(argv[1], "--migrate") == 0;
    if (argc > 1 && !do_migrate) {
        int help = strcmp(argv[1], "--help") == 0;
        char text[1024];
        snprintf(text, sizeof(text),
                 "%s\n  --migrate  bring the database's schema up to date and exit\n"
                 "  --help     this text", summary);
        ps_config_usage(help ? stdout : stderr, prog, text, config, nconfig);
        return help ? 0 : 2;
    }
    if (ps_config_start(service, config, nconfig) < 0)
        return 2;
    if (do_migrate)
        return migrate();
    stop_flag = run;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    return -1;
}
