/* The bottom of paystream-intake: the HTTP layer (http.c) with the one
 * route table (routes.c), the state the service shares (main.c), the
 * webhook handlers (webhooks.c) and the probes (probes.c). The API (api.h
 * and the headers it names) sits on top of this. */
#ifndef PAYSTREAM_INTAKE_H
#define PAYSTREAM_INTAKE_H

#include <librdkafka/rdkafka.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "paystream/billing.h"
#include "paystream/metrics.h"

typedef struct request request_t;
typedef void (*handler_fn)(request_t *req);
struct api_call;
typedef void (*api_fn)(struct api_call *call);

#define ROUTE_ID_MAX 64 /* longest id in a path */

/* A route: method and path, where "*" stands for one id (a letter or
 * digit, then letters, digits and _ . : -); the path is its label in the metrics. A route has a
 * handler run on the HTTP thread (webhooks, probes), or an API handler run
 * on an API thread after authentication (api.h). */
typedef struct {
    const char *method;
    const char *path;
    handler_fn handler;
    api_fn api;
    int admin;        /* for operators: on the admin listener when there is one */
    int write;        /* API: a write, counted by the write limit */
    const char *args; /* API: the query parameters it takes, space-separated */
} route_t;

/* routes.c: every route of the intake. */
extern const route_t routes[];
extern const size_t nroutes;

/* What a listener serves: everything, or (with PAYSTREAM_ADMIN_PORT set)
 * webhooks and the API on one and the operators' routes on the other. */
typedef enum { LISTEN_ALL, LISTEN_PUBLIC, LISTEN_ADMIN } listener_t;

#define HTTP_MAX_HEADERS 3

/* One HTTP request, from its first byte to its completion. */
struct request {
    struct MHD_Connection *conn;
    const route_t *route;
    const char *method;
    const char *url; /* the path, without the query; owned by the server */
    char id[ROUTE_ID_MAX + 1]; /* the id the route's "*" matched, or "" */
    char *body;
    size_t len, cap;
    int too_large;
    int64_t started_us;
    unsigned status;      /* answered status, for the metrics */
    struct {
        char name[32], value[192];
    } headers[HTTP_MAX_HEADERS]; /* extra response headers */
    int nheaders;

    /* Deferred answers (see http_defer): guarded by lock. */
    pthread_mutex_t lock;
    int deferred, suspended, ready;
    unsigned ready_status;
    char *ready_body;
};

/* What travels with a produced message to its delivery report (as the
 * message's opaque): done is called with Kafka's verdict on the producer's
 * poll thread. Embedded first in the structure of each kind of message. */
typedef struct publish {
    void (*done)(struct publish *p, rd_kafka_resp_err_t err);
    int64_t produced_us;
} publish_t;

/* main.c: the producer's delivery-report callback; measures and calls done. */
void intake_delivered(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque);

/* Shared state of the service, set up by main.c. */
typedef struct {
    rd_kafka_t *producer;
    size_t max_body;
    const char *pg_dsn;
    int max_wait_ms; /* longest Prefer: wait honoured */
    int livemode; /* the Stripe account's mode (for GET /health) */
    ps_billing_t billing;
    ps_metric_t *requests, *verify_failures, *publish_latency, *publish_failures;
    ps_metric_t *auth_failures, *key_lookups;
    atomic_int draining;      /* stopping: new requests get 503 (http_drain) */
    atomic_int open_requests; /* taken and not yet answered in full */
} intake_t;

extern intake_t intake;

/* http.c: starts a server for listener's routes on addr:port with threads
 * polling threads. Returns it, or NULL with err saying why. */
struct MHD_Daemon *http_start(const char *addr, int port, int threads, listener_t listener,
                              char *err, size_t errlen);

/* Stopping: from here on every new request of the public listener gets
 * 503 shutting_down and every answer closes its connection, so clients
 * retry elsewhere; /ready answers 503. public_daemon stops accepting;
 * returns its listening socket, for the caller to close once the daemon
 * is stopped (or MHD_INVALID_SOCKET). */
int http_drain(struct MHD_Daemon *public_daemon);

/* Waits until every request taken before http_drain has been answered in
 * full, or timeout_ms passed; returns how many are still open. */
int http_wait_answered(int timeout_ms);

/* Answers req with status and a JSON body (copied). */
void http_respond_json(request_t *req, unsigned status, const char *json);

/* Answers with {"error":{"type","code","message","param"}}; param may be NULL. */
void http_respond_error(request_t *req, unsigned status, const char *type, const char *code,
                        const char *message, const char *param);

/* The value of request header name, or NULL. Owned by the server. */
const char *http_header(request_t *req, const char *name);

/* The client's address as text ("203.0.113.7"), "" when unknown. */
void http_client_address(request_t *req, char *out, size_t outlen);

/* Adds a header to req's answer (Location, Retry-After, ...); set it before
 * answering, from the thread that answers. */
void http_add_header(request_t *req, const char *name, const char *value);

/* Marks req as answered later from another thread with http_finish: the
 * connection is suspended when the handler returns. */
void http_defer(request_t *req);

/* Answers a deferred request from any thread; takes ownership of json (a
 * malloc'd string). */
void http_finish(request_t *req, unsigned status, char *json);

/* webhooks.c */
int webhooks_init(char *err, size_t errlen);
void webhooks_free(void);
void handle_stripe_webhook(request_t *req);
void handle_stripe_connect_webhook(request_t *req);
/* Whether each endpoint has its secret, for GET /health. */
int webhooks_enabled(int is_connect);
/* Publishes a verified webhook event (the request's body) to topic under
 * key, with an envelope of source and type; answers the request from
 * Kafka's delivery report: 200 once acknowledged, else 503. */
void webhook_publish(request_t *req, const char *topic, const char *source, const char *type,
                     const char *key, const char *event_id);

/* paypal.c: PayPal webhooks (POST /webhooks/paypal), verified with
 * PAYPAL_WEBHOOK_ID and PayPal's certificates. */
int paypal_webhooks_init(char *err, size_t errlen);
void paypal_webhooks_free(void);
int paypal_webhooks_enabled(void);
void handle_paypal_webhook(request_t *req);

/* page.c: the customer billing page and its script and style. */
void handle_page(request_t *req);

/* probes.c: probes_start runs the reachability checks behind GET /ready in
 * a thread of their own, once a second, until probes_stop. */
void probes_start(void);
void probes_stop(void);
void handle_health(request_t *req);
void handle_ready(request_t *req);
void handle_metrics(request_t *req);

#endif
