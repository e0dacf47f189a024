#include "paystream/kafka.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "paystream/log.h"
#include "paystream/util.h"

const char *const ps_kafka_topics[] = {
    PS_TOPIC_STRIPE_EVENTS, PS_TOPIC_STRIPE_CONNECT_EVENTS, PS_TOPIC_PAYPAL_EVENTS,
    PS_TOPIC_COMMANDS_PAYMENTS, PS_TOPIC_COMMANDS_USAGE, PS_TOPIC_DOMAIN_EVENTS, NULL,
};

/* librdkafka's own log lines, as JSON lines of ours. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    ps_log_level_t l = level <= 3 ? PS_LOG_ERROR : level <= 4 ? PS_LOG_WARN
                       : level <= 6 ? PS_LOG_INFO : PS_LOG_DEBUG;
    ps_log(l, "kafka client", "facility", fac, "detail", buf, NULL);
}

/* Sets name=value on conf; a failure is a bug of ours, reported in err. */
static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                    char *err, size_t errlen)
{
    if (rd_kafka_conf_set(conf, name, value, err, errlen) != RD_KAFKA_CONF_OK)
        return -1;
    return 0;
}

static rd_kafka_conf_t *conf_common(const char *brokers, const char *client_id,
                                    char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", brokers, err, errlen) < 0 ||
        conf_set(conf, "client.id", client_id, err, errlen) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;
}

