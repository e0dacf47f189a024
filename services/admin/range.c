/* Reading ranges of topics for the admin commands (replay, topics dump):
 * a consumer of a group of its own, which commits nothing, so that no
 * worker loses its place. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>

#include "admin.h"

#define TIMEOUT_MS 30000

int admin_partitions(rd_kafka_t *c, const char *topic, char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(c, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(c, 0, t, &md, TIMEOUT_MS);
    int n = -1;
    if (e)
        snprintf(err, errlen, "%s", rd_kafka_err2str(e));
    else if (md->topic_cnt != 1 || md->topics[0].err)
        snprintf(err, errlen, "no topic %s", topic);
    else
        n = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return n;
}

rd_kafka_t *admin_range_reader(const char *brokers, const char *group, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", group, err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, errlen) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (c == NULL)
        rd_kafka_conf_destroy(conf);
    return c;
}
