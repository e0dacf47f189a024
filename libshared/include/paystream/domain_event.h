/* The consumers' side of domain events: what paystream-inventory and
 * paystream-notifications read off paystream.domain.events, as the outbox
 * relay (paystream/outbox.h) published it: {type, aggregate, occurred_at,
 * data}, with the envelope's message id in the headers. */
#ifndef PAYSTREAM_DOMAIN_EVENT_H
#define PAYSTREAM_DOMAIN_EVENT_H

#include "paystream/worker.h"

/* A ps_prepare_fn: makes a message's element {message_id, at_ms (the
 * envelope's time, the same in every publication of the event), type,
 * aggregate, occurred_at, data}, or marks it bad when it is not a domain
 * event. */
void ps_domain_event_prepare(ps_batch_msg_t *m);

/* A worker's prepare hook (ps_worker_t) for a batch of domain events: each
 * message prepared as above (ps_alike_prepare); ps_alike_release frees it. */
void *ps_domain_events_prepare(rd_kafka_message_t **msgs, size_t n);

#endif
