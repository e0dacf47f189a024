/* Graceful stop on SIGTERM: the intake stops taking requests, answers the
 * ones it took and leaves nothing unpublished that it answered 200; a
 * worker finishes its batch and commits it, so its successor starts after
 * it. Each test prints how long the stop took. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "paystream/util.h"
#include "support.h"

/* scripts/dev svc stop sends SIGTERM and, after 10 s, SIGKILL: a stop
 * that took less was the service's own. */
#define KILL_AFTER_MS 10000

/* How many lines of the service's log contain text. */
static int log_count(const char *service, const char *text)
{
    char *out = ts_sh(NULL, "grep -c -- '%s' '%s/logs/%s.log' || true", text,
                      ts_env("PAYSTREAM_RUN_DIR"), service);
    int n = atoi(out);
    free(out);
    return n;
}

/* The value of field in the service's last log line that contains text. */
static long last_log_field(const char *service, const char *text, const char *field)
{
    char *out = ts_sh(NULL, "grep -- '%s' '%s/logs/%s.log' | tail -1 | grep -o '\"%s\":\"[0-9]*\"' "
                      "| tr -dc 0-9", text, ts_env("PAYSTREAM_RUN_DIR"), service, field);
    long v = *out ? atol(out) : -1;
    free(out);
    return v;
}

/* Waits until the service has logged text more than `before` times. */
static void wait_log_count(const char *service, const char *text, int before)
{
    int64_t end = ps_mono_ms() + TS_WAIT_MS;
    while (log_count(service, text) <= before && ps_mono_ms() < end)
        usleep(100 * 1000);
    cr_assert_gt(log_count(service, text), before, "%s never logged \"%s\"", service, text);
}

static int64_t stop_timed(const char *service)
{
    int64_t started = ps_mono_ms();
    cr_assert_eq(ts_svc("stop", service), 0);
    return ps_mono_ms() - started;
}

static void wait_ready(void)
{
    for (int64_t end = ps_mono_ms() + TS_WAIT_MS; ps_mono_ms() < end; usleep(100 * 1000)) {
        ts_http_t r = ts_http_admin("/ready");
        long status = r.status;
        ts_http_free(&r);
        if (status == 200)
            return;
    }
    cr_assert_fail("the intake did not become ready again");
}

#define POSTERS 6
#define POSTS_MAX 4000

typedef struct {
    char prefix[48];
    atomic_int *go;
    int n, ok, refused, unreachable, other;
    char ok_ids[POSTS_MAX][72];
} poster_t;

/* Posts events until told to stop, sorting the answers. */
static void *post_until_stopped(void *arg)
{
    poster_t *p = arg;
    while (atomic_load(p->go) && p->n < POSTS_MAX) {
        char evt[72], pi[72];
        snprintf(evt, sizeof(evt), "evt_%s_%d", p->prefix, p->n);
        snprintf(pi, sizeof(pi), "pi_%s_%d", p->prefix, p->n);
        char *body = ts_succeeded_event(evt, pi, 100 + p->n);
        ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
        if (r.status == 200)
            memcpy(p->ok_ids[p->ok++], evt, sizeof(evt));
        else if (r.status == 503 && strstr(r.body, "\"shutting_down\""))
            p->refused++;
        else if (r.status == 0)
            p->unreachable++;
        else
            p->other++;
        p->n++;
        ts_http_free(&r);
        free(body);
    }
    return NULL;
}

Test(stop, intake_answers_what_it_took_and_loses_nothing_it_acknowledged)
{
    static poster_t posters[POSTERS];
    atomic_int go = 1;
    pthread_t threads[POSTERS];
    char run_tag[32];
    ts_unique(run_tag, sizeof(run_tag), "stop");
    for (int i = 0; i < POSTERS; i++) {
        memset(&posters[i], 0, sizeof(posters[i]));
        snprintf(posters[i].prefix, sizeof(posters[i].prefix), "%s_%d", run_tag, i);
        posters[i].go = &go;
        pthread_create(&threads[i], NULL, post_until_stopped, &posters[i]);
    }
    /* Stop the intake in the middle of the stream. */
    char like[64];
    snprintf(like, sizeof(like), "evt_%s_%%", run_tag);
    cr_assert(ts_wait_sql("t", "SELECT count(*) >= 200 FROM stripe_events WHERE id LIKE $1", like,
                          NULL));
    int stopped_before = log_count("intake", "intake stopped");
    int64_t took = stop_timed("intake");
    usleep(300 * 1000); /* a few posts find nobody listening */
    cr_assert_eq(ts_svc("start", "intake"), 0);
    wait_ready();
    sleep(1);
    atomic_store(&go, 0);
    int ok = 0, refused = 0, unreachable = 0, other = 0;
    for (int i = 0; i < POSTERS; i++) {
        pthread_join(threads[i], NULL);
        ok += posters[i].ok;
        refused += posters[i].refused;
        unreachable += posters[i].unreachable;
        other += posters[i].other;
    }
    fprintf(stderr,
            "stop: intake stopped in %" PRId64 " ms (drain %ld ms) mid-stream: %d answered 200, "
            "%d refused 503 shutting_down, %d found no listener\n",
            took, last_log_field("intake", "intake drained", "took_ms"), ok, refused, unreachable);
    cr_assert_lt(took, KILL_AFTER_MS, "the intake did not stop on SIGTERM by itself");
    cr_assert_eq(log_count("intake", "intake stopped"), stopped_before + 1,
                 "no clean exit logged: was it killed?");
    cr_assert_eq(last_log_field("intake", "intake drained", "unanswered"), 0,
                 "requests left unanswered at the stop");
    cr_assert_eq(other, 0, "%d answers were neither 200, 503 shutting_down nor refused", other);
    /* Every event answered 200 is applied, whenever in the stop it came. */
    for (int i = 0; i < POSTERS; i++) {
        for (int j = 0; j < posters[i].ok; j++) {
            cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1",
                                  posters[i].ok_ids[j], NULL),
                      "%s was answered 200 and never applied", posters[i].ok_ids[j]);
        }
    }
}

