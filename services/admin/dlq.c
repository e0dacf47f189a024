/* Dead letters: dlq list, dlq show ID and dlq redrive ID... A redrive
 * sends the message back to the topic it was consumed from, with its key
 * and headers as they were (its message id too), so the worker applies it
 * once whatever happened before: its dedupe knows the message if it was
 * ever applied. Each row is redriven once unless --again says otherwise. */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "paystream/config.h"
#include "paystream/kafka.h"
#include "paystream/pg.h"
#include "paystream/util.h"

#define PRODUCE_TIMEOUT_MS 30000

int cmd_dlq_list(int argc, char **argv)
{
    int all = argc == 1 && strcmp(argv[0], "--all") == 0;
    if (argc > 1 || (argc == 1 && !all)) {
        fprintf(stderr, "paystream-admin: dlq list [--all]\n");
        return 2;
    }
    const char *params[] = {all ? "true" : "false"};
    return admin_sql("SELECT id, topic, \"partition\", \"offset\", coalesce(message_id, '-'), "
                     "left(reason, 100), created_at, coalesce(redriven_at::text, '-') "
                     "FROM dead_letters WHERE $1::boolean OR redriven_at IS NULL ORDER BY id",
                     1, params, 1) < 0 ? 1 : 0;
}

int cmd_dlq_show(int argc, char **argv)
{
    if (argc != 1 || argv[0][strspn(argv[0], "0123456789")] != '\0') {
        fprintf(stderr, "paystream-admin: dlq show ID\n");
        return 2;
    }
    const char *params[] = {argv[0]};
    int rows = admin_sql(
        "SELECT jsonb_pretty(jsonb_build_object('id', id, 'topic', topic, 'partition', "
        "\"partition\", 'offset', \"offset\", 'message_id', message_id, 'reason', reason, "
        "'created_at', created_at, 'redriven_at', redriven_at, 'headers', headers, "
        "'key', t.key, 'payload', t.payload) || "
        "CASE WHEN t.payload IS NULL AND d.payload IS NOT NULL "
        "THEN jsonb_build_object('payload_base64', encode(d.payload, 'base64')) ELSE '{}' END || "
        "CASE WHEN t.key IS NULL AND d.msg_key IS NOT NULL "
        "THEN jsonb_build_object('key_base64', encode(d.msg_key, 'base64')) ELSE '{}' END) "
        "FROM dead_letters d, LATERAL (SELECT ps_bytes_as_text(d.msg_key) AS key, "
        "ps_bytes_as_text(d.payload) AS payload) t WHERE d.id = $1::bigint",
        1, params, 1);
    if (rows == 0)
        fprintf(stderr, "paystream-admin: no dead letter %s\n", argv[0]);
    return rows == 1 ? 0 : 1;
}

/* The headers of a row as librdkafka's; NULL when the row kept none. */
static rd_kafka_headers_t *row_headers(const char *json)
{
    json_t *list = json_loads(json, 0, NULL), *h;
    if (!json_is_array(list)) {
        json_decref(list);
        return NULL;
    }
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(json_array_size(list));
    size_t i;
    json_array_foreach(list, i, h) {
        const char *name = json_string_value(json_object_get(h, "name"));
        const char *value = json_string_value(json_object_get(h, "value"));
        if (name)
            rd_kafka_header_add(hdrs, name, -1, value, value ? -1 : 0);
    }
    json_decref(list);
    return hdrs;
}

/* Sends dead letter id back to its topic. Returns 0, or 1 after saying why
 * on stderr. */
static int redrive(ps_pg_t *pg, rd_kafka_t *producer, const char *id, int again)
{
    const char *params[] = {id};
    ps_pg_err_t err;
    PGresult *res = ps_pg_query(pg,
                                "SELECT topic, encode(msg_key, 'hex'), headers::text, "
                                "encode(payload, 'hex'), redriven_at IS NOT NULL "
                                "FROM dead_letters WHERE id = $1::bigint",
                                1, params, &err);
    int rc = 1;
    if (res == NULL) {
        fprintf(stderr, "paystream-admin: %s\n", err.message);
    } else if (PQntuples(res) == 0) {
        fprintf(stderr, "paystream-admin: no dead letter %s\n", id);
    } else if (PQgetisnull(res, 0, 2)) {
        fprintf(stderr, "paystream-admin: dead letter %s kept no headers (it is older than "
                        "redrive); send it again from %s.dlq\n", id, PQgetvalue(res, 0, 0));
    } else if (!again && strcmp(PQgetvalue(res, 0, 4), "t") == 0) {
        fprintf(stderr, "paystream-admin: dead letter %s was redriven already; --again sends "
                        "it once more\n", id);
    } else {
        size_t keylen = strlen(PQgetvalue(res, 0, 1)) / 2, len = strlen(PQgetvalue(res, 0, 3)) / 2;
        unsigned char *key = ps_xmalloc(keylen + 1), *value = ps_xmalloc(len + 1);
        ps_hex_decode(PQgetvalue(res, 0, 1), 2 * keylen, key, keylen);
        ps_hex_decode(PQgetvalue(res, 0, 3), 2 * len, value, len);
        char why[512];
        if (ps_kafka_produce_sync(producer, PQgetvalue(res, 0, 0),
                                  PQgetisnull(res, 0, 1) ? NULL : key, keylen, value, len,
                                  row_headers(PQgetvalue(res, 0, 2)), PRODUCE_TIMEOUT_MS, why,
                                  sizeof(why)) < 0) {
            fprintf(stderr, "paystream-admin: dead letter %s not sent: %s\n", id, why);
        } else {
            PGresult *done = ps_pg_query(pg, "UPDATE dead_letters SET redriven_at = now() "
                                             "WHERE id = $1::bigint",
                                         1, params, &err);
            printf("%s\tredriven to %s\n", id, PQgetvalue(res, 0, 0));
            if (done == NULL)
                fprintf(stderr, "paystream-admin: dead letter %s sent, but not marked: %s\n", id,
                        err.message);
            rc = done ? 0 : 1;
            PQclear(done);
        }
        free(key);
        free(value);
    }
    PQclear(res);
    return rc;
}

int cmd_dlq_redrive(int argc, char **argv)
{
    int again = 0, ids = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--again") == 0)
            again = 1;
        else if (argv[i][0] != '\0' && argv[i][strspn(argv[i], "0123456789")] == '\0')
            ids++;
        else
            ids = -1000;
    }
    if (ids <= 0) {
        fprintf(stderr, "paystream-admin: dlq redrive ID... [--again]\n");
        return 2;
    }
    char err[512];
    ps_pg_t *pg = ps_pg_connect(ps_config_str("PAYSTREAM_PG_DSN"), NULL, 0, err, sizeof(err));
    rd_kafka_t *producer = pg ? ps_kafka_producer_new(ps_config_str("PAYSTREAM_KAFKA_BROKERS"),
                                                      "paystream-admin-redrive", ps_kafka_dr_sync,
                                                      PRODUCE_TIMEOUT_MS, 0, err, sizeof(err))
                              : NULL;
    if (producer == NULL) {
        fprintf(stderr, "paystream-admin: %s\n", err);
        ps_pg_close(pg);
        return 1;
    }
    int failed = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--again") != 0)
            failed |= redrive(pg, producer, argv[i], again);
    }
    rd_kafka_flush(producer, PRODUCE_TIMEOUT_MS);
    rd_kafka_destroy(producer);
    ps_pg_close(pg);
    return failed;
}
