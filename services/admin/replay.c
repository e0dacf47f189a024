/* replay TOPIC --from TIME|OFFSET [--to TIME|OFFSET]: reads a range of a
 * topic with a consumer group of its own (committing nothing, so no worker
 * loses its place) and publishes each message again to the same topic,
 * with its key and headers (its message id) as they were. Every worker of
 * the topic then applies the range again through its usual path, where
 * its dedupe makes a message it applied before a duplicate: a replay only
 * brings back what was lost, after a database restored from a backup, say.
 * A dedupe log keeps PAYSTREAM_LOG_RETENTION_DAYS, so a range older than
 * that could apply twice: it is refused unless --force. */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "paystream/config.h"
#include "paystream/kafka.h"
#include "paystream/util.h"

#define TIMEOUT_MS 30000
#define PARTITIONS_MAX 256
#define DEDUPE_DAYS_DEFAULT 30
#define PROGRESS_EVERY_MS 2000

/* --from or --to: an offset (digits, the same in every partition) or an
 * RFC 3339 UTC time ("2026-12-01T10:00:00Z"), as milliseconds. */
typedef struct {
    int is_time;
    int64_t value;
} position_t;

static int position_parse(const char *s, position_t *p)
{
    if (s[0] != '\0' && s[strspn(s, "0123456789")] == '\0') {
        p->is_time = 0;
        p->value = strtoll(s, NULL, 10);
        return 0;
    }
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (end == NULL || *end != '\0')
        return -1;
    p->is_time = 1;
    p->value = (int64_t)timegm(&tm) * 1000;
    return 0;
}

static int failures;

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk, (void)opaque;
    if (msg->err)
        failures++;
}

/* Each partition's offset at position p: offsets as given, times through
 * the broker's index (a time past the end gives the end). */
static int offsets_at(rd_kafka_t *c, const char *topic, int n, const position_t *p, int64_t *out,
                      char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = p->value;
    rd_kafka_resp_err_t e = p->is_time ? rd_kafka_offsets_for_times(c, l, TIMEOUT_MS)
                                       : RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < n && !e; i++) {
        int64_t lo, hi;
        e = rd_kafka_query_watermark_offsets(c, topic, i, &lo, &hi, TIMEOUT_MS);
        int64_t o = l->elems[i].offset;
        out[i] = o < 0 || o > hi ? hi : o < lo ? lo : o;
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        snprintf(err, errlen, "%s", rd_kafka_err2str(e));
    return e ? -1 : 0;
}

/* How many partitions of the assignment have not reached their end yet. */
static int64_t unfinished(rd_kafka_t *c, const char *topic, int n, const int64_t *end)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    int64_t left = 0;
    if (rd_kafka_assignment(c, &l) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 1;
    rd_kafka_position(c, l);
    for (int i = 0; i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *t = &l->elems[i];
        if (strcmp(t->topic, topic) == 0 && t->partition < n &&
            (t->offset < 0 || t->offset < end[t->partition]))
            left++;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return left;
}

/* Publishes every message of [start, end) of each partition again. */
static int replay_range(rd_kafka_t *c, rd_kafka_t *p, const char *topic, int n,
                        const int64_t *start, const int64_t *end, int64_t *done)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    int64_t total = 0, sent = 0, left = 0;
    for (int i = 0; i < n; i++) {
        if (end[i] > start[i]) {
            rd_kafka_topic_partition_list_add(l, topic, i)->offset = start[i];
            total += end[i] - start[i];
            left++;
        }
    }
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    int64_t next_progress = ps_mono_ms() + PROGRESS_EVERY_MS;
    while (left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 1000);
        if (m && !m->err && m->offset < end[m->partition]) {
            rd_kafka_headers_t *h = NULL, *copy = NULL;
            if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
                copy = rd_kafka_headers_copy(h);
            rd_kafka_resp_err_t e;
            while ((e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic),
                                          RD_KAFKA_V_PARTITION(m->partition),
                                          RD_KAFKA_V_KEY(m->key, m->key_len),
                                          RD_KAFKA_V_VALUE(m->payload, m->len),
                                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                          RD_KAFKA_V_HEADERS(copy), RD_KAFKA_V_END)) ==
                   RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(p, 100);
            if (e) { /* not queued: the headers are still ours */
                fprintf(stderr, "paystream-admin: cannot publish to %s: %s\n", topic,
                        rd_kafka_err2str(e));
                if (copy)
                    rd_kafka_headers_destroy(copy);
                rd_kafka_message_destroy(m);
                return -1;
            }
            sent++;
            done[m->partition]++;
            if (m->offset + 1 >= end[m->partition])
                left--;
        } else if (m && m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fprintf(stderr, "paystream-admin: reading %s: %s\n", topic, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            return -1;
        }
        if (m)
            rd_kafka_message_destroy(m);
        else
            left = unfinished(c, topic, n, end); /* a gap at a range's end (compaction) */
        rd_kafka_poll(p, 0);
        if (ps_mono_ms() >= next_progress) {
            fprintf(stderr, "replay: %" PRId64 " of %" PRId64 " messages sent again\n", sent, total);
            next_progress = ps_mono_ms() + PROGRESS_EVERY_MS;
        }
    }
    return 0;
}

