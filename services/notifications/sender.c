/* The senders: threads that each take one due notification at a time
 * (ps_notifications_take), send it, and record the outcome
 * (ps_notification_done: sent, or tried again later with backoff, or
 * failed for good). Each has its own PostgreSQL connection, so a slow
 * receiver occupies one sender only; and since a target with a message in
 * flight is not taken again, it never occupies more. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifications.h"
#include "paystream/log.h"
#include "paystream/metrics.h"
#include "paystream/pg.h"
#include "paystream/util.h"

#define IDLE_MS 500          /* looks for due retries at least this often */
#define LEASE_EXTRA_MS 30000 /* a taken message is retaken after the timeout and this */
#define SENDERS_MAX 64

static const ps_pg_stmt_t statements[] = {
    {"take", "SELECT id, channel, target, template, event::text, attempts, url, secret "
             "FROM ps_notifications_take(1, $1::integer)", 1},
    {"done", "SELECT ps_notification_done($1::bigint, $2, $3::integer, $4::bigint, $5::bigint)", 5},
};

static struct {
    ps_metric_t *attempts, *seconds;
} nm;

static struct {
    sender_config_t c;
    pthread_t threads[SENDERS_MAX];
    int started;
    atomic_int running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    unsigned long wakes; /* counts senders_wake calls, under lock */
} senders = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

void senders_wake(void)
{
    pthread_mutex_lock(&senders.lock);
    senders.wakes++;
    pthread_cond_broadcast(&senders.wake);
    pthread_mutex_unlock(&senders.lock);
}

/* Waits up to ms, or until woken. */
static void idle(int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&senders.lock);
    unsigned long seen = senders.wakes;
    while (atomic_load(&senders.running) && seen == senders.wakes &&
           pthread_cond_timedwait(&senders.wake, &senders.lock, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&senders.lock);
}

/* Sends one email; returns 0, or -1 with err. */
static int send_email(const char *to, const char *template, json_t *event, long long id,
                      char *err, size_t errlen)
{
    email_t e;
    json_t *values = render_values(event);
    int rc = render_email(senders.c.templates, template ? template : "", values, &e);
    json_decref(values);
    if (rc < 0) {
        snprintf(err, errlen, "no template %s", template ? template : "(none)");
        return -1;
    }
    char *msg = mail_compose(&senders.c.smtp, to, &e, id);
    rc = mail_send(&senders.c.smtp, to, msg, err, errlen);
    free(msg);
    email_free(&e);
    return rc;
}

/* Records an attempt's outcome. PostgreSQL gone for a moment (a restart)
 * is waited out, reconnecting, while the lease lasts (until lease_end_ms):
 * after that another sender may take the message again, and a sent email
 * cannot be taken back. Returns the statement's result, or NULL. */
static PGresult *record(ps_pg_t **pg, const char *const *params, int64_t lease_end_ms,
                        ps_pg_err_t *err)
{
    for (;;) {
        PGresult *res = ps_pg_exec_prepared(*pg, "done", 5, params, err);
        if (res || !err->transient || ps_mono_ms() + IDLE_MS >= lease_end_ms ||
            !atomic_load(&senders.running))
            return res;
        ps_sleep_ms(IDLE_MS);
        char why[256];
        ps_pg_t *again = ps_pg_connect(senders.c.dsn, statements,
                                       sizeof(statements) / sizeof(statements[0]), why,
                                       sizeof(why));
        if (again) {
            ps_pg_close(*pg);
            *pg = again;
        }
    }
}

