/* The message envelope: what every Kafka message of paystream carries in its
 * headers besides its key and value (see schemas/headers.md). */
#ifndef PAYSTREAM_ENVELOPE_H
#define PAYSTREAM_ENVELOPE_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "paystream/util.h"

#define PS_HDR_MESSAGE_ID "message_id"
#define PS_HDR_SOURCE "source"
#define PS_HDR_TYPE "type"
#define PS_HDR_RECEIVED_AT "received_at"
#define PS_HDR_ACTOR "actor"
#define PS_HDR_ACTOR_ROLES "actor_roles"

typedef struct {
    char message_id[PS_UUID_LEN + 1]; /* unique per message, a UUID */
    char source[32];                  /* stripe, stripe-connect, paypal, api */
    char type[128];                   /* e.g. payment_intent.succeeded */
    int64_t received_at_ms;           /* when the intake received it */
    char actor[129];                  /* the authenticated actor, or "" */
    char actor_roles[64];             /* space-separated: admin, sandbox; or "" */
} ps_envelope_t;

/* Fills env with a fresh message id, source, type and the current time. */
void ps_envelope_init(ps_envelope_t *env, const char *source, const char *type);

/* Returns new headers holding env; the caller owns them and passes them to
 * rd_kafka_producev (which takes ownership on success) or frees them with
 * rd_kafka_headers_destroy. */
rd_kafka_headers_t *ps_envelope_to_headers(const ps_envelope_t *env);

/* Reads env from a message's headers. Returns 0, or -1 with the reason in
 * err when the message id, source, type or receive time is missing or
 * malformed (headers may be NULL). Strings too long for env are refused,
 * not truncated. */
int ps_envelope_from_headers(const rd_kafka_headers_t *hdrs, ps_envelope_t *env,
                             char *err, size_t errlen);

/* Queues value (len bytes, copied) for topic with key and env as its
 * headers; opaque goes to the delivery report, which alone says whether
 * Kafka has it. Returns 0, or the error when the message could not even be
 * queued (no report will come). The one way paystream produces a message
 * of its own. */
rd_kafka_resp_err_t ps_envelope_produce(rd_kafka_t *rk, const char *topic, const char *key,
                                        const void *value, size_t len, const ps_envelope_t *env,
                                        void *opaque);

#endif
