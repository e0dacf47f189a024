/* Applying a poll batch exactly once in effect. Its Stripe events go in one
 * transaction and one call of ps_apply_stripe_events, its commands in one of
 * ps_apply_commands, its usage records in one of ps_apply_usage, its PayPal
 * events in one of ps_apply_paypal_events (dedupe included in each); see ps_apply_group for what happens when one of them
 * fails. Commands that call a gateway go alone, in their place in the log. */
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

/* The messages of one kind in a poll batch and the statement that applies
 * them. */
typedef struct {
    const char *stmt;
    ps_batch_msg_t **ms;
    size_t n;
} group_t;

int apply_batch(ps_pg_t *pg, rd_kafka_t *dlq, rd_kafka_message_t **msgs, size_t n,
                ps_apply_stats_t *stats, volatile sig_atomic_t *run)
{
    ps_batch_msg_t *ecs = ps_xcalloc(n, sizeof(*ecs));
    group_t groups[] = {
        {"apply_stripe_events", ps_xcalloc(n, sizeof(ps_batch_msg_t *)), 0},
        {"apply_commands", ps_xcalloc(n, sizeof(ps_batch_msg_t *)), 0},
        {"apply_usage", ps_xcalloc(n, sizeof(ps_batch_msg_t *)), 0},
        {"apply_paypal_events", ps_xcalloc(n, sizeof(ps_batch_msg_t *)), 0},
    };
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *topic = rd_kafka_topic_name(msgs[i]->rkt);
        group_t *g = &groups[0];
        int connect = strcmp(topic, PS_TOPIC_STRIPE_CONNECT_EVENTS) == 0;
        ecs[i].msg = msgs[i];
        /* Of the Connect topic, only the events that state payment facts
         * (about a payment made on behalf of a connected account) are
         * applied here; the rest, and what is not an event at all, are the
         * connect-accounts worker's to apply, audit or dead-letter. */
        if (ps_batch_msg_envelope(&ecs[i]) < 0) {
            if (connect)
                continue;
        } else if (strcmp(topic, PS_TOPIC_COMMANDS_PAYMENTS) == 0) {
            g = &groups[1];
            command_prepare(&ecs[i]);
        } else if (strcmp(topic, PS_TOPIC_COMMANDS_USAGE) == 0) {
            g = &groups[2];
            usage_prepare(&ecs[i]);
        } else if (strcmp(topic, PS_TOPIC_PAYPAL_EVENTS) == 0) {
            g = &groups[3];
            paypal_event_prepare(&ecs[i]);
        } else if (!connect) {
            stripe_event_prepare(&ecs[i], 0);
        } else if (stripe_event_handled(ecs[i].env.type, 1)) {
            stripe_event_prepare(&ecs[i], 1);
        } else {
            continue;
        }
        if (!ecs[i].bad) {
            g->ms[g->n++] = &ecs[i];
            continue;
        }
        /* A message that can never apply: no retry will change that. */
        rc = ps_dead_letter(pg, dlq, msgs[i], ecs[i].env.message_id, ecs[i].reason, run);
        if (rc == 0)
            stats->dead_lettered++;
    }
    for (size_t k = 0; k < sizeof(groups) / sizeof(groups[0]); k++) {
        if (rc == 0)
            rc = ps_apply_group(pg, dlq, groups[k].stmt, groups[k].ms, groups[k].n,
                                gateway_command_apply, stats, run);
        free(groups[k].ms);
    }
    for (size_t i = 0; i < n; i++)
        ps_batch_msg_release(&ecs[i]);
    free(ecs);
    return rc;
}