/* Sends row 0 of a take and records how it went. */
static void send_taken(ps_pg_t **pg, PGresult *taken, int64_t lease_end_ms)
{
    const char *id = PQgetvalue(taken, 0, 0), *channel = PQgetvalue(taken, 0, 1);
    const char *target = PQgetvalue(taken, 0, 2), *attempts = PQgetvalue(taken, 0, 5);
    json_t *event = json_loads(PQgetvalue(taken, 0, 4), 0, NULL);
    const char *message_id = json_string_value(json_object_get(event, "message_id"));
    const char *type = json_string_value(json_object_get(event, "type"));
    char err[512] = "";
    int rc;
    int64_t started = ps_mono_us();
    if (strcmp(channel, "email") == 0) {
        rc = send_email(target, PQgetisnull(taken, 0, 3) ? NULL : PQgetvalue(taken, 0, 3), event,
                        strtoll(id, NULL, 10), err, sizeof(err));
    } else if (PQgetisnull(taken, 0, 6)) {
        snprintf(err, sizeof(err), "subscriber %s no longer exists", target);
        rc = -1;
    } else {
        char *body = hook_body(event);
        rc = hook_post(PQgetvalue(taken, 0, 6), PQgetvalue(taken, 0, 7),
                       message_id ? message_id : "", body, senders.c.timeout_ms, err, sizeof(err));
        free(body);
    }
    char max_attempts[16], base[24], cap[24];
    snprintf(max_attempts, sizeof(max_attempts), "%d", senders.c.max_attempts);
    snprintf(base, sizeof(base), "%lld", senders.c.retry_base_ms);
    snprintf(cap, sizeof(cap), "%lld", senders.c.retry_max_ms);
    const char *params[] = {id, rc == 0 ? NULL : err, max_attempts, base, cap};
    ps_pg_err_t perr;
    PGresult *res = record(pg, params, lease_end_ms, &perr);
    const char *status = res && PQntuples(res) ? PQgetvalue(res, 0, 0) : "unrecorded";
    char labels[96];
    snprintf(labels, sizeof(labels), "channel=\"%s\"", channel);
    ps_metric_observe(nm.seconds, labels, (double)(ps_mono_us() - started) / 1e6);
    snprintf(labels, sizeof(labels), "channel=\"%s\",result=\"%s\"", channel,
             rc == 0 ? "sent" : strcmp(status, "failed") == 0 ? "failed" : "retry");
    ps_metric_add(nm.attempts, labels, 1);
    /* The target is a subscriber id or a customer's address: only the
     * former is logged. */
    const char *who = strcmp(channel, "webhook") == 0 ? target : NULL;
    if (rc == 0)
        ps_log_info("notification sent", "message_id", message_id, "notification_id", id,
                    "channel", channel, "event_type", type, "subscriber", who, "attempt", attempts,
                    NULL);
    else
        ps_log(strcmp(status, "failed") == 0 ? PS_LOG_ERROR : PS_LOG_WARN,
               strcmp(status, "failed") == 0 ? "notification failed for good"
                                             : "notification not sent; will try again",
               "message_id", message_id, "notification_id", id, "channel", channel, "event_type",
               type, "subscriber", who, "attempt", attempts, "status", status, "detail", err, NULL);
    if (res == NULL)
        ps_log_warn("cannot record a notification's outcome; it is sent again after its lease",
                    "notification_id", id, "detail", perr.message, NULL);
    PQclear(res);
    json_decref(event);
}

static void *sender_loop(void *arg)
{
    (void)arg;
    char err[256], lease[24];
    snprintf(lease, sizeof(lease), "%ld", senders.c.timeout_ms + LEASE_EXTRA_MS);
    ps_pg_t *pg = NULL;
    while (atomic_load(&senders.running)) {
        if (pg == NULL && (pg = ps_pg_connect(senders.c.dsn, statements,
                                              sizeof(statements) / sizeof(statements[0]), err,
                                              sizeof(err))) == NULL) {
            ps_log_warn("notification sender cannot connect to postgresql", "detail", err, NULL);
            idle(IDLE_MS * 4);
            continue;
        }
        const char *params[] = {lease};
        ps_pg_err_t perr;
        int64_t lease_end = ps_mono_ms() + senders.c.timeout_ms + LEASE_EXTRA_MS;
        PGresult *taken = ps_pg_exec_prepared(pg, "take", 1, params, &perr);
        if (taken == NULL) {
            ps_log_warn("cannot take notifications", "detail", perr.message, NULL);
            ps_pg_close(pg);
            pg = NULL;
            idle(IDLE_MS);
            continue;
        }
        if (PQntuples(taken) == 1)
            send_taken(&pg, taken, lease_end);
        else
            idle(IDLE_MS);
        PQclear(taken);
    }
    ps_pg_close(pg);
    return NULL;
}

int senders_start(const sender_config_t *c, char *err, size_t errlen)
{
    static const double seconds[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    nm.attempts = ps_metric_counter("paystream_notification_attempts_total",
                                    "sending attempts, by channel (email, webhook) and result: "
                                    "sent, retry (tried again later), failed (for good)");
    nm.seconds = ps_metric_histogram("paystream_notification_send_seconds",
                                     "time one sending attempt took, by channel", seconds,
                                     sizeof(seconds) / sizeof(seconds[0]));
    senders.c = *c;
    atomic_store(&senders.running, 1);
    for (int i = 0; i < c->threads && i < SENDERS_MAX; i++) {
        if (pthread_create(&senders.threads[i], NULL, sender_loop, NULL) != 0) {
            snprintf(err, errlen, "cannot start sender thread %d", i + 1);
            senders_stop();
            return -1;
        }
        senders.started++;
    }
    return 0;
}

void senders_stop(void)
{
    atomic_store(&senders.running, 0);
    senders_wake();
    for (int i = 0; i < senders.started; i++)
        pthread_join(senders.threads[i], NULL);
    senders.started = 0;
}
