/* Stripe webhooks: verify the signature, check that the body is a Stripe
 * event, publish it keyed by its aggregate, and answer 200 only from the
 * Kafka delivery report (acks=all), 503 when Kafka does not take it. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "intake.h"
#include "paystream/config.h"
#include "paystream/envelope.h"
#include "paystream/json_scan.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/stripe_event.h"
#include "paystream/stripe_sig.h"
#include "paystream/util.h"

/* One webhook endpoint: its secrets, topic and message source. */
typedef struct {
    const char *name; /* for logs and metrics */
    const char *secret_var;
    const char *topic;
    const char *source;
    ps_sig_keys_t keys;
    int enabled;
} endpoint_t;

static endpoint_t platform_ep = {"stripe", "STRIPE_WEBHOOK_SECRET", PS_TOPIC_STRIPE_EVENTS,
                              "stripe", {{0}, 0}, 0};
static endpoint_t connect_ep = {"stripe_connect", "STRIPE_CONNECT_WEBHOOK_SECRET",
                             PS_TOPIC_STRIPE_CONNECT_EVENTS, "stripe-connect", {{0}, 0}, 0};
static int64_t tolerance;

/* What travels with an event to its delivery report. */
typedef struct {
    publish_t base;
    request_t *req;
    char message_id[PS_UUID_LEN + 1];
    char event_id[96];
} event_publish_t;

static int endpoint_init(endpoint_t *ep, char *err, size_t errlen)
{
    const char *csv = ps_config_str(ep->secret_var);
    if (*csv == '\0') {
        ps_log_warn("webhook secret not set; endpoint answers 503 until it is",
                    "endpoint", ep->name, "variable", ep->secret_var, NULL);
        return 0;
    }
    char why[128];
    if (ps_sig_keys_parse(csv, &ep->keys, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", ep->secret_var, why);
        return -1;
    }
    ep->enabled = 1;
    return 0;
}

int webhooks_init(char *err, size_t errlen)
{
    tolerance = ps_config_int("STRIPE_WEBHOOK_TOLERANCE_S");
    return endpoint_init(&platform_ep, err, errlen) < 0 || endpoint_init(&connect_ep, err, errlen) < 0
               ? -1 : 0;
}

int webhooks_enabled(int is_connect)
{
    return is_connect ? connect_ep.enabled : platform_ep.enabled;
}

void webhooks_free(void)
{
    ps_sig_keys_free(&platform_ep.keys);
    ps_sig_keys_free(&connect_ep.keys);
}

/* The members of an event the intake reads; the rest of the body goes to
 * Kafka as it came. */
enum { F_ROOT, F_ID, F_OBJECT, F_TYPE, F_CREATED, F_ACCOUNT, F_DATA, F_DATA_OBJECT, F_OBJ_ID,
       F_OBJ_PAYMENT_INTENT, F_OBJ_CUSTOMER, NFIELDS };
static const char *const field_paths[NFIELDS] = {
    [F_ROOT] = "", [F_ID] = "id", [F_OBJECT] = "object", [F_TYPE] = "type", [F_CREATED] = "created",
    [F_ACCOUNT] = "account", [F_DATA] = "data", [F_DATA_OBJECT] = "data.object",
    [F_OBJ_ID] = "data.object.id", [F_OBJ_PAYMENT_INTENT] = "data.object.payment_intent",
    [F_OBJ_CUSTOMER] = "data.object.customer",
};

/* A string member, NULL when absent, empty or not a string. */
/* The event's Kafka key (stripe_event.h). */
static const char *event_key(const ps_json_field_t *f, int is_connect)
{
    ps_stripe_key_t k = {
        .id = ps_json_text(&f[F_ID]), .type = ps_json_text(&f[F_TYPE]),
        .account = ps_json_text(&f[F_ACCOUNT]), .object_id = ps_json_text(&f[F_OBJ_ID]),
        .payment_intent = ps_json_text(&f[F_OBJ_PAYMENT_INTENT]),
        .customer = ps_json_text(&f[F_OBJ_CUSTOMER]),
    };
    return ps_stripe_event_key(&k, is_connect);
}

/* Checks that the scanned body has the shape of a Stripe event; returns the
 * name of the first offending field, or NULL when it is one. */
static const char *event_shape_error(const ps_json_field_t *f)
{
    if (f[F_ROOT].kind != PS_JSON_OBJECT)
        return "(body)";
    const char *id = ps_json_text(&f[F_ID]);
    if (id == NULL || strncmp(id, "evt_", 4) != 0 || strlen(id) > 90)
        return "id";
    const char *object = ps_json_text(&f[F_OBJECT]);
    if (object == NULL || strcmp(object, "event") != 0)
        return "object";
    const char *type = ps_json_text(&f[F_TYPE]);
    if (type == NULL || strlen(type) > 120)
        return "type";
    if (f[F_CREATED].kind != PS_JSON_INTEGER)
        return "created";
    if (f[F_DATA].kind != PS_JSON_OBJECT || f[F_DATA_OBJECT].kind != PS_JSON_OBJECT)
        return "data.object";
    return NULL;
}

/* Delivery report, on the producer's poll thread: answers the request. */
static void delivered(publish_t *base, rd_kafka_resp_err_t err)
{
    event_publish_t *pub = (event_publish_t *)base;
    json_t *body;
    unsigned status;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        status = 200;
        body = json_pack("{s:b, s:s}", "received", 1, "message_id", pub->message_id);
    } else {
        status = 503;
        ps_metric_add(intake.publish_failures, "", 1);
        ps_log_error("kafka did not acknowledge the event; answering 503 so that it is retried",
                     "message_id", pub->message_id, "event_id", pub->event_id,
                     "detail", rd_kafka_err2str(err), NULL);
        body = json_pack("{s:{s:s, s:s, s:s}}", "error", "type", "api_error", "code",
                         "kafka_unavailable", "message",
                         "the event could not be stored; retry later");
    }
    http_finish(pub->req, status, json_dumps(body, JSON_COMPACT));
    json_decref(body);
    free(pub);
}

