/* What only a real Kafka cluster can show: three KRaft nodes, replication
 * factor 3, min.insync.replicas 2. Brokers are killed and restarted, a
 * second worker joins, retention deletes what a group has not read. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "paystream/util.h"
#include "support.h"

#define POSTERS 8

/* A stream of webhooks posted by POSTERS threads: event i of payment
 * intent pi_<prefix>_<i / steps> is step i % steps of that payment, and
 * each thread posts whole payments, in order. */
typedef struct {
    char prefix[48];
    int payments, steps;
    atomic_int posted, ok, unavailable;
    unsigned char accepted[8192]; /* per event (payment * steps + step): answered 200 */
    int64_t created[8192];        /* per event: its created time, which a retry repeats */
    int64_t slowest_ms;
    pthread_mutex_t lock;
} stream_t;

static const char *const step_types[] = {"payment_intent.created", "payment_intent.processing",
                                         "payment_intent.succeeded"};
static const char *const step_status[] = {"requires_payment_method", "processing", "succeeded"};

static char *step_event(const stream_t *s, int payment, int step, int64_t created)
{
    char evt[96], obj[400];
    snprintf(evt, sizeof(evt), "evt_%s_%d_%d", s->prefix, payment, step);
    int last = step == s->steps - 1;
    snprintf(obj, sizeof(obj),
             "{\"id\":\"pi_%s_%d\",\"object\":\"payment_intent\",\"amount\":%d,\"currency\":\"usd\","
             "\"status\":\"%s\",\"amount_received\":%d,\"latest_charge\":\"ch_%s_%d\"}",
             s->prefix, payment, 100 + payment, step_status[3 - s->steps + step],
             last ? 100 + payment : 0, s->prefix, payment);
    return ts_event(evt, step_types[3 - s->steps + step], created, obj);
}

static void *post_part(void *arg)
{
    stream_t *s = ((void **)arg)[0];
    int part = (int)(intptr_t)((void **)arg)[1];
    for (int p = part; p < s->payments; p += POSTERS) {
        int64_t created = time(NULL);
        for (int step = 0; step < s->steps; step++) {
            s->created[p * s->steps + step] = created + step;
            char *body = step_event(s, p, step, created + step);
            int64_t t0 = ps_mono_ms();
            ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
            int64_t took = ps_mono_ms() - t0;
            pthread_mutex_lock(&s->lock);
            if (took > s->slowest_ms)
                s->slowest_ms = took;
            pthread_mutex_unlock(&s->lock);
            s->accepted[p * s->steps + step] = r.status == 200;
            atomic_fetch_add(&s->posted, 1);
            atomic_fetch_add(r.status == 200 ? &s->ok : &s->unavailable, 1);
            ts_http_free(&r);
            free(body);
        }
    }
    return NULL;
}

typedef struct {
    pthread_t threads[POSTERS];
    void *args[POSTERS][2];
} posters_t;

static void stream_start(stream_t *s, posters_t *ps, const char *prefix, int payments, int steps)
{
    memset(s, 0, sizeof(*s));
    ts_unique(s->prefix, sizeof(s->prefix), prefix);
    cr_assert_leq(payments * steps, (int)sizeof(s->accepted));
    s->payments = payments;
    s->steps = steps;
    pthread_mutex_init(&s->lock, NULL);
    for (int i = 0; i < POSTERS; i++) {
        ps->args[i][0] = s;
        ps->args[i][1] = (void *)(intptr_t)i;
        pthread_create(&ps->threads[i], NULL, post_part, ps->args[i]);
    }
}

static void stream_join(posters_t *ps)
{
    for (int i = 0; i < POSTERS; i++)
        pthread_join(ps->threads[i], NULL);
}

static int applied_count(const stream_t *s)
{
    char like[80];
    snprintf(like, sizeof(like), "evt_%s_%%", s->prefix);
    char *n = ts_sql("SELECT count(*) FROM stripe_events WHERE id LIKE $1", like, NULL);
    int v = atoi(n);
    free(n);
    return v;
}

static void wait_applied(const stream_t *s, int at_least)
{
    int64_t deadline = ps_mono_ms() + TS_WAIT_MS;
    while (applied_count(s) < at_least && ps_mono_ms() < deadline)
        usleep(50 * 1000);
}

/* Every payment of the stream ended completed, each of its events applied
 * once and in order (version == steps), and one ledger row each. */
