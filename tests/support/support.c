#include "support.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <strings.h>

#include "paystream/envelope.h"
#include "paystream/jwt.h"
#include "paystream/kafka.h"
#include "paystream/stripe_sig.h"
#include "paystream/util.h"

const char *ts_env(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s is not set: run the integration tests with scripts/dev test", name);
    return v;
}

/* Appends n bytes to the NUL-terminated *buf; returns n, or 0 when out of memory. */
static size_t append(char **buf, const char *data, size_t n)
{
    size_t have = *buf ? strlen(*buf) : 0;
    char *grown = realloc(*buf, have + n + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + have, data, n);
    grown[have + n] = '\0';
    *buf = grown;
    return n;
}

static size_t collect(char *data, size_t size, size_t n, void *userp)
{
    return append(&((ts_http_t *)userp)->body, data, size * n);
}

static size_t collect_header(char *data, size_t size, size_t n, void *userp)
{
    return append(&((ts_http_t *)userp)->headers, data, size * n);
}

/* Sends method base+path from the local address source (NULL: any). */
/* With PAYSTREAM_HTTP_RECORD set (scripts/dev test sets it), appends the
 * exchange to that file as one JSON line, for the contract check
 * (tests/contracts): request method, path, content type and body;
 * response status, content type and body. */
static void record(const char *method, const char *path, const char *const *headers,
                   const char *body, size_t len, const ts_http_t *r)
{
    const char *file = getenv("PAYSTREAM_HTTP_RECORD");
    if (file == NULL || *file == '\0' || r->status == 0)
        return;
    const char *type = NULL;
    for (size_t i = 0; headers && headers[i]; i++) {
        if (strncasecmp(headers[i], "Content-Type: ", 14) == 0)
            type = headers[i] + 14;
    }
    char *rtype = ts_header(r, "Content-Type");
    json_t *sent = body ? json_stringn(body, len) : NULL, *got = json_string(r->body);
    json_t *line = json_pack("{s:s, s:s, s:s?, s:o, s:i, s:s?, s:o}", "method", method, "path",
                             path, "content_type", type, "body", sent ? sent : json_null(),
                             "status", (int)r->status, "response_content_type", rtype,
                             "response", got ? got : json_null());
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    free(rtype);
    if (text == NULL)
        return;
    size_t n = strlen(text);
    text[n] = '\n'; /* over the NUL: one write() of the whole line, so threads' lines never mix */
    int fd = open(file, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0) {
        if (write(fd, text, n + 1) < 0)
            fprintf(stderr, "cannot record an exchange in %s\n", file);
        close(fd);
    }
    free(text);
}

static ts_http_t http_at(const char *base, const char *source, const char *method,
                         const char *path, const char *const *headers, const char *body,
                         size_t len)
{
    ts_http_t r = {0, NULL, NULL};
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", base, path);
    CURL *c = curl_easy_init();
    if (source)
        curl_easy_setopt(c, CURLOPT_INTERFACE, source);
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; headers && headers[i]; i++)
        h = curl_slist_append(h, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r.body == NULL)
        r.body = strdup("");
    if (r.headers == NULL)
        r.headers = strdup("");
    record(method, path, headers, body, len, &r);
    return r;
}

ts_http_t ts_http(const char *method, const char *path, const char *const *headers,
                  const char *body, size_t len)
{
    return http_at(ts_env("PAYSTREAM_INTAKE_URL"), NULL, method, path, headers, body, len);
}

ts_http_t ts_http_from(const char *source, const char *method, const char *path,
                       const char *const *headers, const char *body, size_t len)
{
    return http_at(ts_env("PAYSTREAM_INTAKE_URL"), source, method, path, headers, body, len);
}

ts_http_t ts_http_admin(const char *path)
{
    return http_at(ts_env("PAYSTREAM_ADMIN_URL"), NULL, "GET", path, NULL, NULL, 0);
}

void ts_http_free(ts_http_t *r)
{
    free(r->body);
    free(r->headers);
    r->body = r->headers = NULL;
}

char *ts_header(const ts_http_t *r, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > n && line[n] == ':' && strncasecmp(line, name, n) == 0) {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            return strndup(v, (size_t)(line + len - v));
        }
        line = end ? end + 2 : NULL;
    }
    return NULL;
}

void ts_bearer(char *out, size_t len, const char *user, int admin)
{
    char payload[512], token[PS_JWT_MAX];
    snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",\"exp\":%lld%s}", user,
             (long long)time(NULL) + 3600, admin ? ",\"scope\":\"read write admin\"" : "");
    cr_assert_eq(ps_jwt_sign(payload, ts_env("PAYSTREAM_JWT_SECRET"), token, sizeof(token)), 0);
    snprintf(out, len, "Authorization: Bearer %s", token);
}