static void verify_failed(request_t *req, endpoint_t *ep, ps_sig_result_t r)
{
    static const char *const messages[] = {
        [PS_SIG_MISSING] = "Stripe-Signature header is missing",
        [PS_SIG_MALFORMED] = "Stripe-Signature header has no t= timestamp or no v1= signature",
        [PS_SIG_MISMATCH] = "no signature matches the expected signature for this payload",
        [PS_SIG_STALE] = "timestamp is outside the tolerance window (too old)",
        [PS_SIG_FUTURE] = "timestamp is outside the tolerance window (in the future)",
    };
    char labels[96];
    snprintf(labels, sizeof(labels), "endpoint=\"%s\",reason=\"%s\"", ep->name,
             ps_sig_result_code(r));
    ps_metric_add(intake.verify_failures, labels, 1);
    ps_log_warn("webhook signature rejected", "endpoint", ep->name,
                "reason", ps_sig_result_code(r), NULL);
    http_respond_error(req, 400, "invalid_request_error", ps_sig_result_code(r), messages[r],
                       "Stripe-Signature");
}

void webhook_publish(request_t *req, const char *topic, const char *source, const char *type,
                     const char *key, const char *event_id)
{
    ps_envelope_t env;
    ps_envelope_init(&env, source, type);
    event_publish_t *pub = ps_xcalloc(1, sizeof(*pub));
    pub->req = req;
    pub->base.done = delivered;
    pub->base.produced_us = ps_mono_us();
    memcpy(pub->message_id, env.message_id, sizeof(pub->message_id));
    ps_strlcpy(pub->event_id, event_id, sizeof(pub->event_id));
    http_defer(req);
    rd_kafka_resp_err_t err =
        ps_envelope_produce(intake.producer, topic, key, req->body, req->len, &env, pub);
    if (err) {
        /* Not even queued (queue full, fatal idempotence error): no report
         * will come, so answer now. */
        ps_metric_add(intake.publish_failures, "", 1);
        ps_log_error("cannot queue the event for kafka; answering 503", "message_id",
                     pub->message_id, "event_id", pub->event_id, "detail",
                     rd_kafka_err2str(err), NULL);
        char *body = ps_xstrdup("{\"error\":{\"type\":\"api_error\",\"code\":\"kafka_unavailable\","
                                "\"message\":\"the event could not be stored; retry later\"}}");
        free(pub);
        http_finish(req, 503, body);
        return;
    }
    ps_log_debug("event published", "message_id", env.message_id, "event_id", pub->event_id,
                 "type", env.type, NULL);
}

static void handle_webhook(request_t *req, endpoint_t *ep)
{
    if (!ep->enabled) {
        http_respond_error(req, 503, "api_error", "not_configured",
                           "webhook secret is not configured on this server", NULL);
        return;
    }
    ps_sig_result_t r = ps_sig_verify(http_header(req, "Stripe-Signature"), req->body, req->len,
                                      &ep->keys, (int64_t)time(NULL), tolerance);
    if (r != PS_SIG_OK) {
        verify_failed(req, ep, r);
        return;
    }
    /* Only a few members are needed here: the body is checked and read
     * without building it (jansson's tree of a 2 KB event cost more than
     * the rest of the intake's work on it). */
    ps_json_field_t f[NFIELDS];
    for (int i = 0; i < NFIELDS; i++)
        f[i].path = field_paths[i];
    char why[160];
    if (ps_json_scan(req->body, req->len, f, NFIELDS, why, sizeof(why)) < 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "body is not valid JSON: %s", why);
        http_respond_error(req, 400, "invalid_request_error", "malformed_json", msg, NULL);
        return;
    }
    const char *bad = event_shape_error(f);
    if (bad) {
        char msg[160];
        snprintf(msg, sizeof(msg), "body is not a Stripe event: field %s is missing or invalid", bad);
        http_respond_error(req, 400, "invalid_request_error", "not_a_stripe_event", msg, bad);
    } else {
        webhook_publish(req, ep->topic, ep->source, ps_json_text(&f[F_TYPE]),
                        event_key(f, ep == &connect_ep), ps_json_text(&f[F_ID]));
    }
}

void handle_stripe_webhook(request_t *req)
{
    handle_webhook(req, &platform_ep);
}

void handle_stripe_connect_webhook(request_t *req)
{
    handle_webhook(req, &connect_ep);
}
