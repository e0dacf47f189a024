/* The outbox relay: publishes the rows of the outbox table (domain events
 * written in the transaction of the change that caused them) to
 * paystream.domain.events, in id order, keyed by their aggregate, with the
 * idempotent producer, and marks them published. It wakes on NOTIFY
 * ps_outbox (see ps_outbox_add) and looks again every second besides.
 *
 * Only one relay publishes at a time: the one holding a PostgreSQL advisory
 * lock; the others wait to take over. A crash between publishing and
 * marking publishes those rows again with the same message id: consumers
 * dedupe on it. */
#ifndef PAYSTREAM_OUTBOX_H
#define PAYSTREAM_OUTBOX_H

#include <stddef.h>


/* Starts the relay thread of this process with its own PostgreSQL
 * connection (dsn) and producer (brokers). Returns 0, or -1 with err. */
int ps_outbox_relay_start(const char *dsn, const char *brokers, const char *client_id,
                          char *err, size_t errlen);

/* What a worker that writes domain events does: starts the relay on
 * PAYSTREAM_PG_DSN and PAYSTREAM_KAFKA_BROKERS as client_id. Returns 0, or
 * -1 after logging why. */
int ps_outbox_relay_start_worker(const char *client_id);

/* Stops it after the round in progress. */
void ps_outbox_relay_stop(void);

#endif
