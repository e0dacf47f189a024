/* Kafka producers and consumer-group members configured the way paystream
 * needs them: acks=all idempotent producers answered from delivery reports,
 * and consumers that commit offsets by hand after the database commit and
 * never skip ahead silently. */
#ifndef PAYSTREAM_KAFKA_H
#define PAYSTREAM_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* Topic names of design section 5. */
#define PS_TOPIC_STRIPE_EVENTS "paystream.stripe.events"
#define PS_TOPIC_STRIPE_CONNECT_EVENTS "paystream.stripe.connect-events"
#define PS_TOPIC_PAYPAL_EVENTS "paystream.paypal.events"
#define PS_TOPIC_COMMANDS_PAYMENTS "paystream.commands.payments"
#define PS_TOPIC_COMMANDS_USAGE "paystream.commands.usage"
#define PS_TOPIC_DOMAIN_EVENTS "paystream.domain.events"
#define PS_DLQ_SUFFIX ".dlq"

/* Every topic, without its .dlq twin, NULL-terminated. */
extern const char *const ps_kafka_topics[];

/* Creates an idempotent acks=all producer. dr_cb receives every delivery
 * report from rd_kafka_poll (or rd_kafka_flush) on the caller's thread;
 * timeout_ms bounds how long a message may wait for its acknowledgement
 * before its report says it failed; linger_ms lets messages batch. Returns
 * the handle (free with rd_kafka_destroy after rd_kafka_flush) or NULL with
 * the reason in err. */
rd_kafka_t *ps_kafka_producer_new(const char *brokers, const char *client_id,
                                  void (*dr_cb)(rd_kafka_t *, const rd_kafka_message_t *, void *),
                                  int timeout_ms, int linger_ms, char *err, size_t errlen);

/* What a consumer calls, on the thread that polls it, before the group
 * takes its partitions away: fn(arg). */
typedef struct {
    void (*fn)(void *arg);
    void *arg;
} ps_kafka_revoke_hook_t;

/* Creates a consumer-group member subscribed to topics (NULL-terminated).
 * Offsets are neither committed nor stored automatically. A partition the
 * group has never committed starts at its beginning; a committed offset that
 * is no longer in the log makes ps_kafka_poll_batch report a fatal error
 * instead of jumping. A fetch waits at the broker up to fetch_wait_ms for a
 * batch's worth of messages. on_revoke (NULL: none) must outlive the
 * consumer. Returns the handle (close with rd_kafka_consumer_close, then
 * rd_kafka_destroy) or NULL with the reason in err. */
rd_kafka_t *ps_kafka_consumer_new(const char *brokers, const char *group,
                                  const char *const *topics, int fetch_wait_ms,
                                  const ps_kafka_revoke_hook_t *on_revoke, char *err,
                                  size_t errlen);

/* Adds to a batch, msgs, that holds *n messages of *bytes bytes (both
 * kept up to date): up to max messages, and no more once they hold
 * PS_BATCH_BYTES_MAX bytes; waits up to timeout_ms for the first, then
 * takes what is already there. The caller destroys each message with
 * rd_kafka_message_destroy. Returns 1 when the batch is full, else 0. Sets
 * *fatal to 1 when the consumer must stop: a committed offset fell out of
 * the log, or a fatal client error; the reason has been logged. Once a
 * batch is full it wakes the fetchers of the batch's partitions (a round
 * trip per partition), so librdkafka refills its queue at once. */
/* A batch of Stripe's 1.4-3 KB events closes at about 340 of them: each
 * takes about 10 KB of a worker's memory while its batch is applied, and
 * the worker holds the next batch too. Batches of 2,000 held 38-45 MiB;
 * closed at 1 MB, the payments worker peaked at 30.5-32.1 MiB, at 768 KB
 * at 28.8-30.2 for the same throughput (README). Small messages still fill
 * a batch of max. */
#define PS_BATCH_BYTES_MAX (768 * 1024)

int ps_kafka_poll_batch(rd_kafka_t *rk, rd_kafka_message_t **msgs, size_t *n, size_t *bytes,
                        size_t max, int timeout_ms, int *fatal);

/* Commits, per partition, the offset after the last of msgs. Without wait,
 * it does not wait for the broker: a commit that fails later only means the
 * batch is delivered again, which the database's dedupe absorbs. With wait
 * (a worker's last batch before it stops) it returns once the broker took
 * it, so the next owner of the partitions starts after it. Returns 0, or -1
 * (logged) when the commit failed or could not be sent. */
int ps_kafka_commit_batch(rd_kafka_t *rk, rd_kafka_message_t *const *msgs, size_t n, int wait);

/* Publishes one message and waits up to timeout_ms for its delivery report.
 * For producers created with ps_kafka_dr_sync as dr_cb. hdrs are consumed
 * (also on failure). Returns 0 when acknowledged, or -1 with the reason in
 * err. */
int ps_kafka_produce_sync(rd_kafka_t *rk, const char *topic, const void *key, size_t keylen,
                          const void *value, size_t len, rd_kafka_headers_t *hdrs,
                          int timeout_ms, char *err, size_t errlen);
void ps_kafka_dr_sync(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque);

#endif
