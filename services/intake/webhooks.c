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
#include "paystream/kafka.h"
#include "paystream/log.h"
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

static const char *object_string(json_t *obj, const char *field)
{
    const char *s = json_string_value(json_object_get(obj, field));
    return s && *s ? s : NULL;
}

/* The aggregate an event changes, which becomes its Kafka key so that one
 * partition orders all of that aggregate's events: the Connect account for
 * Connect events; the payment intent for payment_intent, charge and refund
 * events; else the customer, else the object itself. */
static const char *event_key(json_t *event, json_t *object, int is_connect)
{
    const char *type = object_string(event, "type");
    const char *account = object_string(event, "account");
    if (is_connect && account)
        return account;
    if (strncmp(type, "payment_intent.", 15) == 0)
        return object_string(object, "id");
    const char *pi = object_string(object, "payment_intent");
    if (pi && (strncmp(type, "charge.", 7) == 0 || strncmp(type, "refund.", 7) == 0))
        return pi;
    const char *customer = object_string(object, "customer");
    if (customer)
        return customer;
    return object_string(object, "id") ? object_string(object, "id") : object_string(event, "id");
}

/* Checks that root has the shape of a Stripe event; returns the name of the
 * first offending field, or NULL when it is one. */
static const char *event_shape_error(json_t *root)
{
    if (!json_is_object(root))
        return "(body)";
    const char *id = object_string(root, "id");
    if (id == NULL || strncmp(id, "evt_", 4) != 0 || strlen(id) > 90)
        return "id";
    const char *object = object_string(root, "object");
    if (object == NULL || strcmp(object, "event") != 0)
        return "object";
    const char *type = object_string(root, "type");
    if (type == NULL || strlen(type) > 120)
        return "type";
    if (!json_is_integer(json_object_get(root, "created")))
        return "created";
    json_t *data = json_object_get(root, "data");
    if (!json_is_object(data) || !json_is_object(json_object_get(data, "object")))
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

/* Publishes a verified event; the answer comes from the delivery report. */
static void publish(request_t *req, endpoint_t *ep, json_t *root)
{
    json_t *object = json_object_get(json_object_get(root, "data"), "object");
    const char *key = event_key(root, object, ep == &connect_ep);
    ps_envelope_t env;
    ps_envelope_init(&env, ep->source, object_string(root, "type"));
    event_publish_t *pub = ps_xcalloc(1, sizeof(*pub));
    pub->req = req;
    pub->base.done = delivered;
    pub->base.produced_us = ps_mono_us();
    memcpy(pub->message_id, env.message_id, sizeof(pub->message_id));
    ps_strlcpy(pub->event_id, object_string(root, "id"), sizeof(pub->event_id));
    http_defer(req);
    rd_kafka_resp_err_t err =
        ps_envelope_produce(intake.producer, ep->topic, key, req->body, req->len, &env, pub);
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
    json_error_t jerr;
    json_t *root = json_loadb(req->body, req->len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        char msg[256], why[JSON_ERROR_TEXT_LENGTH];
        ps_printable(why, jerr.text, sizeof(why)); /* it quotes the body: bytes of any kind */
        snprintf(msg, sizeof(msg), "body is not valid JSON: %s (line %d, column %d)", why,
                 jerr.line, jerr.column);
        http_respond_error(req, 400, "invalid_request_error", "malformed_json", msg, NULL);
        return;
    }
    const char *bad = event_shape_error(root);
    if (bad) {
        char msg[160];
        snprintf(msg, sizeof(msg), "body is not a Stripe event: field %s is missing or invalid", bad);
        http_respond_error(req, 400, "invalid_request_error", "not_a_stripe_event", msg, bad);
    } else {
        publish(req, ep, root);
    }
    json_decref(root);
}

void handle_stripe_webhook(request_t *req)
{
    handle_webhook(req, &platform_ep);
}

void handle_stripe_connect_webhook(request_t *req)
{
    handle_webhook(req, &connect_ep);
}
