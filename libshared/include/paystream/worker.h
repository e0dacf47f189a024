/* What every consumer binary shares: a consumer-group member, a dead-letter
 * producer and a PostgreSQL connection; the loop that polls a batch,
 * applies it in PostgreSQL and only then commits its offsets; applying a
 * batch in one transaction and, when one message spoils it, message by
 * message with a dead letter for the one that still fails. */
#ifndef PAYSTREAM_WORKER_H
#define PAYSTREAM_WORKER_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>

#include "paystream/config.h"
#include "paystream/envelope.h"
#include "paystream/pg.h"

/* The statement ps_dead_letter needs; include it in a worker's table. */
#define PS_WORKER_STATEMENTS                                                                \
    {"insert_dead_letter",                                                                  \
     "INSERT INTO dead_letters (topic, \"partition\", \"offset\", message_id, reason, "     \
     "payload, msg_key, headers) VALUES ($1, $2, $3, $4, $5, $6::bytea, $7::bytea, "        \
     "$8::jsonb) ON CONFLICT DO NOTHING",                                                   \
     8}

/* A worker's fetch wait, in its configuration table with the default that
 * suits it: short where a caller waits for the result (API commands), longer
 * elsewhere, since every wait that ends empty is a request the broker
 * serves for nothing. ps_worker_open reads it. */
#define PS_CFG_FETCH_WAIT(dflt)                                                             \
    {"PAYSTREAM_FETCH_WAIT_MS", PS_CFG_INT, dflt, 1, 1000,                                 \
     "longest a Kafka fetch waits for a batch's worth of messages: the delay a message "   \
     "may take on a quiet topic"}

/* Where a worker serves its metrics (deploy/dashboards/README.md lists
 * them): in every worker's configuration table; ps_worker_open reads it. */
#define PS_CFG_METRICS                                                                      \
    {"PAYSTREAM_METRICS_PORT", PS_CFG_INT, "0", 0, 65535,                                  \
     "serve GET /metrics (Prometheus text) on this TCP port; 0: not served"},              \
    {"PAYSTREAM_METRICS_ADDR", PS_CFG_STRING, "127.0.0.1", 0, 0,                            \
     "IPv4 or IPv6 address of the metrics listener (0.0.0.0 or :: for every interface)"}

/* Counters of what a worker did, logged periodically. */
typedef struct {
    uint64_t applied, duplicate, stale, recorded, refused, dead_lettered, batches;
} ps_apply_stats_t;

/* One consumed message turned into its element of a batch. */
typedef struct {
    rd_kafka_message_t *msg;
    ps_envelope_t env;
    char *json;            /* one element of the array its batch statement takes */
    char reason[256];      /* why it cannot be applied, when bad is set */
    int bad;
    int alone;             /* applied alone, in its place in the log (see ps_apply_alone_fn) */
    /* The message's payload goes to the batch statement apart from json, as
     * its second parameter: a text[] whose element ord is the payload of
     * message ord. Set for every message of a batch or for none. */
    int payload_apart;
    void *ctx;             /* the worker's own, for alone; malloc'd, freed with the message */
} ps_batch_msg_t;

/* Marks m as not applicable for reason "what: detail". */
void ps_batch_msg_bad(ps_batch_msg_t *m, const char *what, const char *detail);

/* Reads m->env from the message's headers; returns 0, or -1 with m marked
 * bad. */
int ps_batch_msg_envelope(ps_batch_msg_t *m);

/* Frees m->json and m->ctx and clears m. */
void ps_batch_msg_release(ps_batch_msg_t *m);

/* Applies a message that has alone set, alone and in its place in the log
 * (around a call outside the database, say). Returns 0 when it was applied,
 * refused or dead-lettered, -1 on shutdown. */
typedef int (*ps_apply_alone_fn)(ps_pg_t *pg, rd_kafka_t *dlq, ps_batch_msg_t *m,
                                 ps_apply_stats_t *stats, volatile sig_atomic_t *run);

/* Applies ms (n of them, none bad) with stmt, a statement that takes the
 * JSON array of their elements and returns rows of (ord, id, outcome), ord
 * counting from 1 and outcome one of applied, duplicate, stale, refused or
 * anything else (counted as recorded), and optionally a fourth column, a
 * log line to write for that message: a JSON object with level, msg and
 * fields (the message id is added). The runs between messages that have
 * alone set go in one transaction each, and those messages go to alone
 * (NULL for a worker whose messages never have it set).
 * A run that fails for a reason of its messages is applied message by
 * message, with bounded retries and then a dead letter; failures of the
 * database itself are waited out. Returns 0 when every message was applied
 * or dead-lettered, -1 when shutdown interrupted it. */
