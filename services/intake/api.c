/* The API's threads and the queue in front of them: see api.h. Each
 * thread authenticates a call, applies the write limit and runs its route's
 * handler; the statements of every API module are prepared on its
 * connection. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "auth.h"
#include "call.h"
#include "commands.h"
#include "paystream/log.h"
#include "resources.h"
#include "validate.h"

#define QUEUE_MAX 4096 /* requests waiting for an API thread; more get 503 */
#define STATEMENTS_MAX 32

/* A call waiting for an API thread. */
typedef struct job {
    api_call_t call;
    struct job *next;
} job_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    job_t *head, *tail;
    size_t queued;
    int stopping;
    pthread_t *threads;
    int nthreads;
    const char *dsn;
    ps_pg_stmt_t statements[STATEMENTS_MAX]; /* of every module, prepared on each connection */
    size_t nstatements;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};

/* Gathers the statements of the API's modules, each of which owns its SQL. */
static int gather_statements(char *err, size_t errlen)
{
    static const struct {
        const ps_pg_stmt_t *stmts;
        const size_t *n;
    } modules[] = {
        {auth_statements, &auth_nstatements},       {commands_statements, &commands_nstatements},
        {orders_statements, &orders_nstatements},   {payments_statements, &payments_nstatements},
        {billing_statements, &billing_nstatements}, {accounts_statements, &accounts_nstatements},
        {products_statements, &products_nstatements},
    };
    pool.nstatements = 0;
    for (size_t m = 0; m < sizeof(modules) / sizeof(modules[0]); m++) {
        for (size_t i = 0; i < *modules[m].n; i++) {
            if (pool.nstatements == STATEMENTS_MAX) {
                snprintf(err, errlen, "more than %d API statements", STATEMENTS_MAX);
                return -1;
            }
            pool.statements[pool.nstatements++] = modules[m].stmts[i];
        }
    }
    return 0;
}

static char *header_copy(request_t *req, const char *name)
{
    const char *v = http_header(req, name);
    return v ? ps_xstrdup(v) : NULL;
}

static enum MHD_Result copy_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    (void)kind;
    api_call_t *call = cls;
    if (call->nargs >= API_MAX_ARGS) {
        call->nargs++; /* counted, to refuse the request */
        return MHD_YES;
    }
    call->args[call->nargs].name = ps_xstrdup(key);
    call->args[call->nargs].value = ps_xstrdup(value ? value : "");
    call->nargs++;
    return MHD_YES;
}

static void call_free(api_call_t *call)
{
    free(call->authorization);
    free(call->prefer);
    free(call->idempotency_key);
    for (int i = 0; i < call->nargs && i < API_MAX_ARGS; i++) {
        free(call->args[i].name);
        free(call->args[i].value);
    }
}

/* On the HTTP thread: copies what the handler needs and queues the call for
 * an API thread. */
void api_dispatch(request_t *req)
{
    job_t *job = ps_xcalloc(1, sizeof(*job));
    api_call_t *call = &job->call;
    call->req = req;
    call->route = req->route;
    ps_strlcpy(call->method, req->method, sizeof(call->method));
    ps_strlcpy(call->path, req->url, sizeof(call->path));
    memcpy(call->id, req->id, sizeof(call->id));
    call->authorization = header_copy(req, "Authorization");
    call->prefer = header_copy(req, "Prefer");
    call->idempotency_key = header_copy(req, "Idempotency-Key");
    http_client_address(req, call->client, sizeof(call->client));
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, copy_arg, call);

    http_defer(req);
    pthread_mutex_lock(&pool.lock);
    int full = pool.queued >= QUEUE_MAX || pool.stopping;
    if (!full) {
        if (pool.tail)
            pool.tail->next = job;
        else
            pool.head = job;
        pool.tail = job;
        pool.queued++;
        pthread_cond_signal(&pool.ready);
    }
    pthread_mutex_unlock(&pool.lock);
    if (full) {
        call_free(call);
        free(job);
        http_finish(req, 503,
                    ps_xstrdup("{\"error\":{\"type\":\"api_error\",\"code\":\"overloaded\","
                               "\"message\":\"too many requests in progress; retry later\"}}"));
    }
}