Test(stop, worker_finishes_its_batch_and_commits_it_before_it_exits)
{
    enum { EVENTS = 1500 };
    char prefix[48], like[64], count[16];
    ts_unique(prefix, sizeof(prefix), "wstop");
    snprintf(like, sizeof(like), "pi_%s_%%", prefix);
    snprintf(count, sizeof(count), "%d", EVENTS);
    /* A backlog for the worker to be in the middle of when it is stopped. */
    cr_assert_eq(ts_svc("stop", "payments"), 0);
    for (int i = 0; i < EVENTS; i++) {
        char evt[96], pi[96];
        snprintf(evt, sizeof(evt), "evt_%s_%d", prefix, i);
        snprintf(pi, sizeof(pi), "pi_%s_%d", prefix, i);
        char *body = ts_succeeded_event(evt, pi, 100 + i);
        ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
        cr_assert_eq(r.status, 200, "%s", r.body);
        ts_http_free(&r);
        free(body);
    }
    /* In batches of 100, so that the stop comes between two of them: the
     * whole backlog fits one batch of the default size. */
    setenv("PAYSTREAM_BATCH_MAX", "100", 1);
    cr_assert_eq(ts_svc("start", "payments"), 0);
    cr_assert(ts_wait_sql("t", "SELECT count(*) > 0 FROM payments WHERE gateway_payment_id LIKE $1",
                          like, NULL));
    int stopped_before = log_count("payments", "payments worker stopped");
    int64_t took = stop_timed("payments");
    char *at_stop = ts_sql("SELECT count(*) FROM payments WHERE gateway_payment_id LIKE $1", like,
                           NULL);
    cr_assert_lt(took, KILL_AFTER_MS, "the worker did not stop on SIGTERM by itself");
    cr_assert_eq(log_count("payments", "payments worker stopped"), stopped_before + 1);

    /* Its successor takes over after the last committed batch: nothing it
     * applied comes again, and the rest is applied once. It is stopped
     * only once it has its partitions, so that the last "progress" line,
     * logged as it exits, is its own, also when the stopped worker had
     * applied the whole backlog and nothing is left for it. */
    int assigned_before = log_count("payments", "partition assigned");
    cr_assert_eq(ts_svc("start", "payments"), 0);
    wait_log_count("payments", "partition assigned", assigned_before);
    cr_assert(ts_wait_sql(count, "SELECT count(*) FROM payments WHERE gateway_payment_id LIKE $1",
                          like, NULL));
    cr_assert_eq(ts_svc("stop", "payments"), 0);
    long duplicates = last_log_field("payments", "\"msg\":\"progress\"", "duplicates");
    long applied = last_log_field("payments", "\"msg\":\"progress\"", "applied");
    unsetenv("PAYSTREAM_BATCH_MAX");
    cr_assert_eq(ts_svc("start", "payments"), 0);
    fprintf(stderr,
            "stop: payments worker stopped in %" PRId64 " ms with %s of %d applied; its "
            "successor applied %ld, %ld of them again\n",
            took, at_stop, EVENTS, applied, duplicates);
    cr_assert_eq(duplicates, 0, "the successor got messages the stopped worker had applied");
    cr_assert_eq(applied, EVENTS - atol(at_stop));
    char *once = ts_sql("SELECT count(*) FROM payments WHERE gateway_payment_id LIKE $1 "
                        "AND version = 1 AND status = 'completed'", like, NULL);
    cr_assert_str_eq(once, count, "each payment moved exactly once");
    free(once);
    free(at_stop);
}
