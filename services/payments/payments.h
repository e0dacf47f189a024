/* Internal interfaces of paystream-payments. */
#ifndef PAYSTREAM_PAYMENTS_H
#define PAYSTREAM_PAYMENTS_H

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "paystream/billing.h"
#include "paystream/envelope.h"
#include "paystream/pg.h"
#include "paystream/util.h"
#include "paystream/worker.h"

/* Applies a batch of Stripe events: $1 their elements (a JSON array),
 * $2 their payloads (text[]). Its own name so that the benchmark of
 * PostgreSQL's part (bench/applybench.c) runs the very same statement. */
#define PAYMENTS_APPLY_STRIPE_EVENTS_SQL                                                      \
    "SELECT ord, event_id, outcome, note::text FROM ps_apply_stripe_events($1::jsonb, $2::text[])"

/* Prepared statements of the worker. */
extern const ps_pg_stmt_t payments_statements[];
extern const size_t payments_nstatements;

/* stripe_events.c: the mode of the system's Stripe account (1 live, 0
 * test); events of the other mode are recorded and change nothing. */
void stripe_events_init(int livemode);

/* stripe_events.c: fills ec->json from ec->msg and ec->env (both must be
 * set: the envelope read from the message's headers), or sets ec->bad with
 * the reason when the message is not an applicable event. connect: it came
 * to the Connect endpoint. */
void stripe_event_prepare(ps_batch_msg_t *ec, int connect);

/* stripe_events.c: whether events of type change payments or billing;
 * from the Connect endpoint (connect set), only payment facts do: a
 * connected account's checkouts, subscriptions and invoices are its own. */
int stripe_event_handled(const char *type, int connect);

/* paypal_events.c: the same for a PayPal webhook event. */
void paypal_event_prepare(ps_batch_msg_t *ec);

/* commands.c: the same for an API command (for ps_apply_commands). */
void command_prepare(ps_batch_msg_t *ec);

/* commands.c: the name of the first field of a command (command_id, type,
 * resource_id, request_sha256, params) that is missing or malformed, or
 * NULL when it has the shape of one. */
const char *command_shape_error(json_t *root);

/* apply.c: sorts msgs (one poll batch) by kind and prepares each: the
 * worker's prepare (see ps_worker_t), touching neither PostgreSQL nor
 * Kafka. Free with apply_release. */
void *apply_prepare(rd_kafka_message_t **msgs, size_t n);
void apply_release(void *prepared);

/* apply.c: applies msgs, prepared by apply_prepare, exactly once in effect:
 * dead letters for the messages that can never apply, then one transaction
 * each for its events, commands and usage records (see ps_apply_group). A
 * ps_apply_batch_fn. */
int apply_batch(ps_pg_t *pg, rd_kafka_t *dlq, rd_kafka_message_t **msgs, size_t n,
                void *prepared, ps_apply_stats_t *stats, volatile sig_atomic_t *run);

/* gateway_commands.c: marks ec, a command of command_id that calls a
 * gateway, to be applied alone by gateway_command_apply with statements
 * begin and finish. */
void gateway_command_mark(ps_batch_msg_t *ec, const char *command_id, const char *begin,
                          const char *finish);

/* gateway_commands.c: applies a command that calls a gateway
 * (payment.process, payment.refund, customer.create, checkout.create)
 * exactly once in effect: its begin statement checks the rules and returns
 * the call, the finish statement records the answer, and a command
 * delivered again repeats the call with the same idempotency key. Returns 0 when the
 * command was applied, refused or dead-lettered, -1 on shutdown. */
int gateway_command_apply(ps_pg_t *pg, rd_kafka_t *dlq, ps_batch_msg_t *ec,
                          ps_apply_stats_t *stats, volatile sig_atomic_t *run);

/* gateway.c: the gateways behind the commands that call one. A call is
 * the object the begin step returns: kind (charge, refund, customer,
 * checkout), gateway (stripe, paypal, sandbox) and what that kind needs (see
 * gateway_stripe.c); the idempotency key is the command id. */