/* Reads Prefer: wait=N (RFC 7240); other preferences are ignored. Returns
 * 0, or -1 after answering 400. */
static int parse_prefer(api_call_t *call)
{
    if (call->prefer == NULL)
        return 0;
    const char *p = call->prefer;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (strncasecmp(p, "wait", 4) == 0 && (p[4] == '=' || p[4] == ' ')) {
            const char *v = strchr(p, '=');
            char *end;
            long n = v ? strtol(v + 1, &end, 10) : -1;
            if (v == NULL || end == v + 1 || n < 0 ||
                (*end && *end != ',' && *end != ';' && *end != ' ')) {
                api_error(call, 400, "invalid_header",
                          "Prefer: wait must be a whole number of seconds", "Prefer");
                return -1;
            }
            call->wait_ms = n > intake.max_wait_ms / 1000 ? intake.max_wait_ms : (int)n * 1000;
            return 0;
        }
        p = strchr(p, ',');
        if (p == NULL)
            break;
    }
    return 0;
}

/* Refuses query parameters the endpoint does not take. */
static int check_args(api_call_t *call, const char *allowed)
{
    if (call->nargs > API_MAX_ARGS) {
        api_error(call, 400, "parameter_unknown", "too many query parameters", NULL);
        return -1;
    }
    for (int i = 0; i < call->nargs; i++) {
        const char *name = call->args[i].name;
        if (!ps_has_word(allowed, name)) {
            char shown[48];
            ps_printable(shown, name, sizeof(shown));
            api_errorf(call, 400, "parameter_unknown", shown,
                       "%s is not a query parameter of this endpoint", shown);
            return -1;
        }
    }
    return 0;
}

/* Authenticates, limits writes, then runs the route's handler. */
static void serve(api_call_t *call)
{
    if (check_args(call, call->route->args) < 0)
        return;
    if (auth_authenticate(call) < 0 || parse_prefer(call) < 0)
        return;
    /* A retry of a write gets the first answer whatever changed since. */
    if (call->route->write && (commands_replay(call) || auth_take_write(call) < 0))
        return;
    call->route->api(call);
}

/* An API thread: connects lazily (the intake takes webhooks while
 * PostgreSQL is down) and serves queued calls until api_stop. */
static void *api_thread(void *arg)
{
    (void)arg;
    ps_pg_t *pg = NULL;
    for (;;) {
        pthread_mutex_lock(&pool.lock);
        while (pool.head == NULL && !pool.stopping)
            pthread_cond_wait(&pool.ready, &pool.lock);
        job_t *job = pool.head;
        if (job) {
            pool.head = job->next;
            if (pool.head == NULL)
                pool.tail = NULL;
            pool.queued--;
        }
        pthread_mutex_unlock(&pool.lock);
        if (job == NULL)
            break; /* stopping, and nothing left */
        ps_pg_err_t err = {.transient = true};
        if (pg == NULL) {
            pg = ps_pg_connect(pool.dsn, pool.statements, pool.nstatements, err.message,
                               sizeof(err.message));
        }
        job->call.pg = pg;
        if (pg == NULL || ps_pg_ensure(pg, &err) < 0)
            api_db_error(&job->call, &err);
        else
            serve(&job->call);
        call_free(&job->call);
        free(job);
    }
    ps_pg_close(pg);
    return NULL;
}

int api_start(const char *dsn, int threads, char *err, size_t errlen)
{
    if (gather_statements(err, errlen) < 0)
        return -1;
    pool.dsn = dsn;
    pool.threads = ps_xcalloc((size_t)threads, sizeof(pthread_t));
    for (; pool.nthreads < threads; pool.nthreads++) {
        if (pthread_create(&pool.threads[pool.nthreads], NULL, api_thread, NULL) != 0) {
            snprintf(err, errlen, "cannot start API thread %d", pool.nthreads);
            api_stop();
            return -1;
        }
    }
    return 0;
}

/* Serves what is queued, then stops the threads. */
void api_stop(void)
{
    pthread_mutex_lock(&pool.lock);
    pool.stopping = 1;
    pthread_cond_broadcast(&pool.ready);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.nthreads; i++)
        pthread_join(pool.threads[i], NULL);
    free(pool.threads);
    pool.threads = NULL;
    pool.nthreads = 0;
}
