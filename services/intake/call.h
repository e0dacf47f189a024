/* One API request as its handler sees it, and how a handler answers: the
 * bottom of the API, which every API module includes and which includes
 * none of them. */
#ifndef PAYSTREAM_INTAKE_CALL_H
#define PAYSTREAM_INTAKE_CALL_H

#include <jansson.h>
#include <stdint.h>

#include "intake.h"
#include "paystream/jwt.h"
#include "paystream/pg.h"
#include "paystream/util.h"

#define API_MAX_ARGS 8
#define API_LIMIT_DEFAULT 20
#define API_LIMIT_MAX 100

/* Who is calling: a user id, and what the credentials allow. */
typedef struct {
    char id[PS_JWT_SUB_MAX + 1];
    int admin;   /* may see and change everyone's data */
    int sandbox; /* payments go to the sandbox gateway */
} actor_t;

/* One API request on an API thread. Everything the handler needs of the
 * HTTP request is copied here first (api.c), so that the HTTP server's own
 * structures are only read on its own threads. */
typedef struct api_call {
    request_t *req;
    const route_t *route;
    ps_pg_t *pg; /* the API thread's connection */
    char method[8];
    char path[256];
    char id[ROUTE_ID_MAX + 1]; /* the {id} of the path, or "" */
    char *authorization, *prefer, *idempotency_key; /* NULL when absent */
    struct {
        char *name, *value;
    } args[API_MAX_ARGS]; /* the query string */
    int nargs;
    char client[48]; /* the client's address, for the limit on failed authentications */
    actor_t actor;
    int wait_ms; /* from Prefer: wait=N, 0 without */
} api_call_t;

/* Answers call with status and the JSON value (stolen). */
void api_reply(api_call_t *call, unsigned status, json_t *body);

/* Answers with {"error":{"type":"invalid_request_error","code","message","param"}}
 * ("api_error" for a 5xx); param may be NULL. */
void api_error(api_call_t *call, unsigned status, const char *code, const char *message,
               const char *param);

/* Same, with a printf-style message. */
void api_errorf(api_call_t *call, unsigned status, const char *code, const char *param,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Answers 500 (503 when it may pass) for a database failure, logged without
 * the request's data. */
void api_db_error(api_call_t *call, const ps_pg_err_t *err);

/* Runs stmt with (the path's id, the actor, whether admin): a read of one
 * resource the actor may see. Returns its result, or NULL after answering
 * 404 ("no such <what>") or a database failure. */
PGresult *api_read_owned(api_call_t *call, const char *stmt, const char *what);

/* Answers a list: runs page statement stmt with (actor, admin, filter,
 * cursor, the limit parameter: 1 to API_LIMIT_MAX, API_LIMIT_DEFAULT when
 * absent); filter and cursor may be NULL. */
void api_list_page(api_call_t *call, const char *stmt, const char *filter, const char *cursor);

/* The value of query argument name, or NULL. */
const char *api_arg(const api_call_t *call, const char *name);

/* Whether a write's handler checks the state of what it changes before
 * publishing (a pending order, a processable payment) to answer 409 at
 * once. The worker checks again when it applies the command, and only its
 * verdict counts for a write with an Idempotency-Key: a retry of a command
 * still in flight must get that command's answer, not a refusal because
 * the command itself has moved the state on. */
int api_checks_state(const api_call_t *call);

#endif
