/* Requests waiting for their command's result. One thread holds a
 * PostgreSQL connection that LISTENs on ps_commands (the worker NOTIFYs each
 * command id it applies, at commit) and looks commands up in batches: those
 * just notified, those whose request Kafka just acknowledged (the command
 * may have been applied before the waiter could hear of it), and all of them
 * after a reconnect (notifications sent while disconnected are lost). A
 * waiter whose time runs out gets its timeout answer (202 for a write). */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "paystream/log.h"
#include "paystream/util.h"
#include "waiter.h"

#define IDLE_POLL_MS 200
#define RECONNECT_MS 1000

struct waiter {
    publish_t pub; /* first: the message's opaque */
    request_t *req;
    char command_id[48];
    waiter_answer_fn answer;
    void *ctx;
    int64_t deadline_us;
    int published; /* Kafka acknowledged the command (or there is none to publish) */
    int check;     /* look the command up at the next round */
    unsigned timeout_status;
    char *timeout_body;
    char timeout_location[96];
    struct waiter *prev, *next;
};

static struct {
    pthread_mutex_t lock;
    waiter_t *head;
    int wake_fd;
    atomic_int running;
    pthread_t thread;
    const char *dsn;
} ws = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake_fd = -1};

static void wake(void)
{
    uint64_t one = 1;
    if (write(ws.wake_fd, &one, sizeof(one)) < 0) {
        /* The counter is saturated: the thread is awake already. */
    }
}

/* With ws.lock held. */
static void unlink_waiter(waiter_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        ws.head = w->next;
    if (w->next)
        w->next->prev = w->prev;
}

static void waiter_free(waiter_t *w)
{
    free(w->timeout_body);
    free(w->ctx);
    free(w);
}

/* Answers w with its timeout answer and frees it; w is unlinked. */
static void answer_timeout(waiter_t *w)
{
    if (w->timeout_location[0])
        http_add_header(w->req, "Location", w->timeout_location);
    http_finish(w->req, w->timeout_status, w->timeout_body);
    w->timeout_body = NULL;
    waiter_free(w);
}

static void delivered(publish_t *pub, rd_kafka_resp_err_t err)
{
    waiter_t *w = (waiter_t *)pub;
    pthread_mutex_lock(&ws.lock);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        unlink_waiter(w);
        ps_metric_add(intake.publish_failures, "", 1);
        ps_log_error("kafka did not acknowledge the command; answering 503", "command_id",
                     w->command_id, "detail", rd_kafka_err2str(err), NULL);
        http_finish(w->req, 503,
                    ps_xstrdup("{\"error\":{\"type\":\"api_error\",\"code\":\"kafka_unavailable\","
                               "\"message\":\"the command could not be stored; retry later\"}}"));
        waiter_free(w);
    } else if (ps_mono_us() >= w->deadline_us) {
        unlink_waiter(w); /* not waiting: 202 now */
        answer_timeout(w);
    } else {
        w->published = 1;
        w->check = 1;
        wake();
    }
    pthread_mutex_unlock(&ws.lock);
}

waiter_t *waiter_add(request_t *req, const char *command_id, waiter_answer_fn answer, void *ctx,
                     int wait_ms, int published, unsigned timeout_status,
                     const char *timeout_body, const char *timeout_location)
{
    waiter_t *w = ps_xcalloc(1, sizeof(*w));
    w->timeout_body = ps_xstrdup(timeout_body);
    w->pub.done = delivered;
    w->req = req;
    ps_strlcpy(w->command_id, command_id, sizeof(w->command_id));
    w->answer = answer;
    w->ctx = ctx;
    w->deadline_us = ps_mono_us() + (int64_t)wait_ms * 1000;
    w->published = published;
    w->check = published;
    w->timeout_status = timeout_status;
    ps_strlcpy(w->timeout_location, timeout_location, sizeof(w->timeout_location));
    pthread_mutex_lock(&ws.lock);
    w->next = ws.head;
    if (ws.head)
        ws.head->prev = w;
    ws.head = w;
    pthread_mutex_unlock(&ws.lock);
    if (published)
        wake();
    return w;
}

publish_t *waiter_publish(waiter_t *w)
{
    return &w->pub;
}

/* Marks every waiter of command_id (all of them when NULL) for a look-up. */
static void mark(const char *command_id)
{
    pthread_mutex_lock(&ws.lock);
    for (waiter_t *w = ws.head; w; w = w->next) {
        if (command_id == NULL || strcmp(w->command_id, command_id) == 0)
            w->check = 1;
    }
    pthread_mutex_unlock(&ws.lock);
}

/* The ids to look up now, as a PostgreSQL array literal ("{a,b}"); NULL
 * when there are none. Ids are cmd_ and hex digits: nothing to quote. */
static char *take_marked(void)
{
    size_t cap = 64, len = 1;
    char *ids = ps_xmalloc(cap);
    ids[0] = '{';
    pthread_mutex_lock(&ws.lock);
    for (waiter_t *w = ws.head; w; w = w->next) {
        if (!w->check || !w->published)
            continue;
        size_t n = strlen(w->command_id);
        if (len + n + 3 > cap) {
            cap = cap * 2 + n;
            ids = ps_xrealloc(ids, cap);
        }
        if (len > 1)
            ids[len++] = ',';
        memcpy(ids + len, w->command_id, n);
        len += n;
        w->check = 0;
    }
    pthread_mutex_unlock(&ws.lock);
    if (len == 1) {
        free(ids);
        return NULL;
    }
    ids[len++] = '}';
    ids[len] = '\0';
    return ids;
}

