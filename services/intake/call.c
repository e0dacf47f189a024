/* How an API handler answers, and the reads every resource does the same
 * way; see call.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "paystream/log.h"

static void answer_text(request_t *req, unsigned status, char *text)
{
    http_finish(req, status, text ? text : ps_xstrdup("{}"));
}

void api_reply(api_call_t *call, unsigned status, json_t *body)
{
    answer_text(call->req, status, json_dumps(body, JSON_COMPACT));
    json_decref(body);
}

void api_error(api_call_t *call, unsigned status, const char *code, const char *message,
               const char *param)
{
    api_reply(call, status,
              json_pack("{s:{s:s, s:s, s:s, s:s?}}", "error", "type",
                        status >= 500 ? "api_error" : "invalid_request_error", "code", code,
                        "message", message, "param", param));
}

void api_errorf(api_call_t *call, unsigned status, const char *code, const char *param,
                const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    api_error(call, status, code, msg, param);
}

void api_db_error(api_call_t *call, const ps_pg_err_t *err)
{
    ps_log_error("database query failed", "sqlstate", err->sqlstate, "detail", err->message,
                 "path", call->path, NULL);
    api_error(call, err->transient ? 503 : 500, "database_unavailable",
              "the database cannot answer now; retry later", NULL);
}

PGresult *api_read_owned(api_call_t *call, const char *stmt, const char *what)
{
    ps_pg_err_t err;
    const char *params[] = {call->id, call->actor.id, call->actor.admin ? "true" : "false"};
    PGresult *res = ps_pg_exec_prepared(call->pg, stmt, 3, params, &err);
    if (res == NULL) {
        api_db_error(call, &err);
        return NULL;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        api_errorf(call, 404, "resource_missing", "id", "no such %s: %s", what, call->id);
        return NULL;
    }
    return res;
}

/* The limit query parameter of a list as text in out; -1 after answering
 * 400. */
static int api_limit(api_call_t *call, char out[8])
{
    const char *text = api_arg(call, "limit");
    snprintf(out, 8, "%d", API_LIMIT_DEFAULT);
    if (text == NULL)
        return 0;
    char *end;
    long n = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || n < 1 || n > API_LIMIT_MAX) {
        api_errorf(call, 400, "parameter_invalid", "limit",
                   "limit must be a whole number from 1 to %d", API_LIMIT_MAX);
        return -1;
    }
    snprintf(out, 8, "%ld", n);
    return 0;
}

void api_list_page(api_call_t *call, const char *stmt, const char *filter, const char *cursor)
{
    char limit[8];
    if (api_limit(call, limit) < 0)
        return;
    if (cursor && (*cursor == '\0' || strlen(cursor) > ROUTE_ID_MAX)) {
        api_error(call, 400, "parameter_invalid", "starting_after must be an id from a page",
                  "starting_after");
        return;
    }
    ps_pg_err_t err;
    const char *params[] = {call->actor.id, call->actor.admin ? "true" : "false", filter, cursor,
                            limit};
    PGresult *res = ps_pg_exec_prepared(call->pg, stmt, 5, params, &err);
    if (res == NULL) {
        api_db_error(call, &err);
        return;
    }
    http_finish(call->req, 200, ps_xstrdup(PQgetvalue(res, 0, 0)));
    PQclear(res);
}

int api_checks_state(const api_call_t *call)
{
    return call->idempotency_key == NULL;
}

const char *api_arg(const api_call_t *call, const char *name)
{
    for (int i = 0; i < call->nargs; i++) {
        if (strcmp(call->args[i].name, name) == 0)
            return call->args[i].value;
    }
    return NULL;
}