rd_kafka_t *ps_kafka_producer_new(const char *brokers, const char *client_id,
                                  void (*dr_cb)(rd_kafka_t *, const rd_kafka_message_t *, void *),
                                  int timeout_ms, int linger_ms, char *err, size_t errlen)
{
    char timeout[16], linger[16];
    snprintf(timeout, sizeof(timeout), "%d", timeout_ms);
    snprintf(linger, sizeof(linger), "%d", linger_ms);
    rd_kafka_conf_t *conf = conf_common(brokers, client_id, err, errlen);
    if (conf == NULL)
        return NULL;
    if (conf_set(conf, "enable.idempotence", "true", err, errlen) < 0 ||
        conf_set(conf, "acks", "all", err, errlen) < 0 ||
        conf_set(conf, "message.timeout.ms", timeout, err, errlen) < 0 ||
        conf_set(conf, "linger.ms", linger, err, errlen) < 0 ||
        /* Stripe's events are 1.4-3 KB of JSON, and lz4 makes a batch of them
         * about a third of that for the broker to write, replicate and serve;
         * against no compression the machine's CPU per event did not differ
         * beyond the noise (README). */
        conf_set(conf, "compression.codec", "lz4", err, errlen) < 0 ||
        /* One produce request in flight per broker. With several, a fresh
         * partition can refuse the first batch and accept the next: Kafka
         * 4 takes an unknown producer's first sequence as it comes, and
         * librdkafka 2.0 then counts the refused, earlier batch as written
         * once it is retried. That answered 200 for events that were never
         * stored. */
        conf_set(conf, "max.in.flight.requests.per.connection", "1", err, errlen) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (rk == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* On assignment, start every partition from the group's committed offset, or
 * from the beginning where the group has never committed. We do this here
 * rather than through auto.offset.reset, which is "error": so that a
 * committed offset that retention has deleted stops the consumer instead of
 * silently jumping to the log start. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    const ps_kafka_revoke_hook_t *hook = opaque;
    if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (hook)
            hook->fn(hook->arg);
        rd_kafka_assign(rk, NULL);
        return;
    }
    rd_kafka_resp_err_t cerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int attempt = 0; attempt < 5; attempt++) {
        cerr = rd_kafka_committed(rk, parts, 10000);
        if (cerr == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        ps_sleep_ms(ps_backoff_ms(attempt, 200, 5000));
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        char part[16], off[24];
        snprintf(part, sizeof(part), "%" PRId32, p->partition);
        /* When the committed offsets are unknown, leave the offset invalid:
         * librdkafka then looks it up itself, and with auto.offset.reset=error
         * any doubt ends in a loud stop, never in a jump. */
        if (cerr == RD_KAFKA_RESP_ERR_NO_ERROR && p->offset < 0)
            p->offset = RD_KAFKA_OFFSET_BEGINNING;
        snprintf(off, sizeof(off), "%" PRId64, p->offset);
        ps_log_info("partition assigned", "topic", p->topic, "partition", part,
                    "start_offset", p->offset == RD_KAFKA_OFFSET_BEGINNING ? "beginning" : off,
                    NULL);
    }
    rd_kafka_assign(rk, parts);
}

rd_kafka_t *ps_kafka_consumer_new(const char *brokers, const char *group,
                                  const char *const *topics, int fetch_wait_ms,
                                  const ps_kafka_revoke_hook_t *on_revoke, char *err,
                                  size_t errlen)
{
    char wait[16];
    snprintf(wait, sizeof(wait), "%d", fetch_wait_ms);
    rd_kafka_conf_t *conf = conf_common(brokers, group, err, errlen);
    if (conf == NULL)
        return NULL;
    if (conf_set(conf, "group.id", group, err, errlen) < 0 ||
        conf_set(conf, "enable.auto.commit", "false", err, errlen) < 0 ||
        conf_set(conf, "enable.auto.offset.store", "false", err, errlen) < 0 ||
        conf_set(conf, "auto.offset.reset", "error", err, errlen) < 0 ||
        conf_set(conf, "isolation.level", "read_committed", err, errlen) < 0 ||
        /* A worker that dies hands its partitions over within 10 s (the
         * default 45 s stalls them that long); real Kafka's floor is 6 s. */
        conf_set(conf, "session.timeout.ms", "10000", err, errlen) < 0 ||
        conf_set(conf, "heartbeat.interval.ms", "1000", err, errlen) < 0 ||
        /* Prefetch and fetch a few MB, not librdkafka's 64 MB queue and
         * 50 MB responses: 2 MB is a poll batch (at most
         * PS_BATCH_BYTES_MAX) more than twice over (see wake_fetchers). */
        conf_set(conf, "queued.max.messages.kbytes", "2048", err, errlen) < 0 ||
        conf_set(conf, "fetch.max.bytes", "2097152", err, errlen) < 0 ||
        conf_set(conf, "max.partition.fetch.bytes", "262144", err, errlen) < 0 ||
        /* Under load, fetch a batch's worth at a time rather than whatever
         * arrived since the last fetch: fewer requests for the broker to
         * serve. When it is quiet, a fetch waits fetch_wait_ms for that
         * much: each wait is a request the broker answers empty, so the
         * shorter it is the more the broker works for idle consumers. */
        conf_set(conf, "fetch.min.bytes", "65536", err, errlen) < 0 ||
        conf_set(conf, "fetch.wait.max.ms", wait, err, errlen) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, (void *)on_revoke);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    size_t n = 0;
    while (topics[n])
        n++;
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (serr) {
        snprintf(err, errlen, "subscribe failed: %s", rd_kafka_err2str(serr));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

/* Handles an error event from the consumer; returns 1 when it is fatal. */
static int consumer_error(rd_kafka_t *rk, rd_kafka_message_t *m)
{
    char part[16], off[24];
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
    snprintf(part, sizeof(part), "%" PRId32, m->partition);
    snprintf(off, sizeof(off), "%" PRId64, m->offset);
    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
        ps_log_error("committed offset is no longer in the log; stopping instead of skipping ahead",
                     "topic", topic, "partition", part, "offset", off,
                     "detail", rd_kafka_message_errstr(m),
                     "hint", "messages were deleted before this group applied them: reconcile, "
                             "then move the group's offset on deliberately",
                     NULL);
        return 1;
    }
    char fatal_reason[256];
    if (rd_kafka_fatal_error(rk, fatal_reason, sizeof(fatal_reason))) {
        ps_log_error("fatal kafka client error", "detail", fatal_reason, NULL);
        return 1;
    }
    ps_log_warn("kafka consumer error", "topic", topic, "partition", part,
                "detail", rd_kafka_message_errstr(m), NULL);
    return 0;
}

/* Once a consumer's queue is full, librdkafka stops fetching until its
 * broker thread next wakes: up to a second, however soon the worker empties
 * the queue (confluentinc/librdkafka #2879; 2.2 added
 * fetch.queue.backoff.ms, Debian 12 has 2.0). A worker draining a backlog
 * through a 2 MB queue sat idle half of each second, and one through 16 MB
 * held 50 MiB. So after a full batch, which leaves room in the queue, this
 * asks the leader of each of its partitions for the partition's offsets: a
 * request to a broker wakes its thread, which then sees the room and
 * fetches. It costs a round trip per partition and full batch. */
static void wake_fetchers(rd_kafka_t *rk, rd_kafka_message_t *const *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < i && !(msgs[j]->rkt == msgs[i]->rkt && msgs[j]->partition == msgs[i]->partition))
            j++;
        if (j < i)
            continue;
        int64_t lo, hi;
        rd_kafka_query_watermark_offsets(rk, rd_kafka_topic_name(msgs[i]->rkt), msgs[i]->partition,
                                         &lo, &hi, 100);
    }
}

