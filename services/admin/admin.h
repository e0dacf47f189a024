/* Internal interfaces of paystream-admin. */
#ifndef PAYSTREAM_ADMIN_H
#define PAYSTREAM_ADMIN_H

/* kafka_admin.c: each takes the arguments after its subcommand and returns
 * the process exit code. */
int cmd_topics_create(int argc, char **argv);
int cmd_topics_config(int argc, char **argv);
int cmd_kafka_wait(int argc, char **argv);
int cmd_kafka_watermarks(int argc, char **argv);

/* apikeys.c */
int cmd_apikey_create(int argc, char **argv);
int cmd_apikey_revoke(int argc, char **argv);
int cmd_apikey_list(int argc, char **argv);

#endif
