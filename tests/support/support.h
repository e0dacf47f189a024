/* Helpers of the integration tests: they act through the public interfaces
 * (HTTP, Kafka via the intake, scripts/dev) and observe PostgreSQL. The
 * system under test is started by scripts/dev test; its settings come from
 * the environment it exports (run-test/env). */
#ifndef PAYSTREAM_TEST_SUPPORT_H
#define PAYSTREAM_TEST_SUPPORT_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* Generous: a wait ends as soon as its condition holds, so a slow machine
 * only makes a test slower, never red. */
#define TS_WAIT_MS 120000

/* SQL: the payloads of a batch of Stripe events (the "payload" member of
 * each element of the jsonb array batch, in order), as the payments worker
 * passes them to ps_apply_stripe_events and ps_apply_stripe_batch. */
#define TS_STRIPE_PAYLOADS(batch) \
    "ARRAY(SELECT e->>'payload' FROM jsonb_array_elements(" batch ") WITH ORDINALITY x(e, n) " \
    "ORDER BY n)"

/* SQL: whether a dead letter's bytes hold the text of parameter param. A
 * dead letter keeps the message as it came, which may not be UTF-8, so its
 * payload is searched as bytes, never decoded. */
#define TS_LETTER_HOLDS(param) "position(convert_to(" param ", 'UTF8') IN payload) > 0"

typedef struct {
    long status;   /* 0 when the request could not be made */
    char *body;    /* malloc'd, NUL-terminated */
    char *headers; /* the response's header lines, malloc'd */
} ts_http_t;

/* A required environment variable (the test aborts when it is missing). */
const char *ts_env(const char *name);

/* Sends method path (relative to PAYSTREAM_INTAKE_URL) with extra headers
 * (NULL-terminated "Name: value" strings, or NULL) and body (or NULL). */
ts_http_t ts_http(const char *method, const char *path, const char *const *headers,
                  const char *body, size_t len);
void ts_http_free(ts_http_t *r);

/* The same from local address source ("127.0.0.9": a client of its own, as
 * the intake counts clients by address). */
ts_http_t ts_http_from(const char *source, const char *method, const char *path,
                       const char *const *headers, const char *body, size_t len);

/* GET path of the intake's operators' listener (PAYSTREAM_ADMIN_URL). */
ts_http_t ts_http_admin(const char *path);

/* The value of response header name (case-insensitive), malloc'd, or NULL. */
char *ts_header(const ts_http_t *r, const char *name);

/* Writes "Authorization: Bearer <JWT>" for user into out: HS256 with
 * PAYSTREAM_JWT_SECRET, valid for an hour, scope "admin" when admin. */
void ts_bearer(char *out, size_t len, const char *user, int admin);

/* Calls the API as user (a JWT as ts_bearer makes) with extra headers
 * (NULL-terminated, or NULL) and body (or NULL). */
ts_http_t ts_api(const char *method, const char *path, const char *user,
                 const char *const *extra, const char *body);

/* Asserts r's status and, when code is not NULL, its error code; frees r. */
void ts_expect(ts_http_t r, long status, const char *code);

/* Calls the API as user with Prefer: wait=30, asserts the answer's status,
 * and returns the body's value at key (malloc'd; NULL for a NULL key). */
char *ts_call(const char *user, const char *method, const char *path, const char *body,
              long status, const char *key);
/* Issues an API key for user with paystream-admin apikey create and flags
 * ("--sandbox", "--admin", "" ...); returns the key, malloc'd. */
char *ts_api_key(const char *user, const char *flags);

/* The string at key of the JSON object in text, malloc'd, or NULL. Nested
 * keys are separated by dots ("error.code"). Integers come back as text. */
char *ts_json(const char *text, const char *key);

/* Posts body to path signed with secret at time t (0: now). */
ts_http_t ts_post_signed(const char *path, const char *body, const char *secret, int64_t t);

/* Builds a Stripe event {"id","object":"event","type","created","data":{"object":...}}
 * around object_json. Returns a malloc'd string. */
char *ts_event(const char *evt_id, const char *type, int64_t created, const char *object_json);
/* A payment_intent.succeeded event, created now, of intent pi (pi_...) for
 * amount minor units of EUR, fully received, with charge ch_<pi's rest>. */
char *ts_succeeded_event(const char *evt_id, const char *pi, long amount);

/* Writes prefix + a random suffix unique to this run into buf. */
void ts_unique(char *buf, size_t len, const char *prefix);

/* Runs a query and returns the first column of the first row, malloc'd, or
 * NULL when there is no row. Parameters are text, NULL-terminated list. */
char *ts_sql(const char *sql, ...) __attribute__((sentinel));

/* The same on the database of dsn (a connection of its own), without
 * parameters. */
char *ts_sql_at(const char *dsn, const char *sql);

/* Runs a statement that returns no rows (DDL, say), asserting it succeeded. */
void ts_sql_exec(const char *sql);

/* Waits until ts_sql(sql, params...) returns expect; returns 1 when it did,
 * 0 on timeout (the last value is in *last when last is not NULL). */
int ts_wait_sql(const char *expect, const char *sql, ...) __attribute__((sentinel));

/* Publishes value to topic with key, as an upstream producer would: with an
 * envelope (fresh message id, source "upstream", type) and no actor.
 * Asserts Kafka acknowledged it. */
void ts_produce(const char *topic, const char *key, const char *type, const char *value);

/* Reads topic from its beginning to its end and counts the messages with
 * key and header type; the last one's value goes to *last_value (malloc'd;
 * free what was there) when last_value is not NULL. */
int ts_kafka_count(const char *topic, const char *key, const char *type, char **last_value);

/* Runs `scripts/dev svc ACTION NAME`; returns its exit status. */
int ts_svc(const char *action, const char *name);

/* Runs a shell command and returns its standard output, malloc'd; *status
 * (when not NULL) gets its exit status. */
char *ts_sh(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