ts_http_t ts_api(const char *method, const char *path, const char *user,
                 const char *const *extra, const char *body)
{
    char auth[PS_JWT_MAX + 64];
    const char *headers[8] = {"Content-Type: application/json"};
    size_t n = 1;
    if (user) {
        ts_bearer(auth, sizeof(auth), user, 0);
        headers[n++] = auth;
    }
    for (size_t i = 0; extra && extra[i] && n < 7; i++)
        headers[n++] = extra[i];
    return ts_http(method, path, headers, body, body ? strlen(body) : 0);
}

char *ts_json(const char *text, const char *key)
{
    json_t *root = json_loads(text, 0, NULL), *v = root;
    char path[256], *save = NULL;
    snprintf(path, sizeof(path), "%s", key);
    for (char *part = strtok_r(path, ".", &save); part && v; part = strtok_r(NULL, ".", &save))
        v = json_object_get(v, part);
    char *out = NULL;
    if (json_is_string(v))
        out = strdup(json_string_value(v));
    else if (json_is_integer(v) && asprintf(&out, "%lld", (long long)json_integer_value(v)) < 0)
        out = NULL;
    else if (json_is_boolean(v))
        out = strdup(json_is_true(v) ? "true" : "false");
    json_decref(root);
    return out;
}

void ts_expect(ts_http_t r, long status, const char *code)
{
    cr_assert_eq(r.status, status, "%s", r.body);
    if (code) {
        char *got = ts_json(r.body, "error.code");
        cr_assert_not_null(got, "%s", r.body);
        cr_assert_str_eq(got, code, "%s", r.body);
        free(got);
    }
    ts_http_free(&r);
}

ts_http_t ts_post_signed(const char *path, const char *body, const char *secret, int64_t t)
{
    char sig[PS_SIG_HEADER_MAX], header[PS_SIG_HEADER_MAX + 32];
    ps_sig_sign(secret, body, strlen(body), t ? t : (int64_t)time(NULL), sig, sizeof(sig));
    snprintf(header, sizeof(header), "Stripe-Signature: %s", sig);
    const char *headers[] = {header, "Content-Type: application/json", NULL};
    return ts_http("POST", path, headers, body, strlen(body));
}

char *ts_event(const char *evt_id, const char *type, int64_t created, const char *object_json)
{
    char *out = NULL;
    if (asprintf(&out,
                 "{\"id\":\"%s\",\"object\":\"event\",\"type\":\"%s\",\"created\":%lld,"
                 "\"livemode\":false,\"data\":{\"object\":%s}}",
                 evt_id, type, (long long)created, object_json) < 0)
        cr_assert_fail("out of memory");
    return out;
}

char *ts_succeeded_event(const char *evt_id, const char *pi, long amount)
{
    char obj[320];
    snprintf(obj, sizeof(obj),
             "{\"id\":\"%s\",\"object\":\"payment_intent\",\"amount\":%ld,\"currency\":\"eur\","
             "\"status\":\"succeeded\",\"amount_received\":%ld,\"latest_charge\":\"ch_%s\"}",
             pi, amount, amount, pi + 3);
    return ts_event(evt_id, "payment_intent.succeeded", time(NULL), obj);
}

void ts_unique(char *buf, size_t len, const char *prefix)
{
    unsigned char r[8];
    char hex[17];
    cr_assert_eq(getrandom(r, sizeof(r), 0), (ssize_t)sizeof(r));
    ps_hex_encode(r, sizeof(r), hex);
    snprintf(buf, len, "%s%s", prefix, hex);
}

static PGconn *pg_conn(void)
{
    static PGconn *conn;
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        if (conn)
            PQfinish(conn);
        conn = PQconnectdb(ts_env("PAYSTREAM_PG_DSN"));
        cr_assert_eq(PQstatus(conn), CONNECTION_OK, "postgresql: %s", PQerrorMessage(conn));
    }
    return conn;
}

/* The first column of the first row of sql with params on conn. */
static char *sql_on(PGconn *conn, const char *sql, const char *const *params, int n)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql,
                 PQresultErrorMessage(res));
    char *v = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) ? strdup(PQgetvalue(res, 0, 0))
                                                              : NULL;
    PQclear(res);
    return v;
}

static char *sql_va(const char *sql, va_list ap)
{
    const char *params[16];
    int n = 0;
    for (const char *p = va_arg(ap, const char *); p && n < 16; p = va_arg(ap, const char *))
        params[n++] = p;
    return sql_on(pg_conn(), sql, params, n);
}

char *ts_sql(const char *sql, ...)
{
    va_list ap;
    va_start(ap, sql);
    char *v = sql_va(sql, ap);
    va_end(ap);
    return v;
}

char *ts_sql_at(const char *dsn, const char *sql)
{
    PGconn *conn = PQconnectdb(dsn);
    cr_assert_eq(PQstatus(conn), CONNECTION_OK, "postgresql: %s", PQerrorMessage(conn));
    char *v = sql_on(conn, sql, NULL, 0);
    PQfinish(conn);
    return v;
}

void ts_sql_exec(const char *sql)
{
    PGresult *res = PQexec(pg_conn(), sql);
    cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
}

