/* GET /health (liveness), /ready (Kafka and PostgreSQL reachable) and
 * /metrics (Prometheus text). */
#include <jansson.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "intake.h"
#include "paystream/util.h"

#define READY_CHECK_EVERY_MS 1000

/* Whether the payments workers call Stripe, as they last stated it in
 * service_state: 1, 0, or -1 until one has (or PostgreSQL is out of reach
 * since the start). Written by the checker thread only. */
static atomic_int stripe_enabled = -1;

/* Liveness, in the fields of paystream and of the billing server it
 * replaces (status "healthy", stripe_enabled, stripe_webhooks_enabled):
 * from memory only, never waiting for a peer. */
void handle_health(request_t *req)
{
    int stripe = atomic_load(&stripe_enabled);
    json_t *body = json_pack("{s:s, s:s, s:s, s:{s:b, s:b, s:b}, s:s, s:o, s:b}", "status",
                             "healthy", "service", "paystream-intake", "version", PS_VERSION,
                             "webhooks", "stripe", webhooks_enabled(0), "stripe_connect",
                             webhooks_enabled(1), "paypal", paypal_webhooks_enabled(),
                             "stripe_mode", intake.livemode ? "live" : "test", "stripe_enabled",
                             stripe < 0 ? json_null() : json_boolean(stripe),
                             "stripe_webhooks_enabled", webhooks_enabled(0));
    char *text = json_dumps(body, JSON_COMPACT);
    http_respond_json(req, 200, text);
    free(text);
    json_decref(body);
}

static int kafka_reachable(void)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(intake.producer, 0, NULL, &md, 2000);
    if (md)
        rd_kafka_metadata_destroy(md);
    return err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Whether PostgreSQL answers (a connection within 2 s, as a ping would
 * have it); on the way, what the payments workers stated. A connection per
 * check, not one kept: a database that hangs is then seen as one. */
static int pg_check(void)
{
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *values[] = {intake.pg_dsn, "2", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    /* Answering is enough: a schema without the table yet still answers. */
    int ok = PQstatus(conn) == CONNECTION_OK;
    if (ok) {
        PGresult *res = PQexec(conn, "SELECT state->>'gateway' FROM service_state "
                                     "WHERE service = 'payments'");
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
            atomic_store(&stripe_enabled, strcmp(PQgetvalue(res, 0, 0), "stripe") == 0);
        PQclear(res);
    }
    PQfinish(conn);
    return ok;
}

/* The last results of the reachability checks, written by the checker
 * thread only. */
static atomic_int kafka_ok, pg_ok;
static atomic_int checking = 1;
static pthread_t checker;

/* Each check can take seconds when its peer is down: they run here, once a
 * second, so that a readiness probe never holds an HTTP thread that
 * webhooks need. */
static void *check_loop(void *arg)
{
    (void)arg;
    while (atomic_load(&checking)) {
        atomic_store(&kafka_ok, kafka_reachable());
        atomic_store(&pg_ok, pg_check());
        for (int waited = 0; waited < READY_CHECK_EVERY_MS && atomic_load(&checking); waited += 100)
            ps_sleep_ms(100);
    }
    return NULL;
}

void probes_start(void)
{
    pthread_create(&checker, NULL, check_loop, NULL);
}

void probes_stop(void)
{
    atomic_store(&checking, 0);
    pthread_join(checker, NULL);
}

void handle_ready(request_t *req)
{
    int k = atomic_load(&kafka_ok), p = atomic_load(&pg_ok);
    int stopping = atomic_load(&intake.draining);
    int ready = k && p && !stopping;
    json_t *body = json_pack("{s:s, s:s, s:s}", "status",
                             stopping ? "stopping" : ready ? "ready" : "not_ready", "kafka",
                             k ? "ok" : "unreachable", "postgresql", p ? "ok" : "unreachable");
    char *text = json_dumps(body, JSON_COMPACT);
    http_respond_json(req, ready ? 200 : 503, text);
    free(text);
    json_decref(body);
}

void handle_metrics(request_t *req)
{
    char *text = ps_metrics_render();
    if (text == NULL) {
        http_respond_error(req, 503, "api_error", "overloaded", "out of memory", NULL);
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text,
                                                                MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4");
    MHD_queue_response(req->conn, 200, resp);
    MHD_destroy_response(resp);
    req->status = 200;
}
