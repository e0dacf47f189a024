/* The /api/v1 endpoints (and /billing/create-payment): routing, a pool of threads that serve them (each
 * with a PostgreSQL connection of its own, so that a query never holds an
 * HTTP thread that webhooks need), authentication and the write limit in
 * front of every handler, and JSON answers. */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "paystream/log.h"

#define QUEUE_MAX 4096 /* requests waiting for an API thread; more get 503 */

typedef void (*api_fn)(api_call_t *call);

const ps_pg_stmt_t api_statements[] = {
    /* Comparing hashes of 160-bit random keys: timing reveals nothing useful. */
    {"api_key", "SELECT actor, sandbox, admin FROM api_keys "
                "WHERE id = $1 AND secret_sha256 = $2 AND revoked_at IS NULL", 2},
    {"command", "SELECT " COMMAND_COLUMNS " FROM commands WHERE id = $1", 1},
    {"order", "SELECT ps_order_json(id)::text, status, currency FROM orders "
              "WHERE id = $1 AND (actor = $2 OR $3::boolean)", 3},
    {"orders_page", "SELECT ps_orders_page($1, $2::boolean, $3, $4, $5::integer)::text", 5},
    {"order_open", "SELECT status, currency, ps_order_open_minor(id) FROM orders "
                   "WHERE id = $1 AND (actor = $2 OR $3::boolean)", 3},
    {"payment", "SELECT ps_payment_json(id)::text, coalesce(order_id, ''), status, currency "
                "FROM payments WHERE id = $1 AND (actor = $2 OR $3::boolean)", 3},
    {"payments_page", "SELECT ps_payments_page($1, $2::boolean, $3, $4, $5::integer)::text", 5},
    {"transactions_page",
     "SELECT ps_transactions_page($1, $2::boolean, $3, $4, $5::integer)::text", 5},
    {"customer", "SELECT ps_customer_json(id)::text, currency, ps_customer_payable_minor(id) "
                 "FROM customers WHERE id = $1", 1},
    {"account", "SELECT ps_account_json(id)::text FROM connected_accounts WHERE id = $1", 1},
    {"account_refusal", "SELECT r::text, r->'error'->>'code' "
                        "FROM ps_account_refusal($1, true, $2, $3::boolean) r", 3},
};
const size_t api_nstatements = sizeof(api_statements) / sizeof(api_statements[0]);

/* An endpoint: method and path, where "*" stands for one id. */
static const struct {
    const char *method, *path;
    int write;        /* counted by the rate limit */
    const char *args; /* the query parameters it takes, space-separated */
    api_fn fn;
} endpoints[] = {
    {"POST", "/api/v1/orders", 1, "", orders_create},
    {"GET", "/api/v1/orders", 0, "limit starting_after status", orders_list},
    {"GET", "/api/v1/orders/*", 0, "", orders_get},
    {"PUT", "/api/v1/orders/*", 1, "", orders_update},
    {"DELETE", "/api/v1/orders/*", 1, "", orders_cancel},
    {"POST", "/api/v1/payments", 1, "", payments_create},
    {"GET", "/api/v1/payments", 0, "limit starting_after order_id", payments_list},
    {"GET", "/api/v1/payments/*", 0, "", payments_get},
    {"POST", "/api/v1/payments/*/process", 1, "", payments_process},
    {"POST", "/api/v1/payments/*/refund", 1, "", payments_refund},
    {"GET", "/api/v1/transactions", 0, "limit payment_id", transactions_list},
    {"GET", "/api/v1/transactions/*", 0, "", transactions_get},
    {"GET", "/api/v1/commands/*", 0, "", commands_get},
    {"POST", "/api/v1/customers", 1, "", customers_create},
    {"GET", "/api/v1/customers/me", 0, "", customers_me},
    {"POST", "/api/v1/usage", 1, "", usage_create},
    {"POST", "/billing/create-payment", 1, "", billing_create_payment},
    {"GET", "/api/v1/accounts/*", 0, "", accounts_get},
};
#define NENDPOINTS (sizeof(endpoints) / sizeof(endpoints[0]))

