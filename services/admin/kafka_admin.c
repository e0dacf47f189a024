/* Kafka administration through librdkafka's Admin API: no JVM needed, so a
 * script can create every topic in a fraction of a second. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "paystream/config.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/util.h"

#define ADMIN_TIMEOUT_MS 30000

static rd_kafka_t *admin_client(void)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", ps_config_str("PAYSTREAM_KAFKA_BROKERS"), err,
                          sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "paystream-admin: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* Waiting for brokers to come up is this tool's job: their refused
     * connections are expected, not worth a line each. */
    rd_kafka_conf_set(conf, "log_level", "2", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL)
        fprintf(stderr, "paystream-admin: %s\n", err);
    return rk;
}

/* Reads "--name value" options into the int slots of names; -1 on an
 * unknown option or a bad number. */
static int int_options(int argc, char **argv, const char *const *names, int *values, size_t n)
{
    for (int i = 0; i < argc; i += 2) {
        size_t k = 0;
        while (k < n && strcmp(argv[i], names[k]) != 0)
            k++;
        char *end;
        if (k == n || i + 1 >= argc || (values[k] = (int)strtol(argv[i + 1], &end, 10)) <= 0 || *end) {
            fprintf(stderr, "paystream-admin: bad option %s\n", argv[i]);
            return -1;
        }
    }
    return 0;
}

/* Waits for the result event of an admin call on q. */
static rd_kafka_event_t *wait_result(rd_kafka_queue_t *q)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, ADMIN_TIMEOUT_MS + 5000);
    if (ev == NULL)
        fprintf(stderr, "paystream-admin: no answer from kafka\n");
    return ev;
}

static rd_kafka_NewTopic_t *new_topic(const char *name, int partitions, int replication,
                                      int min_insync)
{
    char err[256], isr[16];
    rd_kafka_NewTopic_t *t = rd_kafka_NewTopic_new(name, partitions, replication, err, sizeof(err));
    snprintf(isr, sizeof(isr), "%d", min_insync);
    rd_kafka_NewTopic_set_config(t, "min.insync.replicas", isr);
    return t;
}

int cmd_topics_create(int argc, char **argv)
{
    static const char *const names[] = {"--partitions", "--replication", "--min-insync"};
    int opt[3] = {2, 1, 0}; /* partitions as in schemas/topics.txt */
    if (int_options(argc, argv, names, opt, 3) < 0)
        return 2;
    if (opt[2] == 0)
        opt[2] = opt[1] > 1 ? 2 : 1;
    rd_kafka_t *rk = admin_client();
    if (rk == NULL)
        return 1;
    rd_kafka_NewTopic_t *topics[32];
    size_t n = 0;
    char dlq[256];
    for (int i = 0; ps_kafka_topics[i]; i++) {
        snprintf(dlq, sizeof(dlq), "%s%s", ps_kafka_topics[i], PS_DLQ_SUFFIX);
        topics[n++] = new_topic(ps_kafka_topics[i], opt[0], opt[1], opt[2]);
        topics[n++] = new_topic(dlq, opt[0], opt[1], opt[2]);
    }
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(ao, ADMIN_TIMEOUT_MS, NULL, 0);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, topics, n, ao, q);
    rd_kafka_event_t *ev = wait_result(q);
    int rc = ev ? 0 : 1;
    if (ev && rd_kafka_event_error(ev)) {
        fprintf(stderr, "paystream-admin: %s\n", rd_kafka_event_error_string(ev));
        rc = 1;
    } else if (ev) {
        size_t cnt;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
            if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                fprintf(stderr, "paystream-admin: %s: %s\n", rd_kafka_topic_result_name(res[i]),
                        rd_kafka_topic_result_error_string(res[i]));
                rc = 1;
            }
        }
        if (rc == 0)
            printf("%zu topics ready (%d partitions, replication %d, min.insync.replicas %d)\n", cnt,
                   opt[0], opt[1], opt[2]);
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy_array(topics, n);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

int cmd_topics_config(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: paystream-admin topics config TOPIC NAME=VALUE...\n");
        return 2;
    }
    rd_kafka_t *rk = admin_client();
    if (rk == NULL)
        return 1;
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, argv[0]);
    for (int i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq == NULL) {
            fprintf(stderr, "paystream-admin: expected NAME=VALUE, got %s\n", argv[i]);
            rd_kafka_ConfigResource_destroy(cr);
            rd_kafka_destroy(rk);
            return 2;
        }
        *eq = '\0';
        rd_kafka_ConfigResource_set_config(cr, argv[i], eq + 1);
    }
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ALTERCONFIGS);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AlterConfigs(rk, &cr, 1, ao, q);
    rd_kafka_event_t *ev = wait_result(q);
    int rc = ev ? 0 : 1;
    if (ev) {
        size_t cnt;
        const rd_kafka_ConfigResource_t **res =
            rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &cnt);
        if (rd_kafka_event_error(ev) || (cnt > 0 && rd_kafka_ConfigResource_error(res[0]))) {
            fprintf(stderr, "paystream-admin: %s\n",
                    rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev)
                                             : rd_kafka_ConfigResource_error_string(res[0]));
            rc = 1;
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_ConfigResource_destroy(cr);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

int cmd_kafka_wait(int argc, char **argv)
{
    static const char *const names[] = {"--brokers", "--timeout"};
    int opt[2] = {1, 60};
    if (int_options(argc, argv, names, opt, 2) < 0)
        return 2;
    rd_kafka_t *rk = admin_client();
    if (rk == NULL)
        return 1;
    int64_t deadline = ps_mono_ms() + (int64_t)opt[1] * 1000;
    int seen = 0;
    while (ps_mono_ms() < deadline) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, NULL, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            seen = md->broker_cnt;
            rd_kafka_metadata_destroy(md);
            if (seen >= opt[0])
                break;
        }
        ps_sleep_ms(250);
    }
    rd_kafka_destroy(rk);
    if (seen < opt[0]) {
        fprintf(stderr, "paystream-admin: %d of %d brokers answered within %d s\n", seen, opt[0], opt[1]);
        return 1;
    }
    return 0;
}

int cmd_kafka_watermarks(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "usage: paystream-admin kafka watermarks TOPIC\n");
        return 2;
    }
    rd_kafka_t *rk = admin_client();
    if (rk == NULL)
        return 1;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, argv[0], NULL);
    const struct rd_kafka_metadata *md = NULL;
    int rc = 0;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "paystream-admin: no metadata for topic %s\n", argv[0]);
        rc = 1;
    }
    for (int p = 0; rc == 0 && p < md->topics[0].partition_cnt; p++) {
        int64_t low, high;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, argv[0], p, &low, &high, 10000);
        if (err) {
            fprintf(stderr, "paystream-admin: partition %d: %s\n", p, rd_kafka_err2str(err));
            rc = 1;
        } else {
            printf("%d %lld %lld\n", p, (long long)low, (long long)high);
        }
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return rc;
}