static void assert_exactly_once_in_order(const stream_t *s)
{
    char like[80], expect[32];
    snprintf(like, sizeof(like), "pi_%s_%%", s->prefix);
    snprintf(expect, sizeof(expect), "%d", s->payments);
    cr_assert(ts_wait_sql(expect, "SELECT count(*) FROM payments WHERE gateway_payment_id LIKE $1 "
                          "AND status = 'completed'", like, NULL),
              "not every payment reached completed");
    char steps[8];
    snprintf(steps, sizeof(steps), "%d", s->steps);
    char *in_order = ts_sql("SELECT count(*) FROM payments WHERE gateway_payment_id LIKE $1 "
                            "AND version = $2::int", like, steps, NULL);
    cr_assert_str_eq(in_order, expect, "each payment's events applied once each, in order");
    char *ledger = ts_sql("SELECT count(*) FROM transactions t JOIN payments p ON p.id = t.payment_id "
                          "WHERE p.gateway_payment_id LIKE $1", like, NULL);
    cr_assert_str_eq(ledger, expect, "one charge per payment");
    snprintf(expect, sizeof(expect), "%d", s->payments * s->steps);
    snprintf(like, sizeof(like), "evt_%s_%%", s->prefix);
    char *events = ts_sql("SELECT count(*) FROM stripe_events WHERE id LIKE $1", like, NULL);
    cr_assert_str_eq(events, expect, "every acknowledged event stored once");
    free(in_order);
    free(ledger);
    free(events);
}

static void wait_brokers(int n)
{
    int status;
    free(ts_sh(&status, "'%s/services/admin/paystream-admin' kafka wait --brokers %d --timeout 120",
               ts_env("PAYSTREAM_BUILD_DIR"), n));
    cr_assert_eq(status, 0, "%d brokers did not come back", n);
}

/* Posts event (payment, step) of s until it is answered 200, as Stripe retries
 * a webhook that was not. */
static void post_until_accepted(const stream_t *s, int payment, int step, int64_t created)
{
    char *body = step_event(s, payment, step, created);
    int64_t deadline = ps_mono_ms() + TS_WAIT_MS;
    int attempts = 0;
    long status = 0;
    do {
        if (attempts++)
            usleep(200 * 1000);
        ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
        status = r.status;
        ts_http_free(&r);
    } while (status != 200 && ps_mono_ms() < deadline);
    cr_assert_eq(status, 200, "event %d/%d was never accepted", payment, step);
    free(body);
}

Test(cluster, one_broker_killed_mid_stream_loses_nothing_and_the_intake_keeps_answering)
{
    stream_t s;
    posters_t ps;
    stream_start(&s, &ps, "k1", 2000, 1); /* 2,000 webhooks, one per payment */
    while (atomic_load(&s.posted) < 500)
        usleep(10 * 1000);
    cr_assert_eq(ts_svc("kill", "kafka2"), 0);
    stream_join(&ps);
    /* While leadership moves off the dead broker, a webhook may wait past the
     * publish bound and get 503; Stripe retries those. Everything answered
     * 200 must be applied once, and so must every retried one. */
    int unaccepted = atomic_load(&s.unavailable);
    cr_assert_lt(unaccepted, 2000 / 10, "only the failover window may answer 503 (%d did)", unaccepted);
    /* A retry repeats the event's created time, as Stripe's does: a 503'd
     * event may have reached Kafka after all, and only the same (id,
     * created) dedupes in the partitioned log. */
    for (int p = 0; p < s.payments; p++) {
        if (!s.accepted[p])
            post_until_accepted(&s, p, 0, s.created[p]);
    }
    /* With the broker still down, the intake keeps answering 200. */
    stream_t after;
    memset(&after, 0, sizeof(after));
    ts_unique(after.prefix, sizeof(after.prefix), "k1down");
    after.payments = 200;
    after.steps = 1;
    for (int p = 0; p < after.payments; p++) {
        char *body = step_event(&after, p, 0, time(NULL));
        ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
        cr_assert_eq(r.status, 200, "with one broker of three down, webhook %d: %ld %s", p, r.status, r.body);
        ts_http_free(&r);
        free(body);
    }
    cr_assert_eq(ts_svc("start", "kafka2"), 0);
    wait_brokers(3);
    assert_exactly_once_in_order(&s);
    assert_exactly_once_in_order(&after);
}

Test(cluster, two_brokers_down_make_the_intake_answer_503_and_retries_apply_once)
{
    stream_t s;
    memset(&s, 0, sizeof(s));
    ts_unique(s.prefix, sizeof(s.prefix), "k2");
    s.payments = 5;
    s.steps = 1;
    cr_assert_eq(ts_svc("kill", "kafka2"), 0);
    cr_assert_eq(ts_svc("kill", "kafka3"), 0);
    int64_t created = time(NULL);
    for (int p = 0; p < s.payments; p++) {
        char *body = step_event(&s, p, 0, created);
        int64_t t0 = ps_mono_ms();
        ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
        int64_t took = ps_mono_ms() - t0;
        cr_assert_eq(r.status, 503, "acks=all cannot be met with one broker of three: %ld %s",
                     r.status, r.body);
        cr_assert_lt(took, 20000, "503 comes within the publish bound");
        ts_http_free(&r);
        free(body);
    }
    cr_assert_eq(ts_svc("start", "kafka2"), 0);
    cr_assert_eq(ts_svc("start", "kafka3"), 0);
    wait_brokers(3);
    /* Stripe retries what got 503; once Kafka can take it, it is applied once. */
    for (int p = 0; p < s.payments; p++)
        post_until_accepted(&s, p, 0, created);
    assert_exactly_once_in_order(&s);
}

