/* Internal interfaces of the intake's API (/api/v1): the thread pool and
 * routing (api.c), authentication (auth.c), the write rate limit
 * (ratelimit.c), commands and their results (commands.c, waiter.c) and the
 * resources (orders.c, payments.c, billing.c). */
#ifndef PAYSTREAM_INTAKE_API_H
#define PAYSTREAM_INTAKE_API_H

#include <jansson.h>
#include <stdint.h>

#include "intake.h"
#include "paystream/jwt.h"
#include "paystream/pg.h"
#include "paystream/util.h"

#define API_MAX_ARGS 8
#define API_ID_MAX 64 /* longest resource id in a path */

/* Who is calling: a user id, and what the credentials allow. */
typedef struct {
    char id[PS_JWT_SUB_MAX + 1];
    int admin;   /* may see and change everyone's data */
    int sandbox; /* payments go to the sandbox gateway */
} actor_t;

/* One API request as its handler sees it, on an API thread. Everything the
 * handler needs of the HTTP request is copied here first, so that the HTTP
 * server's own structures are only read on its own threads. */
typedef struct {
    request_t *req;
    ps_pg_t *pg; /* the API thread's connection */
    char method[8];
    char path[256];
    char id[API_ID_MAX + 1]; /* the {id} of the path, or "" */
    char *authorization, *prefer, *idempotency_key; /* NULL when absent */
    struct {
        char *name, *value;
    } args[API_MAX_ARGS]; /* the query string */
    int nargs;
    char client[48]; /* the client's address, for the limit on failed authentications */
    actor_t actor;
    int wait_ms; /* from Prefer: wait=N, 0 without */
} api_call_t;

/* api.c */
extern const ps_pg_stmt_t api_statements[]; /* prepared on each API thread */
extern const size_t api_nstatements;
int api_start(const char *dsn, int threads, char *err, size_t errlen);
void api_stop(void);
void handle_api(request_t *req);

/* Answers call with status and the JSON value (stolen). */
void api_reply(api_call_t *call, unsigned status, json_t *body);

/* Answers with {"error":{"type":"invalid_request_error","code","message","param"}}. */
void api_error(api_call_t *call, unsigned status, const char *code, const char *message,
               const char *param);

