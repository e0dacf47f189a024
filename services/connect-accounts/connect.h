/* Internal interfaces of paystream-connect-accounts. */
#ifndef PAYSTREAM_CONNECT_H
#define PAYSTREAM_CONNECT_H

#include "paystream/worker.h"

/* Prepared statements of the worker. */
extern const ps_pg_stmt_t connect_statements[];
extern const size_t connect_nstatements;

/* events.c: the mode of the platform's Stripe account (1 live, 0 test);
 * events of the other mode are audited and change nothing. */
void connect_events_init(int livemode);

/* events.c: prepares a poll batch of Connect events (the worker's prepare
 * hook, on its polling thread), then applies it exactly once in effect
 * (ps_apply_connect_events, in schemas/functions/connect.sql): a
 * ps_apply_batch_fn. */
void *connect_prepare_batch(rd_kafka_message_t **msgs, size_t n);
int connect_apply_batch(ps_pg_t *pg, rd_kafka_t *dlq, rd_kafka_message_t **msgs, size_t n,
                        void *prepared, ps_apply_stats_t *stats, volatile sig_atomic_t *run);

#endif