/* Reads the gateways' configuration (STRIPE_SECRET_KEY, ...). */
void gateway_init(void);
void gateway_free(void);

/* Whether the stripe gateway is configured. */
int gateway_stripe_enabled(void);

/* Whether the paypal gateway is configured. */
int gateway_paypal_enabled(void);

/* The gateway of a new payment or customer: the sandbox for a sandbox actor
 * or when no Stripe key is configured, else stripe. */
const char *gateway_for(int sandbox_actor);

/* An answer of a gateway's API as libcurl reads it: the body (through
 * ps_buf_write, at most GATEWAY_ANSWER_MAX bytes: no gateway answers that
 * much), and the gateway's id of the request (Stripe's Request-Id,
 * PayPal's Paypal-Debug-Id) for the logs. */
#define GATEWAY_ANSWER_MAX (1024 * 1024)
typedef struct {
    ps_buf_t body;
    char request_id[64];
    int should_retry; /* Stripe-Should-Retry: 1 true, 0 false, -1 absent */
} gateway_answer_t;

/* POSTs body to url on handle c with headers, waiting up to timeout_ms;
 * header_fn reads the answer's headers into a (the request id, ...).
 * Returns libcurl's code, with the status in *http (0 without an answer)
 * and the body as JSON in *root (NULL when it is none). */
CURLcode gateway_post(CURL *c, const char *url, struct curl_slist *headers, const char *body,
                      long timeout_ms, curl_write_callback header_fn, gateway_answer_t *a,
                      long *http, json_t **root);

/* Makes the call. Returns 0 with the gateway's answer in *outcome (the
 * object the finish step takes), or -1 with the reason in err when the
 * answer is unknown (network, 5xx, 429) and the same call must be made
 * again. */
int gateway_call(json_t *call, const char *command_id, json_t **outcome, char *err,
                 size_t errlen);

/* gateway_stripe.c: the stripe gateway (gateway_call's contract). */
void stripe_gateway_init(const char *secret_key, const char *api_base, long timeout_ms,
                        const char *success_url, const char *cancel_url);
int stripe_gateway_call(json_t *call, const char *command_id, json_t **outcome, char *err,
                        size_t errlen);

/* gateway_paypal.c: the paypal gateway (gateway_call's contract). */
void paypal_gateway_init(const char *client_id, const char *secret, const char *api_base,
                        long timeout_ms, const char *return_url, const char *cancel_url);
int paypal_gateway_call(json_t *call, const char *command_id, json_t **outcome, char *err,
                        size_t errlen);

/* A usage record as a Stripe billing meter event. */
typedef struct {
    const char *event_name, *stripe_customer_id, *identifier;
    int64_t value, timestamp;
} meter_event_t;

/* Reports ev (its identifier is also the Idempotency-Key). Returns 0 when
 * Stripe has it, 1 when Stripe refused it for good, -1 when the outcome is
 * unknown; err says why for 1 and -1. */
int stripe_meter_event(const meter_event_t *ev, char *err, size_t errlen);

/* meter.c: a thread that reports pending usage records to Stripe in
 * batches, with backoff, each exactly once in effect (Stripe dedupes on the
 * identifier). Started only when the stripe gateway is configured. */
int meter_reporter_start(const char *dsn, char *err, size_t errlen);
void meter_reporter_stop(void);

/* usage.c: the worker's billing settings (PAYSTREAM_METER_PRICES, ...);
 * returns -1 with err for a bad value. */
int usage_init(char *err, size_t errlen);

/* usage.c: the billing settings. */
const ps_billing_t *usage_billing(void);

/* usage.c: fills ec->json from a message of paystream.commands.usage (an
 * upstream record, or an API command; ec->msg and ec->env set), for
 * ps_apply_usage. */
void usage_prepare(ps_batch_msg_t *ec);

#endif
