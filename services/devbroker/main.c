/* paystream-devbroker: an embedded Kafka for local runs and tests.
 *
 * Hosts librdkafka's mock cluster on 127.0.0.1, creates paystream's topics
 * and their .dlq twins, and tells its bootstrap address on standard output
 * and, with --bootstrap-file, in a file (written atomically, so a script can
 * wait for it). It keeps about 5 MB per partition and drops older data
 * silently: that is why topics get many partitions, and why consumers stop
 * loudly when their committed offset has been dropped. It is one thread, and
 * it finds each fetch's batch by walking the partition's log from the oldest
 * batch: at thousands of events a second its answers slow down (README,
 * bench/webhooks). Measure performance on real Kafka. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/util.h"

static volatile sig_atomic_t run = 1;

static void stop(int sig)
{
    (void)sig;
    run = 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: paystream-devbroker [--partitions N] [--bootstrap-file PATH]\n\n"
            "Runs librdkafka's mock Kafka cluster on 127.0.0.1 with paystream's topics\n"
            "(N partitions each, default 12) until SIGINT or SIGTERM.\n");
}

/* Writes the bootstrap address to path via a temporary file and rename. */
static int write_bootstrap(const char *path, const char *bootstraps)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%s\n", bootstraps);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

static int create_topics(rd_kafka_mock_cluster_t *mc, int partitions)
{
    char dlq[256];
    for (int i = 0; ps_kafka_topics[i]; i++) {
        snprintf(dlq, sizeof(dlq), "%s%s", ps_kafka_topics[i], PS_DLQ_SUFFIX);
        if (rd_kafka_mock_topic_create(mc, ps_kafka_topics[i], partitions, 1) ||
            rd_kafka_mock_topic_create(mc, dlq, partitions, 1))
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    ps_malloc_tune(PS_MALLOC_SERVE);
    int partitions = 12;
    const char *bootstrap_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc) {
            partitions = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--bootstrap-file") == 0 && i + 1 < argc) {
            bootstrap_file = argv[++i];
        } else {
            usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (partitions < 1 || partitions > 256) {
        fprintf(stderr, "paystream-devbroker: --partitions must be from 1 to 256\n");
        return 2;
    }
    ps_log_init("devbroker", PS_LOG_INFO);
    signal(SIGINT, stop);
    signal(SIGTERM, stop);

    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* This handle only hosts the cluster; it never connects anywhere. */
    rd_kafka_conf_set(conf, "log_level", "4", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL) {
        ps_log_error("cannot create the mock cluster's handle", "detail", err, NULL);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    if (mc == NULL || create_topics(mc, partitions) < 0) {
        ps_log_error("cannot start the mock cluster", NULL);
        rd_kafka_destroy(rk);
        return 1;
    }
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    printf("%s\n", bootstraps);
    fflush(stdout);
    if (bootstrap_file && write_bootstrap(bootstrap_file, bootstraps) < 0) {
        ps_log_error("cannot write the bootstrap file", "path", bootstrap_file, NULL);
        run = 0;
    }
    char parts[16];
    snprintf(parts, sizeof(parts), "%d", partitions);
    ps_log_info("devbroker ready", "bootstrap", bootstraps, "partitions", parts, NULL);
    while (run)
        ps_sleep_ms(200);
    ps_log_info("devbroker stopping", NULL);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