/* A call waiting for an API thread. */
typedef struct job {
    api_call_t call;
    size_t endpoint;
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
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};

static void answer_text(request_t *req, unsigned status, char *text)
{
    http_finish(req, status, text ? text : strdup("{}"));
}

void api_reply(api_call_t *call, unsigned status, json_t *body)
{
    answer_text(call->req, status, json_dumps(body, JSON_COMPACT));
    json_decref(body);
}

void api_error(api_call_t *call, unsigned status, const char *code, const char *message,
               const char *param)
{
    api_reply(call, status,
              json_pack("{s:{s:s, s:s, s:s, s:s?}}", "error", "type",
                        status >= 500 ? "api_error" : "invalid_request_error", "code", code,
                        "message", message, "param", param));
}

void api_errorf(api_call_t *call, unsigned status, const char *code, const char *param,
                const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    api_error(call, status, code, msg, param);
}

void api_db_error(api_call_t *call, const ps_pg_err_t *err)
{
    ps_log_error("database query failed", "sqlstate", err->sqlstate, "detail", err->message,
                 "path", call->path, NULL);
    api_error(call, err->transient ? 503 : 500, "database_unavailable",
              "the database cannot answer now; retry later", NULL);
}

PGresult *api_read_owned(api_call_t *call, const char *stmt, const char *what)
{
    ps_pg_err_t err;
    const char *params[] = {call->id, call->actor.id, call->actor.admin ? "true" : "false"};
    PGresult *res = ps_pg_exec_prepared(call->pg, stmt, 3, params, &err);
    if (res == NULL) {
        api_db_error(call, &err);
        return NULL;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        api_errorf(call, 404, "resource_missing", "id", "no such %s: %s", what, call->id);
        return NULL;
    }
    return res;
}

int api_limit(api_call_t *call, char out[8])
{
    const char *text = api_arg(call, "limit");
    snprintf(out, 8, "%d", API_LIMIT_DEFAULT);
    if (text == NULL)
        return 0;
    char *end;
    long n = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || n < 1 || n > API_LIMIT_MAX) {
        api_errorf(call, 400, "parameter_invalid", "limit",
                   "limit must be a whole number from 1 to %d", API_LIMIT_MAX);
        return -1;
    }
    snprintf(out, 8, "%ld", n);
    return 0;
}

/* Runs a page statement of (actor, admin, filter, cursor, limit) and
 * answers its JSON. */
void api_list_page(api_call_t *call, const char *stmt, const char *filter, const char *cursor)
{
    char limit[8];
    if (api_limit(call, limit) < 0)
        return;
    if (cursor && (*cursor == '\0' || strlen(cursor) > API_ID_MAX)) {
        api_error(call, 400, "parameter_invalid", "starting_after must be an id from a page",
                  "starting_after");
        return;
    }
    ps_pg_err_t err;
    const char *params[] = {call->actor.id, call->actor.admin ? "true" : "false", filter, cursor,
                            limit};
    PGresult *res = ps_pg_exec_prepared(call->pg, stmt, 5, params, &err);
    if (res == NULL) {
        api_db_error(call, &err);
        return;
    }
    http_finish(call->req, 200, strdup(PQgetvalue(res, 0, 0)));
    PQclear(res);
}

int api_checks_state(const api_call_t *call)
{
    return call->idempotency_key == NULL;
}

const char *api_arg(const api_call_t *call, const char *name)
{
    for (int i = 0; i < call->nargs; i++) {
        if (strcmp(call->args[i].name, name) == 0)
            return call->args[i].value;
    }
    return NULL;
}

void api_resource_path(const char *command_type, const char *resource_id, char *out,
                       size_t outlen)
{
    if (strncmp(command_type, "order.", 6) == 0)
        snprintf(out, outlen, "/api/v1/orders/%s", resource_id);
    else if (strncmp(command_type, "payment.", 8) == 0)
        snprintf(out, outlen, "/api/v1/payments/%s", resource_id);
    else if (strcmp(command_type, "customer.create") == 0)
        snprintf(out, outlen, "/api/v1/customers/me");
    else
        out[0] = '\0';
}