int ps_apply_group(ps_pg_t *pg, rd_kafka_t *dlq, const char *stmt, ps_batch_msg_t **ms, size_t n,
                   ps_apply_alone_fn alone, ps_apply_stats_t *stats, volatile sig_atomic_t *run);

/* Turns one message into its element (m->json), or marks it bad. */
typedef void (*ps_prepare_fn)(ps_batch_msg_t *m);

/* A poll batch of a worker whose messages are all alike, for a worker's
 * prepare hook (ps_worker_t): each message prepared, no database and no
 * Kafka. Free it with ps_alike_release. */
void *ps_alike_prepare(rd_kafka_message_t **msgs, size_t n, ps_prepare_fn prepare);
void ps_alike_release(void *prepared);

/* Applies a batch made by ps_alike_prepare: the bad messages are
 * dead-lettered and the others applied with stmt (see ps_apply_group).
 * Returns 0, or -1 when shutdown interrupted it. */
int ps_alike_apply(ps_pg_t *pg, rd_kafka_t *dlq, void *prepared, const char *stmt,
                   ps_apply_stats_t *stats, volatile sig_atomic_t *run);

/* Runs call in one transaction, waiting out failures of the database.
 * Returns 0 with the result in *res (PQclear it), 1 when the call fails for
 * a reason of its own (err filled), -1 on shutdown. */
int ps_db_run(ps_pg_t *pg, const ps_pg_call_t *call, PGresult **res, ps_pg_err_t *err,
              volatile sig_atomic_t *run);

/* Publishes msg to its topic's .dlq twin with the reason and records it in
 * dead_letters. Retries until both succeed or *run drops. Returns 0, or -1
 * when interrupted. */
int ps_dead_letter(ps_pg_t *pg, rd_kafka_t *dlq, const rd_kafka_message_t *msg,
                   const char *message_id, const char *reason, volatile sig_atomic_t *run);

struct ps_pipeline;

/* A worker's connections. */
typedef struct {
    ps_pg_t *pg;
    rd_kafka_t *consumer;  /* member of the worker's group */
    rd_kafka_t *dlq;       /* producer of dead letters */
    /* Optional housekeeping that ps_worker_consume runs on pg between
     * batches, every tick_ms. */
    void (*tick)(ps_pg_t *pg);
    int64_t tick_ms;
    /* Optional: what ps_worker_consume's polling thread makes of a batch
     * (parsed messages, a statement's parameters) while the batch before it
     * is applied; apply then takes it, release frees it. prepare touches
     * neither the database nor Kafka: it runs beside apply. */
    void *(*prepare)(rd_kafka_message_t **msgs, size_t n);
    void (*release)(void *prepared);
    struct ps_pipeline *pipe;  /* ps_worker_consume's own */
} ps_worker_t;

/* Connects to PostgreSQL (PAYSTREAM_PG_DSN, preparing stmts) and Kafka
 * (PAYSTREAM_KAFKA_BROKERS, group, topics NULL-terminated) under name, and
 * serves the metrics (PS_CFG_METRICS). Returns 0, or -1 after logging
 * why. */
int ps_worker_open(ps_worker_t *w, const char *name, const char *group,
                   const char *const *topics, const ps_pg_stmt_t *stmts, size_t nstmts);

/* Leaves the group, flushes the dead letters, closes everything. */
void ps_worker_close(ps_worker_t *w);

/* Applies one poll batch (prepared: what the worker's prepare made of it,
 * NULL without one); returns 0 when the offsets may be committed. */
typedef int (*ps_apply_batch_fn)(ps_pg_t *pg, rd_kafka_t *dlq, rd_kafka_message_t **msgs,
                                 size_t n, void *prepared, ps_apply_stats_t *stats,
                                 volatile sig_atomic_t *run);

/* The loop: polls up to batch_max messages, applies them, commits their
 * offsets, logs progress every few seconds, until *run drops (returns 0) or
 * the consumer must stop (returns 3). A thread of its own polls (and
 * prepares) the next batch while this one applies the last, one batch
 * ahead at most; batches are applied one at a time, in the order polled.
 * Before the group takes the partitions away, the batch polled ahead is
 * dropped (never applied: the partitions' next owner gets it) and the one
 * being applied finishes. */
int ps_worker_consume(ps_worker_t *w, size_t batch_max, ps_apply_batch_fn apply,
                      volatile sig_atomic_t *run);

/* What a worker's main does first: answers --help (usage from summary and
 * config), loads the configuration and starts logging under service,
 * applies the migrations for --migrate, and makes SIGINT and SIGTERM clear
 * *run. Returns -1 when the worker is to go on, else its exit code. */
int ps_worker_start(int argc, char **argv, const char *service, const char *summary,
                    const ps_cfg_var_t *config, size_t nconfig, volatile sig_atomic_t *run);

#endif