int ts_wait_sql(const char *expect, const char *sql, ...)
{
    int64_t deadline = ps_mono_ms() + TS_WAIT_MS;
    for (;;) {
        va_list ap;
        va_start(ap, sql);
        char *v = sql_va(sql, ap);
        va_end(ap);
        int match = v && strcmp(v, expect) == 0;
        free(v);
        if (match)
            return 1;
        if (ps_mono_ms() > deadline)
            return 0;
        usleep(50 * 1000);
    }
}

int ts_svc(const char *action, const char *name)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s' svc %s %s", ts_env("PAYSTREAM_DEV"), action, name);
    return system(cmd);
}

char *ts_sh(int *status, const char *fmt, ...)
{
    char *cmd = NULL, *out = NULL;
    size_t len = 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    FILE *mem = open_memstream(&out, &len);
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof(buf), p)) > 0)
        fwrite(buf, 1, got, mem);
    fclose(mem);
    int st = pclose(p);
    if (status)
        *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    free(cmd);
    return out;
}

void ts_produce(const char *topic, const char *key, const char *type, const char *value)
{
    char err[256];
    rd_kafka_t *rk = ps_kafka_producer_new(ts_env("PAYSTREAM_KAFKA_BROKERS"), "paystream-tests",
                                           ps_kafka_dr_sync, 30000, 0, err, sizeof(err));
    cr_assert_not_null(rk, "producer: %s", err);
    ps_envelope_t env;
    ps_envelope_init(&env, "upstream", type);
    int rc = ps_kafka_produce_sync(rk, topic, key, strlen(key), value, strlen(value),
                                   ps_envelope_to_headers(&env), 30000, err, sizeof(err));
    rd_kafka_flush(rk, 5000);
    rd_kafka_destroy(rk);
    cr_assert_eq(rc, 0, "publishing to %s: %s", topic, err);
}

/* The header name of msg as a string, malloc'd, or NULL. */
static char *header_of(const rd_kafka_message_t *msg, const char *name)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v;
    size_t len;
    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    return strndup(v, len);
}

static int topic_partitions(rd_kafka_t *rk, const char *topic)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int n = 0;
    if (rd_kafka_metadata(rk, 0, t, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1)
        n = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return n;
}

int ts_kafka_count(const char *topic, const char *key, const char *type, char **last_value)
{
    char err[256], group[64];
    ts_unique(group, sizeof(group), "paystream-tests-");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *settings[][2] = {{"bootstrap.servers", ts_env("PAYSTREAM_KAFKA_BROKERS")},
                                 {"group.id", group}, {"enable.auto.commit", "false"},
                                 {"enable.partition.eof", "true"},
                                 {"auto.offset.reset", "earliest"}};
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        cr_assert_eq(rd_kafka_conf_set(conf, settings[i][0], settings[i][1], err, sizeof(err)),
                     RD_KAFKA_CONF_OK, "%s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    cr_assert_not_null(rk, "consumer: %s", err);
    rd_kafka_poll_set_consumer(rk);
    int partitions = topic_partitions(rk, topic);
    cr_assert_gt(partitions, 0, "topic %s has partitions", topic);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    char *at_end = calloc((size_t)partitions, 1);
    int ended = 0, count = 0;
    int64_t deadline = ps_mono_ms() + TS_WAIT_MS;
    while (ended < partitions && ps_mono_ms() < deadline) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 500);
        if (msg == NULL)
            continue;
        if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (msg->partition < partitions && !at_end[msg->partition]++)
                ended++;
        } else if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR && msg->key_len == strlen(key) &&
                   memcmp(msg->key, key, msg->key_len) == 0) {
            char *t = header_of(msg, "type");
            if (t && strcmp(t, type) == 0) {
                count++;
                if (last_value) {
                    free(*last_value);
                    *last_value = strndup(msg->payload, msg->len);
                }
            }
            free(t);
        }
        rd_kafka_message_destroy(msg);
    }
    cr_assert_eq(ended, partitions, "read %s to its end", topic);
    free(at_end);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return count;
}

char *ts_api_key(const char *user, const char *flags)
{
    int status;
    char *key = ts_sh(&status, "%s/services/admin/paystream-admin apikey create --user %s %s",
                      ts_env("PAYSTREAM_BUILD_DIR"), user, flags);
    cr_assert_eq(status, 0, "apikey create failed");
    key[strcspn(key, "\n")] = '\0';
    return key;
}

char *ts_call(const char *user, const char *method, const char *path, const char *body,
              long status, const char *key)
{
    static const char *const wait[] = {"Prefer: wait=30", NULL};
    ts_http_t r = ts_api(method, path, user, wait, body);
    cr_assert_eq(r.status, status, "%s %s: expected %ld, got %ld: %s", method, path, status,
                 r.status, r.body);
    char *v = key ? ts_json(r.body, key) : NULL;
    cr_assert(key == NULL || v, "%s missing in %s", key, r.body);
    ts_http_free(&r);
    return v;
}
