/* topics dump TOPIC: every message a topic holds now, one JSON object a
 * line: {"partition", "offset", "key", "headers": {name: value}, "value"}
 * (the value as text, or null when it is not UTF-8). For looking into a
 * topic, and for the suite's check of every message against its schema
 * (tests/contracts). Reads with a consumer group of its own. */
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "paystream/config.h"

#define TIMEOUT_MS 30000
#define PARTITIONS_MAX 256

/* A message as its JSON line. */
static json_t *message_json(const rd_kafka_message_t *m)
{
    json_t *headers = json_object();
    rd_kafka_headers_t *h = NULL;
    const char *name;
    const void *value;
    size_t size;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &value, &size) == 0; i++) {
            json_t *v = value ? json_stringn(value, size) : NULL;
            json_object_set_new(headers, name, v ? v : json_null());
        }
    }
    json_t *key = m->key ? json_stringn(m->key, m->key_len) : NULL;
    json_t *val = m->payload ? json_stringn(m->payload, m->len) : NULL;
    return json_pack("{s:i, s:I, s:o, s:o, s:o}", "partition", (int)m->partition, "offset",
                     (json_int_t)m->offset, "key", key ? key : json_null(), "headers", headers,
                     "value", val ? val : json_null());
}

int cmd_topics_dump(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "paystream-admin: topics dump TOPIC\n");
        return 2;
    }
    const char *topic = argv[0];
    char err[512], group[64];
    snprintf(group, sizeof(group), "paystream-admin-dump-%d", (int)getpid());
    rd_kafka_t *c = admin_range_reader(ps_config_str("PAYSTREAM_KAFKA_BROKERS"), group, err,
                                       sizeof(err));
    int n = c ? admin_partitions(c, topic, err, sizeof(err)) : -1;
    if (n < 0 || n > PARTITIONS_MAX) {
        fprintf(stderr, "paystream-admin: %s\n", n > PARTITIONS_MAX ? "too many partitions" : err);
        if (c)
            rd_kafka_destroy(c);
        return 1;
    }
    int64_t end[PARTITIONS_MAX];
    int left = 0, rc = 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(c, topic, i, &lo, &hi, TIMEOUT_MS)) {
            fprintf(stderr, "paystream-admin: cannot read the offsets of %s[%d]\n", topic, i);
            rc = 1;
            break;
        }
        end[i] = hi;
        if (hi > lo) {
            rd_kafka_topic_partition_list_add(l, topic, i)->offset = lo;
            left++;
        }
    }
    if (rc == 0)
        rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    while (rc == 0 && left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, TIMEOUT_MS);
        if (m == NULL) {
            fprintf(stderr, "paystream-admin: %s stopped before its end\n", topic);
            rc = 1;
        } else if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fprintf(stderr, "paystream-admin: %s\n", rd_kafka_message_errstr(m));
            rc = 1;
        } else if (!m->err && m->offset < end[m->partition]) {
            json_t *line = message_json(m);
            char *text = json_dumps(line, JSON_COMPACT);
            puts(text);
            free(text);
            json_decref(line);
            if (m->offset + 1 >= end[m->partition])
                left--;
        }
        if (m)
            rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return rc;
}