/* Answers every published waiter of the command in row. */
static void resolve(const command_row_t *row)
{
    pthread_mutex_lock(&ws.lock);
    waiter_t *w = ws.head;
    while (w) {
        waiter_t *next = w->next;
        if (w->published && strcmp(w->command_id, row->id) == 0) {
            unlink_waiter(w);
            w->answer(w->req, row, w->ctx);
            waiter_free(w);
        }
        w = next;
    }
    pthread_mutex_unlock(&ws.lock);
}

/* Looks up the marked commands and answers the waiters of those applied.
 * Returns -1 when the connection failed (they are marked again). */
static int look_up(PGconn *conn)
{
    char *ids = take_marked();
    if (ids == NULL)
        return 0;
    const char *params[] = {ids};
    PGresult *res = PQexecParams(
        conn, "SELECT " COMMAND_COLUMNS " FROM commands WHERE id = ANY($1::text[])", 1, NULL,
        params, NULL, NULL, 0);
    free(ids);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    for (int i = 0; ok && i < PQntuples(res); i++) {
        command_row_t row;
        if (command_row_read(res, i, &row) == 0)
            resolve(&row);
        command_row_free(&row);
    }
    if (!ok) {
        ps_log_warn("cannot look up commands for waiting requests", "detail",
                    PQerrorMessage(conn), NULL);
        mark(NULL);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

/* Answers the waiters whose time ran out; returns the microseconds until
 * the next deadline (at most IDLE_POLL_MS). */
static int64_t expire(void)
{
    int64_t now = ps_mono_us(), next = now + IDLE_POLL_MS * 1000;
    pthread_mutex_lock(&ws.lock);
    waiter_t *w = ws.head;
    while (w) {
        waiter_t *after = w->next;
        if (w->published && w->deadline_us <= now) {
            unlink_waiter(w);
            answer_timeout(w);
        } else if (w->published && w->deadline_us < next) {
            next = w->deadline_us;
        }
        w = after;
    }
    pthread_mutex_unlock(&ws.lock);
    return next - now;
}

static PGconn *listen_connect(void)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *values[] = {ws.dsn, "2", "paystream-intake-waiter", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    PGresult *res = NULL;
    if (PQstatus(conn) == CONNECTION_OK)
        res = PQexec(conn, "SET statement_timeout = '5s'; LISTEN ps_commands");
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        PQclear(res);
        PQfinish(conn);
        return NULL;
    }
    PQclear(res);
    mark(NULL); /* whatever was notified while we were away */
    return conn;
}

/* Takes in what the server sent; marks the notified commands. Returns -1
 * when the connection is lost. */
static int read_notifications(PGconn *conn)
{
    if (!PQconsumeInput(conn))
        return -1;
    PGnotify *n;
    while ((n = PQnotifies(conn)) != NULL) {
        mark(n->extra);
        PQfreemem(n);
    }
    return 0;
}

static void *waiter_thread(void *arg)
{
    (void)arg;
    PGconn *conn = NULL;
    int64_t retry_at = 0;
    while (atomic_load(&ws.running)) {
        if (conn == NULL && ps_mono_ms() >= retry_at) {
            conn = listen_connect();
            if (conn == NULL) {
                ps_log_warn("cannot listen for applied commands; waiting requests get 202", NULL);
                retry_at = ps_mono_ms() + RECONNECT_MS;
            }
        }
        int64_t timeout_us = expire();
        struct pollfd fds[2] = {{.fd = ws.wake_fd, .events = POLLIN},
                                {.fd = conn ? PQsocket(conn) : -1, .events = POLLIN}};
        poll(fds, 2, (int)((timeout_us + 999) / 1000));
        if (fds[0].revents & POLLIN) {
            uint64_t count;
            if (read(ws.wake_fd, &count, sizeof(count)) < 0) {
                /* Nothing to read after all: the next poll tells. */
            }
        }
        if (conn && (read_notifications(conn) < 0 || look_up(conn) < 0) &&
            PQstatus(conn) != CONNECTION_OK) {
            PQfinish(conn);
            conn = NULL;
        }
    }
    PQfinish(conn);
    return NULL;
}

int waiter_start(const char *dsn, char *err, size_t errlen)
{
    ws.dsn = dsn;
    ws.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ws.wake_fd < 0) {
        snprintf(err, errlen, "cannot create an eventfd");
        return -1;
    }
    atomic_store(&ws.running, 1);
    if (pthread_create(&ws.thread, NULL, waiter_thread, NULL) != 0) {
        snprintf(err, errlen, "cannot start the waiter thread");
        return -1;
    }
    return 0;
}

/* Stops the thread; waiters left get their timeout answer, or 503 when
 * Kafka never acknowledged their command. */
void waiter_stop(void)
{
    atomic_store(&ws.running, 0);
    wake();
    pthread_join(ws.thread, NULL);
    pthread_mutex_lock(&ws.lock);
    while (ws.head) {
        waiter_t *w = ws.head;
        unlink_waiter(w);
        if (w->published) {
            answer_timeout(w);
        } else {
            http_finish(w->req, 503,
                        ps_xstrdup("{\"error\":{\"type\":\"api_error\","
                                   "\"code\":\"shutting_down\",\"message\":\"the server "
                                   "stopped before the command was stored; retry\"}}"));
            waiter_free(w);
        }
    }
    pthread_mutex_unlock(&ws.lock);
    close(ws.wake_fd);
}
