/* Applying a poll batch exactly once in effect. Its Stripe events go in one
 * transaction and one call of ps_apply_stripe_events, its commands in one of
 * ps_apply_commands, its usage records in one of ps_apply_usage, its PayPal
 * events in one of ps_apply_paypal_events (dedupe included in each); see
 * ps_apply_group for what happens when one of them fails. Commands that call
 * a gateway go alone, in their place in the log. The batch is prepared
 * (apply_prepare) on the worker's polling thread, while the one before it is
 * applied. */
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/kafka.h"

const ps_pg_stmt_t payments_statements[] = {
    {"apply_stripe_events", PAYMENTS_APPLY_STRIPE_EVENTS_SQL, 2},
    {"apply_commands", "SELECT ord, command_id, outcome FROM ps_apply_commands($1::jsonb)", 1},
    {"apply_usage", "SELECT ord, record_id, outcome FROM ps_apply_usage($1::jsonb)", 1},
    {"apply_paypal_events",
     "SELECT ord, event_id, outcome, note::text FROM ps_apply_paypal_events($1::jsonb)", 1},
    {"gateway_begin", "SELECT call::text, duplicate FROM ps_gateway_begin($1::jsonb)", 1},
    {"gateway_finish", "SELECT ps_gateway_finish($1::jsonb, $2::jsonb)", 2},
    {"billing_begin", "SELECT call::text, duplicate FROM ps_billing_begin($1::jsonb)", 1},
    {"billing_finish", "SELECT ps_billing_finish($1::jsonb, $2::jsonb)", 2},
    PS_WORKER_STATEMENTS,
};
const size_t payments_nstatements = sizeof(payments_statements) / sizeof(payments_statements[0]);

enum { STRIPE_EVENTS, COMMANDS, USAGE, PAYPAL_EVENTS, NGROUPS };

/* The statement that applies each group, in the order applied. */
static const char *const group_stmt[NGROUPS] = {"apply_stripe_events", "apply_commands",
                                                "apply_usage", "apply_paypal_events"};

/* A poll batch sorted by kind: each message prepared, in log order within
 * its group; bad ones in bad (to dead-letter), the Connect topic's that
 * are not payment facts in neither. */
typedef struct {
    ps_batch_msg_t *ecs;
    ps_batch_msg_t **groups[NGROUPS], **bad;
    size_t ngroup[NGROUPS], nbad, n;
} prepared_t;

/* Which group m belongs to, m prepared for it; -1 when it is the
 * connect-accounts worker's alone. */
static int prepare_one(ps_batch_msg_t *m)
{
    const char *topic = rd_kafka_topic_name(m->msg->rkt);
    int connect = strcmp(topic, PS_TOPIC_STRIPE_CONNECT_EVENTS) == 0;
    /* Of the Connect topic, only the events that state payment facts
     * (about a payment made on behalf of a connected account) are applied
     * here; the rest, and what is not an event at all, are the
     * connect-accounts worker's to apply, audit or dead-letter. */
    if (ps_batch_msg_envelope(m) < 0)
        return connect ? -1 : STRIPE_EVENTS;
    if (strcmp(topic, PS_TOPIC_COMMANDS_PAYMENTS) == 0) {
        command_prepare(m);
        return COMMANDS;
    }
    if (strcmp(topic, PS_TOPIC_COMMANDS_USAGE) == 0) {
        usage_prepare(m);
        return USAGE;
    }
    if (strcmp(topic, PS_TOPIC_PAYPAL_EVENTS) == 0) {
        paypal_event_prepare(m);
        return PAYPAL_EVENTS;
    }
    if (connect && !stripe_event_handled(m->env.type, 1))
        return -1;
    stripe_event_prepare(m, connect);
    return STRIPE_EVENTS;
}

void *apply_prepare(rd_kafka_message_t **msgs, size_t n)
{
    prepared_t *b = ps_xcalloc(1, sizeof(*b));
    b->n = n;
    b->ecs = ps_xcalloc(n, sizeof(*b->ecs));
    b->bad = ps_xcalloc(n, sizeof(ps_batch_msg_t *));
    for (int k = 0; k < NGROUPS; k++)
        b->groups[k] = ps_xcalloc(n, sizeof(ps_batch_msg_t *));
    for (size_t i = 0; i < n; i++) {
        ps_batch_msg_t *m = &b->ecs[i];
        m->msg = msgs[i];
        int k = prepare_one(m);
        if (k < 0)
            continue;
        if (m->bad)
            b->bad[b->nbad++] = m;
        else
            b->groups[k][b->ngroup[k]++] = m;
    }
    return b;
}

void apply_release(void *prepared)
{
    prepared_t *b = prepared;
    for (size_t i = 0; i < b->n; i++)
        ps_batch_msg_release(&b->ecs[i]);
    for (int k = 0; k < NGROUPS; k++)
        free(b->groups[k]);
    free(b->bad);
    free(b->ecs);
    free(b);
}

int apply_batch(ps_pg_t *pg, rd_kafka_t *dlq, rd_kafka_message_t **msgs, size_t n,
                void *prepared, ps_apply_stats_t *stats, volatile sig_atomic_t *run)
{
    (void)msgs;
    (void)n;
    prepared_t *b = prepared;
    int rc = 0;
    /* A message that can never apply: no retry will change that. */
    for (size_t i = 0; i < b->nbad && rc == 0; i++) {
        ps_batch_msg_t *m = b->bad[i];
        rc = ps_dead_letter(pg, dlq, m->msg, m->env.message_id, m->reason, run);
        if (rc == 0)
            stats->dead_lettered++;
    }
    for (int k = 0; k < NGROUPS && rc == 0; k++)
        rc = ps_apply_group(pg, dlq, group_stmt[k], b->groups[k], b->ngroup[k],
                            gateway_command_apply, stats, run);
    return rc;
}
