/* paystream-applybench: PostgreSQL's part of applying Stripe's events,
 * without the intake or Kafka in the way, round after round on a growing
 * day of stripe_events.
 *
 *   paystream-applybench --dsn DSN [--rounds R] [--events N] [--batch B] [--prefix P]
 *
 * Each round makes N new events of Stripe's mix (stripe_mix.h, payment
 * intents pi_<P><round>_<k>), turns them into batches of B with the payments
 * worker's own code (stripe_event_prepare) and applies each batch as the
 * worker does (ps_apply_group: one transaction, one call of
 * ps_apply_stripe_events, the payloads as a binary text[]), in one session.
 * Per round it prints a JSON line: the events stored before it, events/s,
 * the CPU that session spent per event and the CPU the whole PostgreSQL
 * server spent per event (its background processes, and its children that
 * exited during the round, such as autovacuum's), the CPU the worker's code
 * spent per event (preparing the batches and handing them over: a payments
 * worker's cost but for Kafka's), the session's cost against a probe of the
 * machine's speed (probe_us), what the server did meanwhile (WAL, full-page
 * images, checkpoints, buffers written, autovacuum runs), and the outcomes.
 * It exits 1 when an event is neither applied, recorded, stale nor refused:
 * these are the end-to-end benchmark's events, so a dead letter here is a
 * bug.
 *
 * The server must run on this machine: its CPU is read from /proc. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "paystream/log.h"
#include "paystream/util.h"
#include "paystream/worker.h"
#include "payments.h"
#include "stripe_mix.h"

static const ps_pg_stmt_t statements[] = {
    {"apply_stripe_events", PAYMENTS_APPLY_STRIPE_EVENTS_SQL, 2},
};

/* CPU ticks of process pid, the ticks of its children that exited
 * included, and its parent. Returns -1 when it is gone. */
static long long proc_ticks(long pid, long *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command's name, in parentheses, may hold spaces and ')': the
     * fields from the third (state) on start after the last ')'. */
    char *p = strrchr(buf, ')');
    long parent;
    long long ut, st, cut, cst;
    if (p == NULL ||
        sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld %lld %lld", &parent,
               &ut, &st, &cut, &cst) != 5)
        return -1;
    if (ppid)
        *ppid = parent;
    return ut + st + cut + cst;
}

/* CPU ticks of the postmaster and every process it started. An exited
 * child's ticks are in the postmaster's (cutime), so none is lost. */
static long long server_ticks(long postmaster)
{
    long long sum = proc_ticks(postmaster, NULL);
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10), ppid;
        if (*end != '\0' || pid == postmaster)
            continue;
        long long t = proc_ticks(pid, &ppid);
        if (t >= 0 && ppid == postmaster)
            sum += t;
    }
    if (d)
        closedir(d);
    return sum;
}

/* Counters of the server's own work, read before and after a round. */
enum {
    C_CHECKPOINTS, C_WAL_BYTES, C_WAL_FPI, C_SESSION_WRITES, C_BGWRITER_WRITES, C_AUTOVACUUMS,
    C_N
};

static const char counters_sql[] =
    "SELECT b.checkpoints_timed + b.checkpoints_req, w.wal_bytes, w.wal_fpi, b.buffers_backend, "
    "b.buffers_clean, (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) "
    "FROM pg_stat_user_tables) FROM pg_stat_bgwriter b, pg_stat_wal w";

/* The values of the first row of sql's result into v (n of them); exits
 * when the query fails. */
static void query_ints(ps_pg_t *pg, const char *sql, long long *v, int n)
{
    ps_pg_err_t err;
    PGresult *res = ps_pg_query(pg, sql, 0, NULL, &err);
    if (res == NULL || PQntuples(res) < 1 || PQnfields(res) < n) {
        fprintf(stderr, "paystream-applybench: %s: %s\n", sql, res ? "no row" : err.message);
        exit(1);
    }
    for (int i = 0; i < n; i++)
        v[i] = strtoll(PQgetvalue(res, 0, i), NULL, 10);
    PQclear(res);
}

/* This machine's speed for PostgreSQL's kind of work, which can drift by a
 * fifth from one round to the next on a shared virtual machine: the session's
 * CPU, in microseconds, to parse one of the mix's payloads as jsonb, over
 * PROBE_PARSES parses. A round's cost divided by the mean of the probes
 * before and after it is comparable across rounds and runs where the cost
 * alone is not. */
enum { PROBE_PARSES = 20000 };

