/* The HTTP layer: libmicrohttpd glue, finding a request's route (routes.c),
 * bodies, JSON answers, and answers deferred until a Kafka delivery report
 * or an API thread answers. */
#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "intake.h"
#include "paystream/log.h"
#include "paystream/util.h"

/* Whether listener serves route r: operators' routes go to the admin
 * listener when there is one, the others face the internet. */
static int serves(listener_t listener, const route_t *r)
{
    return listener == LISTEN_ALL || (listener == LISTEN_ADMIN) == r->admin;
}

/* Ids in paths are a letter or digit, then letters, digits and _ . : -
 * (a product's sku may have those; every other id is letters, digits and
 * underscores, and its handler checks its own shape). */
static int id_valid(const char *s, size_t len)
{
    if (len == 0 || len > ROUTE_ID_MAX || !isalnum((unsigned char)s[0]))
        return 0;
    for (size_t i = 1; i < len; i++) {
        if (!isalnum((unsigned char)s[i]) && strchr("_.:-", s[i]) == NULL)
            return 0;
    }
    return 1;
}

/* Matches path against a route's, where "*" stands for one id; copies that
 * id into id. */
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

/* Finds the route of listener for req's method and path, with the id of its
 * path in req->id; *path_known tells a wrong method (405) from an unknown
 * path (404). */
static const route_t *route_find(listener_t listener, request_t *req, int *path_known)
{
    *path_known = 0;
    for (size_t i = 0; i < nroutes; i++) {
        if (!serves(listener, &routes[i]) || !path_match(routes[i].path, req->url, req->id))
            continue;
        *path_known = 1;
        if (strcmp(routes[i].method, req->method) == 0)
            return &routes[i];
    }
    req->id[0] = '\0';
    return NULL;
}

static void queue(request_t *req, unsigned status, const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (atomic_load(&intake.draining))
        MHD_add_response_header(resp, "Connection", "close");
    for (int i = 0; i < req->nheaders; i++)
        MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value);
    MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    req->status = status;
}

void http_respond_json(request_t *req, unsigned status, const char *json)
{
    queue(req, status, json, strlen(json));
}

void http_respond_error(request_t *req, unsigned status, const char *type, const char *code,
                        const char *message, const char *param)
{
    json_t *err = json_pack("{s:{s:s, s:s, s:s, s:s?}}", "error", "type", type, "code", code,
                            "message", message, "param", param);
    char *text = json_dumps(err, JSON_COMPACT);
    http_respond_json(req, status, text ? text : "{}");
    free(text);
    json_decref(err);
}

const char *http_header(request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

void http_client_address(request_t *req, char *out, size_t outlen)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (ci == NULL || ci->client_addr == NULL)
        return;
    if (ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, out,
                  (socklen_t)outlen);
    else if (ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, out,
                  (socklen_t)outlen);
}

void http_add_header(request_t *req, const char *name, const char *value)
{
    if (req->nheaders >= HTTP_MAX_HEADERS)
        return;
    ps_strlcpy(req->headers[req->nheaders].name, name, sizeof(req->headers[0].name));
    ps_strlcpy(req->headers[req->nheaders].value, value, sizeof(req->headers[0].value));
    req->nheaders++;
}

void http_defer(request_t *req)
{
    req->deferred = 1;
}

void http_finish(request_t *req, unsigned status, char *json)
{
    pthread_mutex_lock(&req->lock);
    req->ready_status = status;
    req->ready_body = json;
    req->ready = 1;
    if (req->suspended)
        MHD_resume_connection(req->conn);
    pthread_mutex_unlock(&req->lock);
}

/* Queues the answer of a deferred request that has become ready. */
static void answer_ready(request_t *req)
{
    http_respond_json(req, req->ready_status, req->ready_body ? req->ready_body : "{}");
    free(req->ready_body);
    req->ready_body = NULL;
}

static request_t *request_new(struct MHD_Connection *conn, const char *url, const char *method)
{
    request_t *req = ps_xcalloc(1, sizeof(*req));
    req->conn = conn;
    req->method = method;
    req->url = url;
    req->started_us = ps_mono_us();
    pthread_mutex_init(&req->lock, NULL);
    /* Counted before the caller looks at draining: http_wait_answered then
     * sees every request that got past that check. */
    atomic_fetch_add(&intake.open_requests, 1);
    return req;
}

/* Appends an upload chunk, remembering (not storing) what is over the limit. */
static void body_append(request_t *req, const char *data, size_t size)
{
    if (req->too_large || req->len + size > intake.max_body) {
        req->too_large = 1;
        return;
    }
    if (req->len + size + 1 > req->cap) {
        size_t cap = req->cap ? req->cap : 4096;
        while (cap < req->len + size + 1)
            cap *= 2;
        req->body = ps_xrealloc(req->body, cap);
        req->cap = cap;
    }
    memcpy(req->body + req->len, data, size);
    req->len += size;
    req->body[req->len] = '\0';
}