int cmd_replay(int argc, char **argv)
{
    const char *topic = argc > 0 ? argv[0] : NULL, *from = NULL, *to = NULL;
    int force = 0, bad = topic == NULL || topic[0] == '-';
    for (int i = 1; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "--force") == 0)
            force = 1;
        else
            bad = 1;
    }
    int known = 0;
    for (size_t i = 0; topic && ps_kafka_topics[i]; i++)
        known |= strcmp(topic, ps_kafka_topics[i]) == 0;
    if (topic && !bad && !known) {
        fprintf(stderr, "paystream-admin: %s is not one of paystream's topics (a .dlq twin "
                        "goes back with dlq redrive)\n", topic);
        return 2;
    }
    position_t pfrom, pto = {0, INT64_MAX};
    if (bad || from == NULL || position_parse(from, &pfrom) < 0 ||
        (to && position_parse(to, &pto) < 0)) {
        fprintf(stderr, "paystream-admin: replay TOPIC --from TIME|OFFSET [--to TIME|OFFSET] "
                        "[--force]\n  TIME: 2026-12-01T10:00:00Z (UTC); OFFSET: the same in "
                        "every partition\n");
        return 2;
    }
    const char *days_env = getenv("PAYSTREAM_LOG_RETENTION_DAYS");
    int64_t days = days_env ? strtoll(days_env, NULL, 10) : DEDUPE_DAYS_DEFAULT;
    if (pfrom.is_time && !force && pfrom.value < ps_now_ms() - (days - 1) * 86400000LL) {
        fprintf(stderr, "paystream-admin: --from is older than the workers' dedupe logs keep "
                        "(%" PRId64 " days, PAYSTREAM_LOG_RETENTION_DAYS): messages that old could "
                        "apply twice; --force if that is what you want\n", days);
        return 2;
    }
    char err[512], group[64];
    snprintf(group, sizeof(group), "paystream-admin-replay-%d", (int)getpid());
    const char *brokers = ps_config_str("PAYSTREAM_KAFKA_BROKERS");
    rd_kafka_t *c = admin_range_reader(brokers, group, err, sizeof(err));
    rd_kafka_t *p = c ? ps_kafka_producer_new(brokers, "paystream-admin-replay", delivered,
                                              TIMEOUT_MS, 5, err, sizeof(err))
                      : NULL;
    int n = p ? admin_partitions(c, topic, err, sizeof(err)) : -1;
    int64_t start[PARTITIONS_MAX], end[PARTITIONS_MAX], done[PARTITIONS_MAX] = {0};
    int rc = 1;
    if (n > PARTITIONS_MAX)
        snprintf(err, sizeof(err), "%s has more than %d partitions", topic, PARTITIONS_MAX);
    else if (n > 0 && offsets_at(c, topic, n, &pfrom, start, err, sizeof(err)) == 0 &&
             offsets_at(c, topic, n, &pto, end, err, sizeof(err)) == 0 &&
             replay_range(c, p, topic, n, start, end, done) == 0) {
        rd_kafka_flush(p, TIMEOUT_MS);
        int64_t total = 0;
        for (int i = 0; i < n; i++)
            total += done[i];
        printf("replayed %" PRId64 " messages of %s (%d partitions)", total, topic, n);
        for (int i = 0; i < n; i++) {
            if (done[i])
                printf(" %d:%" PRId64 "..%" PRId64, i, start[i], end[i] - 1);
        }
        printf("%s\n", failures ? "; some were not acknowledged, replay again" : "");
        rc = failures ? 1 : 0;
        err[0] = '\0';
    }
    if (rc && err[0])
        fprintf(stderr, "paystream-admin: %s\n", err);
    if (c) {
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
    }
    if (p)
        rd_kafka_destroy(p);
    return rc;
}