static double probe_us(ps_pg_t *pg, long backend, const char *payload)
{
    static const char sql[] =
        "SELECT count(jsonb_typeof(($1 || repeat(' ', i % 2))::jsonb)) "
        "FROM generate_series(1, $2::int) i";
    char n[16];
    snprintf(n, sizeof(n), "%d", PROBE_PARSES);
    const char *values[] = {payload, n};
    ps_pg_err_t err;
    long long t0 = proc_ticks(backend, NULL);
    PGresult *res = ps_pg_query(pg, sql, 2, values, &err);
    long long t1 = proc_ticks(backend, NULL);
    if (res == NULL) {
        fprintf(stderr, "paystream-applybench: the probe failed: %s\n", err.message);
        exit(1);
    }
    PQclear(res);
    return (double)(t1 - t0) / (double)sysconf(_SC_CLK_TCK) * 1e6 / PROBE_PARSES;
}

/* The events of one round, in Stripe's order, intent after intent. */
typedef struct {
    char *bodies;          /* MIX_EVENT_MAX bytes each */
    rd_kafka_message_t *msgs;
    ps_batch_msg_t *ecs;
    ps_batch_msg_t **ptrs;
} round_t;

static void round_make(round_t *r, const char *prefix, long round, long events)
{
    char p[64];
    snprintf(p, sizeof(p), "%s%ld", prefix, round);
    mix_intent_t it = {0};
    long intents = 0;
    int in_intent = 0;
    int64_t now = time(NULL);
    for (long i = 0; i < events; i++) {
        if (in_intent == it.nevents) {
            mix_intent(&it, p, intents++, 1, now);
            in_intent = 0;
        }
        char id[64], *body = r->bodies + (size_t)i * MIX_EVENT_MAX;
        memset(&r->msgs[i], 0, sizeof(r->msgs[i]));
        r->msgs[i].payload = body;
        r->msgs[i].len = mix_event(&it, in_intent++, body, id);
    }
}

/* Prepares events [from, from + n) as the worker prepares a poll batch;
 * returns how many are bad (none should be). */
static size_t batch_prepare(round_t *r, long from, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        ps_batch_msg_t *ec = &r->ecs[i];
        memset(ec, 0, sizeof(*ec));
        ec->msg = &r->msgs[from + (long)i];
        /* What the intake's headers would say (the worker reads them
         * before it prepares). */
        ps_envelope_init(&ec->env, "stripe", "");
        stripe_event_prepare(ec, 0);
        if (ec->bad) {
            fprintf(stderr, "paystream-applybench: event %ld: %s\n", from + (long)i, ec->reason);
            bad++;
        }
        r->ptrs[i] = ec;
    }
    return bad;
}

static int usage(void)
{
    fprintf(stderr, "usage: paystream-applybench --dsn DSN [--rounds R] [--events N] "
                    "[--batch B] [--prefix P]\n");
    return 2;
}

/* What the rounds share. */
typedef struct {
    ps_pg_t *pg;
    long backend, postmaster; /* the session's process and the server's */
    long events, batch;
    double hz;
    round_t r;
} bench_t;

/* The CPU this thread has spent, in microseconds. */
static double thread_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Applies the events of round k (made already), batch by batch; fills the
 * outcomes, the seconds the statements took and the CPU the worker's code
 * spent (preparing the batches and handing them over). Returns -1 if an
 * event could not be prepared. */
static int round_apply(bench_t *b, ps_apply_stats_t *stats, double *wall, double *worker_us)
{
    volatile sig_atomic_t run = 1;
    for (long from = 0; from < b->events; from += b->batch) {
        size_t n = (size_t)(b->events - from < b->batch ? b->events - from : b->batch);
        double c0 = thread_cpu_us();
        if (batch_prepare(&b->r, from, n) > 0)
            return -1;
        int64_t t0 = ps_mono_us();
        ps_apply_group(b->pg, NULL, "apply_stripe_events", b->r.ptrs, n, NULL, stats, &run);
        *wall += (double)(ps_mono_us() - t0) / 1e6;
        *worker_us += thread_cpu_us() - c0;
        for (size_t i = 0; i < n; i++)
            ps_batch_msg_release(&b->r.ecs[i]);
    }
    return 0;
}

/* Runs round k on top of stored events and prints its line. Returns 0, or
 * 1 when an event was not applied or recorded. */