int ps_kafka_poll_batch(rd_kafka_t *rk, rd_kafka_message_t **msgs, size_t *n, size_t *bytes,
                        size_t max, int timeout_ms, int *fatal)
{
    size_t first = *n;
    *fatal = 0;
    while (*n < max && *bytes < PS_BATCH_BYTES_MAX) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, *n == first ? timeout_ms : 0);
        if (m == NULL)
            break;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && consumer_error(rk, m))
                *fatal = 1;
            rd_kafka_message_destroy(m);
            if (*fatal)
                break;
            continue;
        }
        *bytes += m->len;
        msgs[(*n)++] = m;
    }
    int full = *n == max || *bytes >= PS_BATCH_BYTES_MAX;
    if (full)
        wake_fetchers(rk, msgs, *n);
    return full;
}

int ps_kafka_commit_batch(rd_kafka_t *rk, rd_kafka_message_t *const *msgs, size_t n, int wait)
{
    if (n == 0)
        return 0;
    rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        const char *topic = rd_kafka_topic_name(msgs[i]->rkt);
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(offsets, topic, msgs[i]->partition);
        if (p == NULL)
            p = rd_kafka_topic_partition_list_add(offsets, topic, msgs[i]->partition);
        if (msgs[i]->offset + 1 > p->offset)
            p->offset = msgs[i]->offset + 1;
    }
    rd_kafka_resp_err_t err = rd_kafka_commit(rk, offsets, !wait);
    rd_kafka_topic_partition_list_destroy(offsets);
    if (err) {
        ps_log_error("offset commit failed; the batch will be redelivered and deduplicated",
                     "detail", rd_kafka_err2str(err), NULL);
        return -1;
    }
    return 0;
}

typedef struct {
    int done;
    rd_kafka_resp_err_t err;
} sync_delivery_t;

void ps_kafka_dr_sync(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    (void)opaque;
    sync_delivery_t *d = msg->_private;
    if (d) {
        d->err = msg->err;
        d->done = 1;
    }
}

int ps_kafka_produce_sync(rd_kafka_t *rk, const char *topic, const void *key, size_t keylen,
                          const void *value, size_t len, rd_kafka_headers_t *hdrs,
                          int timeout_ms, char *err, size_t errlen)
{
    sync_delivery_t d = {0, RD_KAFKA_RESP_ERR_NO_ERROR};
    rd_kafka_resp_err_t perr = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
        RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
    if (perr) {
        rd_kafka_headers_destroy(hdrs);
        snprintf(err, errlen, "produce to %s failed: %s", topic, rd_kafka_err2str(perr));
        return -1;
    }
    int64_t deadline = ps_mono_ms() + timeout_ms;
    while (!d.done && ps_mono_ms() < deadline)
        rd_kafka_poll(rk, 50);
    if (!d.done) {
        /* The report must come before d goes out of scope: purge the queue
         * so it is delivered now, with an error. */
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        while (!d.done)
            rd_kafka_poll(rk, 50);
    }
    if (d.err) {
        snprintf(err, errlen, "delivery to %s failed: %s", topic, rd_kafka_err2str(d.err));
        return -1;
    }
    return 0;
}