/* Same, with a printf-style message. */
void api_errorf(api_call_t *call, unsigned status, const char *code, const char *param,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Answers 500 for a database failure (logged, without the request's data). */
void api_db_error(api_call_t *call, const ps_pg_err_t *err);

/* Runs stmt with (the path's id, the actor, whether admin): a read of one
 * resource the actor may see. Returns its result, or NULL after answering
 * 404 ("no such <what>") or a database failure. */
PGresult *api_read_owned(api_call_t *call, const char *stmt, const char *what);

#define API_LIMIT_DEFAULT 20
#define API_LIMIT_MAX 100
/* The limit query parameter of a list (API_LIMIT_DEFAULT when absent) as
 * text in out; -1 after answering 400. */
int api_limit(api_call_t *call, char out[8]);

/* Answers a list: runs page statement stmt with (actor, admin, filter,
 * cursor, the limit parameter); filter and cursor may be NULL. */
void api_list_page(api_call_t *call, const char *stmt, const char *filter, const char *cursor);

/* Whether a write's handler checks the state of what it changes before
 * publishing (a pending order, a processable payment) to answer 409 at
 * once. The worker checks again when it applies the command, and only its
 * verdict counts for a write with an Idempotency-Key: a retry of a command
 * still in flight must get that command's answer, not a refusal because
 * the command itself has moved the state on. */
int api_checks_state(const api_call_t *call);


/* The value of query argument name, or NULL. */
const char *api_arg(const api_call_t *call, const char *name);

/* The API path of a command's resource, e.g. /api/v1/orders/ord_...; "" for
 * an unknown type. */
void api_resource_path(const char *command_type, const char *resource_id, char *out,
                       size_t outlen);

/* auth.c: fills call->actor from the Authorization header; returns 0, or
 * -1 after answering 401 (or 429 for a client address with too many
 * failures lately: its keys are not even looked up). */
int auth_init(char *err, size_t errlen);
int auth_authenticate(api_call_t *call);
/* auth.c: the limits on API writes per actor and on failed
 * authentications per client address (see ratelimit_new). */
void auth_limits(double writes_per_s, double writes_burst, double failures_per_s,
                 double failures_burst);
void auth_free(void);
/* auth.c: takes a write token of the caller's; returns 0, or -1 after
 * answering 429. */
int auth_take_write(api_call_t *call);

/* ratelimit.c: token buckets by key (an actor id, a client address), each
 * refilled at per_second up to burst; per_second 0 limits nothing. Free
 * with ratelimit_free. Thread-safe. */
typedef struct ratelimit ratelimit_t;
ratelimit_t *ratelimit_new(double per_second, double burst);
void ratelimit_free(ratelimit_t *rl);
/* Takes one token of key's bucket. Returns 0, or the seconds until a token
 * is free (rounded up) when the bucket is empty. */
int ratelimit_take(ratelimit_t *rl, const char *key);
/* The same without taking the token. */
int ratelimit_peek(ratelimit_t *rl, const char *key);

/* commands.c: publishes a write as a command to topic (a command topic) and
 * answers it: 202 once Kafka has it, or its result under Prefer: wait. type is
 * e.g. "order.create"; resource_id is the id of the resource it changes,
 * or NULL for a create, which gets a new id starting with resource_prefix
 * ("ord_"); aggregate is the Kafka key (NULL: the resource id); params
 * (stolen) is what the worker needs. */
void commands_submit(api_call_t *call, const char *topic, const char *type,
                     const char *aggregate, const char *resource_prefix, const char *resource_id,
                     json_t *params);

/* For a write with an Idempotency-Key, before anything else is checked:
 * answers with the first result when the key's command was applied (or 422
 * when it was made from another request, 400 for a malformed key) and
 * returns 1; returns 0 when the write is to be handled. */
int commands_replay(api_call_t *call);
void commands_get(api_call_t *call);

/* A command's row in commands, as the intake reads it. */
typedef struct {
    char id[48], actor[PS_JWT_SUB_MAX + 1], type[48], resource_id[PS_JWT_SUB_MAX + 1];
    char request_sha256[65];
    unsigned http_status;
    char *result; /* malloc'd JSON text */
} command_row_t;

/* The columns of a command as command_row_read reads them. */
#define COMMAND_COLUMNS \
    "id, actor, type, coalesce(resource_id, ''), request_sha256, http_status, result::text"

/* Reads row i of a result of COMMAND_COLUMNS into
 * row (free with command_row_free). Returns 0, or -1 when a value does not
 * fit. */
int command_row_read(PGresult *res, int i, command_row_t *row);
void command_row_free(command_row_t *row);

/* Answers req with a command found in commands: 404 when actor may not see
 * it; 422 when request_sha256 (when not NULL) is not the one the command was
 * made from; else, as_command, the command object of GET
 * /api/v1/commands/{id}, or otherwise the command's own status and result
 * (with a Location for a 201). replayed marks an answer repeated for an
 * Idempotency-Key. */
void commands_answer(request_t *req, const command_row_t *row, const actor_t *actor,
                     const char *request_sha256, int as_command, int replayed);

/* waiter.c: answers requests waiting for commands, woken by PostgreSQL's
 * NOTIFY ps_commands. A waiter is answered by commands_answer as soon as its
 * command is applied and (for a command it publishes) Kafka acknowledged it;
 * or, when wait_ms runs out first, with timeout_status and timeout_body
 * (and a Location of timeout_location when not ""). */
typedef struct waiter waiter_t;
int waiter_start(const char *dsn, char *err, size_t errlen);
void waiter_stop(void);
waiter_t *waiter_add(request_t *req, const char *command_id, const char *request_sha256,
                     const actor_t *actor, int as_command, int wait_ms, int published,
                     unsigned timeout_status, const char *timeout_body,
                     const char *timeout_location);
/* The publish_t to produce the waiter's command with: its delivery report
 * answers 202 at once when the request does not wait, 503 when Kafka did
 * not take the command. */
publish_t *waiter_publish(waiter_t *w);

/* validate.c: request bodies. Each check that fails answers 400 with the
 * offending field as param ("items[2].quantity") and returns -1; where is
 * the path of obj in the body ("" at the top). */
#define API_AMOUNT_MAX 1000000000000LL /* largest amount, in minor units */
#define API_EMAIL_MAX 254               /* longest email address (RFC 5321 path) */
#define API_NAME_MAX 200                /* longest name of a person or an item, in bytes */

/* Copies src into dst (dstlen bytes, NUL-terminated) with every byte that
 * is not printable ASCII replaced by '?': for names from a request quoted in
 * an error. */
void api_printable(char *dst, const char *src, size_t dstlen);
/* The body as a JSON object (duplicate keys refused), or NULL after 400. */
json_t *body_object(api_call_t *call);
/* Refuses any member of obj not in allowed (NULL-terminated). */
int check_fields(api_call_t *call, json_t *obj, const char *where, const char *const *allowed);
/* A string of 1 to maxlen bytes; *out is NULL when absent and not required. */
int field_string(api_call_t *call, json_t *obj, const char *where, const char *name,
                 int required, size_t maxlen, const char **out);
/* A name of a person or an item: 1 to API_NAME_MAX bytes of text on one
 * line (no control characters); *out is NULL when absent. */
int field_name(api_call_t *call, json_t *obj, const char *where, const char *name,
               const char **out);
/* An email address of at most API_EMAIL_MAX bytes, one that is safe in a
 * mail header; *out is NULL when absent and not required. */
int field_email(api_call_t *call, json_t *obj, const char *where, const char *name,
                int required, const char **out);
/* An integer within [min, max]. */
int field_int(api_call_t *call, json_t *obj, const char *where, const char *name, int64_t min,
              int64_t max, int64_t *out);
/* An ISO 4217 code, uppercased into out. */
int field_currency(api_call_t *call, json_t *obj, const char *where, const char *name,
                   char out[4]);
/* A decimal amount string ("29.99") of currency, in minor units within [min,
 * API_AMOUNT_MAX]. */
int field_amount(api_call_t *call, json_t *obj, const char *where, const char *name,
                 const char *currency, int64_t min, int64_t *out);
/* An object of at most max_bytes (as compact JSON) whose values are strings,
 * numbers, booleans or such objects, max_depth deep at most. *out is a
 * borrowed reference, NULL when absent; JSON null is refused. */
int field_object(api_call_t *call, json_t *obj, const char *where, const char *name,
                 int max_depth, size_t max_bytes, json_t **out);

/* payments.c */
void payments_create(api_call_t *call);
void payments_get(api_call_t *call);
void payments_list(api_call_t *call);
void payments_process(api_call_t *call);
void payments_refund(api_call_t *call);
void transactions_get(api_call_t *call);
void transactions_list(api_call_t *call);

/* billing.c */
void customers_create(api_call_t *call);
void customers_me(api_call_t *call);
void usage_create(api_call_t *call);
void billing_create_payment(api_call_t *call);

/* accounts.c */
void accounts_get(api_call_t *call);
/* Whether id is an acct_ id; -1 after answering 400 for param. */
int account_id_check(api_call_t *call, const char *id, const char *param);

/* order_body.c: the bodies of order writes. Each returns the parameters
 * of the command (a new reference), or NULL after answering 400. */
/* The whole body of POST /api/v1/orders. */
json_t *order_create_params(api_call_t *call, json_t *body);
/* items (1 to 100 lines), with amounts in minor units of currency. */
json_t *order_items_params(api_call_t *call, json_t *items, const char *currency);
/* Copies the optional addresses and metadata of body into params; -1 after
 * answering 400. */
int order_details_params(api_call_t *call, json_t *body, json_t *params);

/* orders.c */
void orders_create(api_call_t *call);
void orders_get(api_call_t *call);
void orders_list(api_call_t *call);
void orders_update(api_call_t *call);
void orders_cancel(api_call_t *call);

#endif