static int round_run(bench_t *b, long k, const char *prefix, long long stored)
{
    round_make(&b->r, prefix, k, b->events);
    char payload[MIX_EVENT_MAX + 1];
    memcpy(payload, b->r.msgs[1].payload, b->r.msgs[1].len); /* a charge.succeeded */
    payload[b->r.msgs[1].len] = '\0';
    double probe = probe_us(b->pg, b->backend, payload) / 2, wall = 0, worker = 0;
    long long c0[C_N], c1[C_N];
    query_ints(b->pg, counters_sql, c0, C_N);
    ps_apply_stats_t st = {0};
    long long s0 = proc_ticks(b->backend, NULL), a0 = server_ticks(b->postmaster);
    if (round_apply(b, &st, &wall, &worker) < 0)
        return 1;
    /* A second for the work the round left to the server's background
     * processes (the WAL writer's, say) to count as the round's. */
    sleep(1);
    long long s1 = proc_ticks(b->backend, NULL), a1 = server_ticks(b->postmaster);
    /* A session hands its statistics (its WAL, ...) to the server's at most
     * once a second unless told to at its next transaction's end. */
    long long flushed;
    query_ints(b->pg, "SELECT 1 FROM pg_stat_force_next_flush()", &flushed, 1);
    query_ints(b->pg, counters_sql, c1, C_N);
    probe += probe_us(b->pg, b->backend, payload) / 2;
    double n = (double)b->events, session = (double)(s1 - s0) / b->hz * 1e6 / n;
    printf("{\"round\":%ld,\"events\":%ld,\"stored_before\":%lld,\"seconds\":%.2f,"
           "\"events_per_s\":%.0f,"
           "\"cpu_us_per_event\":{\"session\":%.1f,\"postgresql\":%.1f,\"worker\":%.1f},"
           "\"probe_us\":%.2f,\"session_in_probes\":%.2f,"
           "\"server\":{\"wal_mb\":%.1f,\"wal_full_pages\":%lld,\"checkpoints\":%lld,"
           "\"buffers_written_by_sessions\":%lld,\"buffers_written_by_bgwriter\":%lld,"
           "\"autovacuums_and_analyzes\":%lld},"
           "\"outcomes\":{\"applied\":%llu,\"recorded\":%llu,\"stale\":%llu,"
           "\"refused\":%llu,\"duplicate\":%llu,\"dead_lettered\":%llu}}\n",
           k, b->events, stored, wall, n / wall, session,
           (double)(a1 - a0) / b->hz * 1e6 / n, worker / n, probe, session / probe,
           (double)(c1[C_WAL_BYTES] - c0[C_WAL_BYTES]) / 1048576.0,
           c1[C_WAL_FPI] - c0[C_WAL_FPI], c1[C_CHECKPOINTS] - c0[C_CHECKPOINTS],
           c1[C_SESSION_WRITES] - c0[C_SESSION_WRITES],
           c1[C_BGWRITER_WRITES] - c0[C_BGWRITER_WRITES], c1[C_AUTOVACUUMS] - c0[C_AUTOVACUUMS],
           (unsigned long long)st.applied, (unsigned long long)st.recorded,
           (unsigned long long)st.stale, (unsigned long long)st.refused,
           (unsigned long long)st.duplicate, (unsigned long long)st.dead_lettered);
    fflush(stdout);
    uint64_t answered = st.applied + st.recorded + st.stale + st.refused;
    return answered == (uint64_t)b->events && st.dead_lettered == 0 && st.duplicate == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *dsn = NULL, *prefix = "apply";
    long rounds = 5;
    bench_t b = {.events = 40000, .batch = 500, .hz = (double)sysconf(_SC_CLK_TCK)};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dsn") == 0) dsn = argv[i + 1];
        else if (strcmp(argv[i], "--rounds") == 0) rounds = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--events") == 0) b.events = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0) b.batch = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--prefix") == 0) prefix = argv[i + 1];
        else return usage();
    }
    if (dsn == NULL || rounds < 1 || b.events < 2 || b.batch < 1 || b.batch > 10000 ||
        argc % 2 == 0)
        return usage();
    ps_log_init("applybench", PS_LOG_WARN);
    stripe_events_init(0);
    char err[256];
    b.pg = ps_pg_connect(dsn, statements, 1, err, sizeof(err));
    if (b.pg == NULL) {
        fprintf(stderr, "paystream-applybench: %s\n", err);
        return 1;
    }
    long long v, stored;
    query_ints(b.pg, "SELECT pg_backend_pid()", &v, 1);
    b.backend = (long)v;
    if (proc_ticks(b.backend, &b.postmaster) < 0) {
        fprintf(stderr, "paystream-applybench: the server does not run on this machine\n");
        return 1;
    }
    query_ints(b.pg, "SELECT count(*) FROM stripe_events", &stored, 1);
    b.r = (round_t){
        .bodies = ps_xmalloc((size_t)b.events * MIX_EVENT_MAX),
        .msgs = ps_xcalloc((size_t)b.events, sizeof(rd_kafka_message_t)),
        .ecs = ps_xcalloc((size_t)b.batch, sizeof(ps_batch_msg_t)),
        .ptrs = ps_xcalloc((size_t)b.batch, sizeof(ps_batch_msg_t *)),
    };
    int rc = 0;
    for (long k = 1; k <= rounds && rc == 0; k++, stored += b.events)
        rc = round_run(&b, k, prefix, stored);
    if (rc)
        fprintf(stderr, "paystream-applybench: not every event was applied or recorded\n");
    ps_pg_close(b.pg);
    free(b.r.bodies);
    free(b.r.msgs);
    free(b.r.ecs);
    free(b.r.ptrs);
    return rc;
}
