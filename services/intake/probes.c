/* GET /health (liveness), /ready (Kafka and PostgreSQL reachable) and
 * /metrics (Prometheus text). */
#include <jansson.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "intake.h"
#include "paystream/util.h"

#define READY_CACHE_MS 1000

void handle_health(request_t *req)
{
    json_t *body = json_pack("{s:s, s:s, s:s, s:{s:b, s:b}}", "status", "ok", "service",
                             "paystream-intake", "version", PS_VERSION, "webhooks", "stripe",
                             webhooks_enabled(0), "stripe_connect", webhooks_enabled(1));
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

static int pg_reachable(void)
{
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *values[] = {intake.pg_dsn, "2", NULL};
    return PQpingParams(keys, values, 1) == PQPING_OK;
}

/* Both checks cost a network round trip: probes hitting us often share one
 * answer per second. */
void handle_ready(request_t *req)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static int64_t checked_at = -READY_CACHE_MS;
    static int kafka_ok, pg_ok;
    pthread_mutex_lock(&lock);
    if (ps_mono_ms() - checked_at >= READY_CACHE_MS) {
        kafka_ok = kafka_reachable();
        pg_ok = pg_reachable();
        checked_at = ps_mono_ms();
    }
    int k = kafka_ok, p = pg_ok;
    pthread_mutex_unlock(&lock);
    json_t *body = json_pack("{s:s, s:s, s:s}", "status", k && p ? "ready" : "not_ready",
                             "kafka", k ? "ok" : "unreachable", "postgresql",
                             p ? "ok" : "unreachable");
    char *text = json_dumps(body, JSON_COMPACT);
    http_respond_json(req, k && p ? 200 : 503, text);
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
