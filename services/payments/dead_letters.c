/* Dead letters: a message that cannot be applied goes to its topic's .dlq
 * twin (with the reason in a header) and into the dead_letters table, and
 * the partition moves on. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "payments.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/util.h"

#define DLQ_TIMEOUT_MS 10000

/* Copies msg's headers and adds where it came from and why it failed. */
static rd_kafka_headers_t *dlq_headers(const rd_kafka_message_t *msg, const char *reason)
{
    rd_kafka_headers_t *src = NULL, *h;
    char part[16], off[24];
    rd_kafka_message_headers(msg, &src);
    h = src ? rd_kafka_headers_copy(src) : rd_kafka_headers_new(4);
    snprintf(part, sizeof(part), "%" PRId32, msg->partition);
    snprintf(off, sizeof(off), "%" PRId64, msg->offset);
    rd_kafka_header_add(h, "dlq_reason", -1, reason, -1);
    rd_kafka_header_add(h, "dlq_topic", -1, rd_kafka_topic_name(msg->rkt), -1);
    rd_kafka_header_add(h, "dlq_partition", -1, part, -1);
    rd_kafka_header_add(h, "dlq_offset", -1, off, -1);
    return h;
}

static int record_row(ps_pg_t *pg, const rd_kafka_message_t *msg, const char *message_id,
                      const char *reason, ps_pg_err_t *err)
{
    char part[16], off[24];
    snprintf(part, sizeof(part), "%" PRId32, msg->partition);
    snprintf(off, sizeof(off), "%" PRId64, msg->offset);
    /* bytea in hex input form, so that any bytes survive a text parameter. */
    size_t len = msg->len;
    char *hex = ps_xmalloc(2 * len + 3);
    memcpy(hex, "\\x", 2);
    ps_hex_encode(msg->payload ? msg->payload : (const void *)"", len, hex + 2);
    const char *values[6] = {rd_kafka_topic_name(msg->rkt), part, off,
                             message_id && *message_id ? message_id : NULL, reason, hex};
    PGresult *res = ps_pg_ensure(pg, err) == 0
                        ? ps_pg_exec_prepared(pg, "insert_dead_letter", 6, values, err)
                        : NULL;
    free(hex);
    PQclear(res);
    return res ? 0 : -1;
}

int dead_letter(ps_pg_t *pg, rd_kafka_t *dlq, const rd_kafka_message_t *msg,
                const char *message_id, const char *reason, volatile sig_atomic_t *run)
{
    char topic[256], err[512], part[16], off[24];
    snprintf(topic, sizeof(topic), "%s%s", rd_kafka_topic_name(msg->rkt), PS_DLQ_SUFFIX);
    snprintf(part, sizeof(part), "%" PRId32, msg->partition);
    snprintf(off, sizeof(off), "%" PRId64, msg->offset);
    ps_log_error("message dead-lettered", "message_id", message_id, "topic",
                 rd_kafka_topic_name(msg->rkt), "partition", part, "offset", off, "reason",
                 reason, NULL);
    int published = 0;
    for (int attempt = 0; *run; attempt++) {
        ps_pg_err_t pgerr = {0};
        if (!published)
            published = ps_kafka_produce_sync(dlq, topic, msg->key, msg->key_len, msg->payload,
                                              msg->len, dlq_headers(msg, reason), DLQ_TIMEOUT_MS,
                                              err, sizeof(err)) == 0;
        if (published && record_row(pg, msg, message_id, reason, &pgerr) == 0)
            return 0;
        ps_log_warn("dead letter not stored yet; retrying", "message_id", message_id, "detail",
                    published ? pgerr.message : err, NULL);
        ps_sleep_ms(ps_backoff_ms(attempt, 200, 30000));
    }
    return -1;
}