static int content_length_over(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    return cl && strtoull(cl, NULL, 10) > intake.max_body;
}

/* Runs the route's handler on a complete request, then suspends the
 * connection if the handler deferred its answer and it is not ready yet. */
static void dispatch(request_t *req)
{
    if (req->too_large) {
        char msg[96];
        snprintf(msg, sizeof(msg), "request body is larger than %zu bytes", intake.max_body);
        http_respond_error(req, 413, "invalid_request_error", "body_too_large", msg, NULL);
        return;
    }
    if (req->body == NULL)
        body_append(req, "", 0);
    if (req->route->api)
        api_dispatch(req);
    else
        req->route->handler(req);
    if (!req->deferred)
        return;
    pthread_mutex_lock(&req->lock);
    if (req->ready) {
        answer_ready(req);
    } else {
        req->suspended = 1;
        MHD_suspend_connection(req->conn);
    }
    pthread_mutex_unlock(&req->lock);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    request_t *req = *con_cls;
    if (req == NULL) {
        req = request_new(conn, url, method);
        if (req == NULL)
            return MHD_NO;
        *con_cls = req;
        int path_known;
        req->route = route_find(*(const listener_t *)cls, req, &path_known);
        if (req->route == NULL) {
            if (path_known)
                http_respond_error(req, 405, "invalid_request_error", "method_not_allowed",
                                   "method not allowed on this path", NULL);
            else
                http_respond_error(req, 404, "invalid_request_error", "not_found",
                                   "no such endpoint", NULL);
            return MHD_YES;
        }
        if (atomic_load(&intake.draining) && !req->route->admin) {
            http_add_header(req, "Retry-After", "1");
            http_respond_error(req, 503, "api_error", "shutting_down",
                               "this server is stopping; retry", NULL);
            return MHD_YES;
        }
        if (content_length_over(conn)) {
            /* Refuse before reading a byte of it. */
            req->too_large = 1;
            dispatch(req);
        }
        return MHD_YES;
    }
    if (req->route == NULL || (req->status && !req->suspended)) {
        *upload_size = 0; /* already answered; the rest of the body is dropped */
        return MHD_YES;
    }
    if (*upload_size > 0) {
        body_append(req, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (req->suspended) {
        /* Resumed by http_finish. */
        pthread_mutex_lock(&req->lock);
        req->suspended = 0;
        answer_ready(req);
        pthread_mutex_unlock(&req->lock);
        return MHD_YES;
    }
    if (req->status == 0)
        dispatch(req);
    return MHD_YES;
}

/* Counts every finished request by route and status, then frees it. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    request_t *req = *con_cls;
    if (req == NULL)
        return;
    char labels[160];
    snprintf(labels, sizeof(labels), "route=\"%s\",status=\"%u\"",
             req->route ? req->route->path : "other", req->status);
    ps_metric_add(intake.requests, labels, 1);
    pthread_mutex_destroy(&req->lock);
    free(req->ready_body);
    free(req->body);
    free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&intake.open_requests, 1);
}

int http_drain(struct MHD_Daemon *public_daemon)
{
    atomic_store(&intake.draining, 1);
    return public_daemon ? MHD_quiesce_daemon(public_daemon) : MHD_INVALID_SOCKET;
}

int http_wait_answered(int timeout_ms)
{
    int64_t deadline = ps_mono_ms() + timeout_ms;
    int open;
    while ((open = atomic_load(&intake.open_requests)) > 0 && ps_mono_ms() < deadline)
        ps_sleep_ms(10);
    return open;
}

struct MHD_Daemon *http_start(const char *addr, int port, int threads, listener_t listener,
                              char *err, size_t errlen)
{
    static const listener_t kinds[] = {LISTEN_ALL, LISTEN_PUBLIC, LISTEN_ADMIN};
    struct sockaddr_storage sa;
    int family = ps_sockaddr(addr, port, &sa);
    if (family < 0) {
        snprintf(err, errlen, "\"%s\" is not an IPv4 or IPv6 address", addr);
        return NULL;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
            MHD_USE_ERROR_LOG | (family == AF_INET6 ? MHD_USE_DUAL_STACK : 0),
        (uint16_t)port, NULL, NULL, on_request, (void *)&kinds[listener],
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        /* One thread is no pool: libmicrohttpd warns about a pool of 1. */
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(threads > 1 ? threads : 0),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_END);
    if (d == NULL)
        snprintf(err, errlen, "cannot listen on %s:%d (in use, or not allowed)", addr, port);
    return d;
}