Test(cluster, a_second_worker_joins_and_the_first_leaves_without_double_or_lost_events)
{
    stream_t s;
    posters_t ps;
    stream_start(&s, &ps, "rb", 600, 3); /* created, processing, succeeded per payment */
    wait_applied(&s, 450);
    cr_assert_eq(ts_svc("start", "payments2"), 0);
    wait_applied(&s, 1000);
    cr_assert_eq(ts_svc("stop", "payments"), 0);
    stream_join(&ps);
    cr_assert_eq(atomic_load(&s.ok), 1800);
    assert_exactly_once_in_order(&s);
    cr_assert_eq(ts_svc("start", "payments"), 0);
    cr_assert_eq(ts_svc("stop", "payments2"), 0);
}

/* Sum of the low watermarks of paystream.stripe.events: grows when retention
 * deletes a segment. */
static long log_starts(void)
{
    char *out = ts_sh(NULL, "'%s/services/admin/paystream-admin' kafka watermarks paystream.stripe.events",
                      ts_env("PAYSTREAM_BUILD_DIR"));
    long sum = 0, part, low, high;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (sscanf(line, "%ld %ld %ld", &part, &low, &high) == 3)
            sum += low;
    }
    free(out);
    return sum;
}

static void post_one(const char *prefix, const char *pi, int n)
{
    char evt[96], obj[256];
    snprintf(evt, sizeof(evt), "evt_%s_%d", prefix, n);
    snprintf(obj, sizeof(obj), "{\"id\":\"%s\",\"object\":\"payment_intent\",\"amount\":%d,"
             "\"currency\":\"usd\",\"status\":\"processing\"}", pi, 100 + n);
    char *body = ts_event(evt, "payment_intent.processing", time(NULL), obj);
    ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    free(body);
}

Test(cluster, a_group_whose_committed_offset_was_deleted_stops_loudly_instead_of_skipping)
{
    char prefix[48], pi[64], group[64], log[512];
    ts_unique(prefix, sizeof(prefix), "ret");
    snprintf(pi, sizeof(pi), "pi_%s", prefix);
    snprintf(group, sizeof(group), "retention-%s", prefix);
    snprintf(log, sizeof(log), "%s/logs/%s.log", ts_env("PAYSTREAM_RUN_DIR"), group);
    const char *bin = ts_env("PAYSTREAM_BUILD_DIR");
    post_one(prefix, pi, 0);

    /* A worker of its own group applies (deduplicates) the event and commits. */
    int status;
    /* Bounded by timeout: a failed assertion below must not leave it running
     * (it would reconnect to the next run's database). */
    free(ts_sh(&status, "PAYSTREAM_PAYMENTS_GROUP=%s PAYSTREAM_LOG_LEVEL=debug timeout 300 "
               "'%s/services/payments/paystream-payments' >'%s' 2>&1 & echo $! >'%s.pid'",
               group, bin, log, log));
    char evt0[96];
    snprintf(evt0, sizeof(evt0), "\"event_id\":\"evt_%s_0\"", prefix);
    int64_t deadline = ps_mono_ms() + TS_WAIT_MS;
    char *seen = NULL;
    do {
        free(seen);
        usleep(100 * 1000);
        seen = ts_sh(NULL, "grep -c '%s' '%s' || true", evt0, log);
    } while (atoi(seen) == 0 && ps_mono_ms() < deadline);
    cr_assert_gt(atoi(seen), 0, "the group's worker never applied the event");
    free(seen);
    free(ts_sh(&status, "kill -TERM $(cat '%s.pid'); while kill -0 $(cat '%s.pid') 2>/dev/null; do sleep 0.1; done",
               log, log));

    /* Retention now deletes what that group has not read yet. */
    long before = log_starts();
    free(ts_sh(&status, "'%s/services/admin/paystream-admin' topics config paystream.stripe.events "
               "retention.bytes=1 segment.ms=1000 min.insync.replicas=2", bin));
    cr_assert_eq(status, 0);
    post_one(prefix, pi, 1);
    deadline = ps_mono_ms() + TS_WAIT_MS;
    for (int n = 2; log_starts() == before && ps_mono_ms() < deadline; n++) {
        sleep(1);
        post_one(prefix, pi, n); /* rolls the segment so that the old one can go */
    }
    long after = log_starts();
    free(ts_sh(&status, "'%s/services/admin/paystream-admin' topics config paystream.stripe.events "
               "min.insync.replicas=2", bin));
    cr_assert_gt(after, before, "retention did not delete anything");

    free(ts_sh(&status, "PAYSTREAM_PAYMENTS_GROUP=%s timeout 120 '%s/services/payments/paystream-payments' "
               ">>'%s' 2>&1", group, bin, log));
    cr_assert_eq(status, 3, "the worker must stop with status 3, not skip ahead (got %d)", status);
    char *loud = ts_sh(NULL, "grep -c 'committed offset is no longer in the log' '%s' || true", log);
    cr_assert_gt(atoi(loud), 0, "the stop names the reason in the log");
    free(loud);
}
