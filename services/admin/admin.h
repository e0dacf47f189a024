/* Internal interfaces of paystream-admin. */
#ifndef PAYSTREAM_ADMIN_H
#define PAYSTREAM_ADMIN_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* sql.c: runs sql with params on PAYSTREAM_PG_DSN; prints each row
 * tab-separated when print is set. Returns the number of rows, or -1
 * (reported on stderr). */
int admin_sql(const char *sql, int nparams, const char *const *params, int print);

/* kafka_admin.c: each takes the arguments after its subcommand and returns
 * the process exit code. */
int cmd_topics_create(int argc, char **argv);
int cmd_topics_config(int argc, char **argv);
int cmd_kafka_wait(int argc, char **argv);
int cmd_kafka_watermarks(int argc, char **argv);

/* dump.c */
int cmd_topics_dump(int argc, char **argv);

/* apikeys.c */
int cmd_apikey_create(int argc, char **argv);
int cmd_apikey_revoke(int argc, char **argv);
int cmd_apikey_list(int argc, char **argv);

/* accounts.c */
int cmd_accounts_link(int argc, char **argv);
int cmd_accounts_unlink(int argc, char **argv);
int cmd_accounts_links(int argc, char **argv);

/* dlq.c */
int cmd_dlq_list(int argc, char **argv);
int cmd_dlq_show(int argc, char **argv);
int cmd_dlq_redrive(int argc, char **argv);

/* range.c: reading ranges of topics. A consumer of group that reads
 * what it is assigned and commits nothing, or NULL with err. */
rd_kafka_t *admin_range_reader(const char *brokers, const char *group, char *err, size_t errlen);
/* The partitions of topic, or -1 with err (no such topic, say). */
int admin_partitions(rd_kafka_t *rk, const char *topic, char *err, size_t errlen);

/* reconcile.c */
int cmd_reconcile(int argc, char **argv);

/* replay.c */
int cmd_replay(int argc, char **argv);

/* shop.c */
int cmd_products_put(int argc, char **argv);
int cmd_products_list(int argc, char **argv);
int cmd_subscribers_add(int argc, char **argv);
int cmd_subscribers_list(int argc, char **argv);
int cmd_subscribers_remove(int argc, char **argv);

#endif
