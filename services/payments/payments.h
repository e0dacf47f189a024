/* Internal interfaces of paystream-payments. */
#ifndef PAYSTREAM_PAYMENTS_H
#define PAYSTREAM_PAYMENTS_H

#include <jansson.h>
#include <signal.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "paystream/envelope.h"
#include "paystream/pg.h"

/* Prepared statements of the worker. */
extern const ps_pg_stmt_t payments_statements[];
extern const size_t payments_nstatements;

/* One consumed message turned into its element of a batch. */
typedef struct {
    rd_kafka_message_t *msg;
    ps_envelope_t env;
    char *json;            /* one element of the array its batch function takes */
    char reason[256];      /* why it cannot be applied, when bad is set */
    int bad;
    int gateway;           /* a command that calls the payment gateway */
    char command_id[48];   /* of a command */
} batch_event_t;

/* apply.c: marks ec as not applicable for reason "what: detail". */
void batch_event_bad(batch_event_t *ec, const char *what, const char *detail);

/* apply.c: reads ec->env from the message's headers; returns 0, or -1 with
 * ec marked bad. */
int batch_event_envelope(batch_event_t *ec);

/* stripe_events.c: fills ec->json from ec->msg (which must be set), or sets
 * ec->bad with the reason when the message is not an applicable event. */
void stripe_event_prepare(batch_event_t *ec);

/* commands.c: the same for an API command (for ps_apply_commands). */
void command_prepare(batch_event_t *ec);

/* Counters of what the worker did, logged periodically. */
typedef struct {
    uint64_t applied, duplicate, stale, recorded, refused, dead_lettered, batches;
} apply_stats_t;

/* apply.c: applies msgs (one poll batch) exactly once in effect: one
 * transaction for the events and one for the commands, message by message when one of them fails, a
 * dead letter for a message that still fails after bounded retries. Returns
 * 0 when every message was applied or dead-lettered (the offsets may then be
 * committed), -1 when shutdown interrupted it (they may not). */
int apply_batch(ps_pg_t *pg, rd_kafka_t *dlq, rd_kafka_message_t **msgs, size_t n,
                apply_stats_t *stats, volatile sig_atomic_t *run);

/* apply.c: runs call in one transaction, waiting out failures of the
 * database. Returns 0 with the result in *res (PQclear it), 1 when the
 * call fails for a reason of its own (err filled), -1 on shutdown. */
int db_run(ps_pg_t *pg, const ps_pg_call_t *call, PGresult **res, ps_pg_err_t *err,
           volatile sig_atomic_t *run);

/* gateway_commands.c: applies a command that calls the payment gateway
 * (payment.process, payment.refund) exactly once in effect: the call is
 * recorded before it is made and its answer after, and a command delivered
 * again repeats the call with the same idempotency key. Returns 0 when the
 * command was applied, refused or dead-lettered, -1 on shutdown. */
int gateway_command_apply(ps_pg_t *pg, rd_kafka_t *dlq, batch_event_t *ec, apply_stats_t *stats,
                          volatile sig_atomic_t *run);

/* gateway.c: the payment gateways. A call of ps_gateway_begin's "call"
 * object; the idempotency key is the command id. */
typedef struct {
    const char *kind; /* charge or refund */
    const char *gateway;
    int64_t amount_minor;
    const char *currency, *payment_method, *reason;
    const char *payment_id, *order_id, *gateway_payment_id;
    const char *command_id;
} gateway_call_t;

/* Reads the gateways' configuration (STRIPE_SECRET_KEY, ...). */
void gateway_init(void);
void gateway_free(void);

/* The gateway of a new payment: the sandbox for a sandbox actor or when no
 * Stripe key is configured, else stripe. */
const char *gateway_for(int sandbox_actor);

/* Makes the call. Returns 0 with the gateway's answer in *outcome (the
 * object ps_gateway_finish takes), or -1 with the reason in err when the
 * answer is unknown (network, 5xx, 429) and the same call must be made
 * again. */
int gateway_call(const gateway_call_t *call, json_t **outcome, char *err, size_t errlen);

/* gateway_stripe.c: the stripe gateway (gateway_call's contract). */
int stripe_gateway_init(const char *secret_key, const char *api_base, long timeout_ms);
void stripe_gateway_free(void);
int stripe_gateway_call(const gateway_call_t *call, json_t **outcome, char *err, size_t errlen);

/* dead_letters.c: publishes msg to its topic's .dlq twin with the reason and
 * records it in dead_letters. Retries until both succeed or *run drops.
 * Returns 0, or -1 when interrupted. */
int dead_letter(ps_pg_t *pg, rd_kafka_t *dlq, const rd_kafka_message_t *msg,
                const char *message_id, const char *reason, volatile sig_atomic_t *run);

#endif