/* Ids in paths are letters, digits and underscores. */
static int id_valid(const char *s, size_t len)
{
    if (len == 0 || len > API_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return 0;
    }
    return 1;
}

/* Matches path against an endpoint's, where "*" stands for one id; copies
 * that id into id. */
static int path_match(const char *pattern, const char *path, char *id)
{
    while (*pattern) {
        if (*pattern != '*') {
            if (*pattern++ != *path++)
                return 0;
            continue;
        }
        size_t len = strcspn(path, "/");
        if (!id_valid(path, len))
            return 0;
        memcpy(id, path, len);
        id[len] = '\0';
        path += len;
        pattern++;
    }
    return *path == '\0';
}

/* Finds the endpoint of req; answers 404 or 405 itself and returns -1. */
static int route(request_t *req, char *id)
{
    int path_known = 0;
    for (size_t i = 0; i < NENDPOINTS; i++) {
        if (!path_match(endpoints[i].path, req->url, id))
            continue;
        path_known = 1;
        if (strcmp(endpoints[i].method, req->method) == 0)
            return (int)i;
    }
    if (path_known)
        http_respond_error(req, 405, "invalid_request_error", "method_not_allowed",
                           "method not allowed on this path", NULL);
    else
        http_respond_error(req, 404, "invalid_request_error", "not_found", "no such endpoint",
                           NULL);
    return -1;
}

static char *header_copy(request_t *req, const char *name)
{
    const char *v = http_header(req, name);
    return v ? strdup(v) : NULL;
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
    call->args[call->nargs].name = strdup(key);
    call->args[call->nargs].value = strdup(value ? value : "");
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

/* On the HTTP thread: routes, copies what the handler needs and queues the
 * call for an API thread. */
void handle_api(request_t *req)
{
    char id[API_ID_MAX + 1] = "";
    int endpoint = route(req, id);
    if (endpoint < 0)
        return;
    job_t *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        http_respond_error(req, 503, "api_error", "overloaded", "out of memory; retry later", NULL);
        return;
    }
    api_call_t *call = &job->call;
    job->endpoint = (size_t)endpoint;
    call->req = req;
    ps_strlcpy(call->method, req->method, sizeof(call->method));
    ps_strlcpy(call->path, req->url, sizeof(call->path));
    memcpy(call->id, id, sizeof(call->id));
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
                    strdup("{\"error\":{\"type\":\"api_error\",\"code\":\"overloaded\","
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
            if (v == NULL || end == v + 1 || n < 0 || (*end && *end != ',' && *end != ';' && *end != ' ')) {
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
            api_printable(shown, name, sizeof(shown));
            api_errorf(call, 400, "parameter_unknown", shown,
                       "%s is not a query parameter of this endpoint", shown);
            return -1;
        }
    }
    return 0;
}

/* Authenticates, limits writes, then runs the endpoint's handler. */
static void serve(job_t *job)
{
    api_call_t *call = &job->call;
    if (check_args(call, endpoints[job->endpoint].args) < 0)
        return;
    if (auth_authenticate(call) < 0 || parse_prefer(call) < 0)
        return;
    if (endpoints[job->endpoint].write) {
        /* A retry gets the first answer whatever changed since. */
        if (commands_replay(call))
            return;
        if (auth_take_write(call) < 0)
            return;
    }
    endpoints[job->endpoint].fn(call);
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
            pg = ps_pg_connect(pool.dsn, api_statements, api_nstatements, err.message,
                               sizeof(err.message));
        }
        job->call.pg = pg;
        if (pg == NULL || ps_pg_ensure(pg, &err) < 0)
            api_db_error(&job->call, &err);
        else
            serve(job);
        call_free(&job->call);
        free(job);
    }
    ps_pg_close(pg);
    return NULL;
}

int api_start(const char *dsn, int threads, char *err, size_t errlen)
{
    pool.dsn = dsn;
    pool.threads = calloc((size_t)threads, sizeof(pthread_t));
    if (pool.threads == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
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
