/* Writes as commands: publish to paystream.commands.payments (or .usage)
 * with the actor in the headers, then answer from Kafka's acknowledgement (202) or
 * from the command's result (Prefer: wait, a reused Idempotency-Key, GET
 * /api/v1/commands/{id}).
 *
 * A command id is "cmd_" and 32 hex digits: time-ordered random ones, or,
 * for a request with an Idempotency-Key, a digest of the actor and the key,
 * so that a retry is the same command and the worker applies it once. The
 * id of a created resource takes the same digits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command_row.h"
#include "commands.h"
#include "paystream/envelope.h"
#include "paystream/hmac.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "waiter.h"

#define IDEMPOTENCY_KEY_MAX 255

const ps_pg_stmt_t commands_statements[] = {
    {"command", "SELECT " COMMAND_COLUMNS " FROM commands WHERE id = $1", 1},
};
const size_t commands_nstatements = sizeof(commands_statements) / sizeof(commands_statements[0]);

/* Who waits for a command's answer, and how it is to be answered. */
typedef struct {
    actor_t actor;
    char request_sha256[65]; /* "" when not compared */
    int as_command;
} answer_ctx_t;

static char *error_text(const char *code, const char *message)
{
    json_t *e = json_pack("{s:{s:s, s:s, s:s}}", "error", "type", "invalid_request_error",
                          "code", code, "message", message);
    char *text = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    if (text == NULL)
        abort(); /* only for want of memory */
    return text;
}

/* The API path of a command's resource, e.g. /api/v1/orders/ord_...; "" for
 * a type without one. */
static void resource_path(const char *command_type, const char *resource_id, char *out,
                          size_t outlen)
{
    if (strncmp(command_type, "order.", 6) == 0)
        snprintf(out, outlen, "/api/v1/orders/%s", resource_id);
    else if (strncmp(command_type, "payment.", 8) == 0)
        snprintf(out, outlen, "/api/v1/payments/%s", resource_id);
    else if (strcmp(command_type, "customer.create") == 0)
        snprintf(out, outlen, "/api/v1/customers/me");
    else
        out[0] = '\0';
}

/* The command object of GET /api/v1/commands/{id}. */
static char *command_object(const command_row_t *row)
{
    json_t *result = json_loads(row->result, 0, NULL);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:i, s:o?}", "id", row->id, "object",
                          "command", "type", row->type, "status",
                          row->http_status < 300 ? "succeeded" : "failed", "resource_id",
                          row->resource_id[0] ? row->resource_id : NULL, "http_status",
                          (int)row->http_status, "result", result);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* Answers req with a command found in commands: 404 when actor may not see
 * it; 422 when request_sha256 (when not NULL) is not the one the command was
 * made from; else, as_command, the command object of GET
 * /api/v1/commands/{id}, or otherwise the command's own status and result
 * (with a Location for a 201). replayed marks an answer repeated for an
 * Idempotency-Key. */
static void answer(request_t *req, const command_row_t *row, const actor_t *actor,
                   const char *request_sha256, int as_command, int replayed)
{
    if (strcmp(row->actor, actor->id) != 0 && !actor->admin) {
        http_finish(req, 404, error_text("resource_missing", "no such command"));
        return;
    }
    if (request_sha256 && strcmp(request_sha256, row->request_sha256) != 0) {
        http_finish(req, 422, error_text("idempotency_key_reused",
                                         "this Idempotency-Key was used with another request; "
                                         "use a new key for a new request"));
        return;
    }
    if (replayed)
        http_add_header(req, "Idempotent-Replayed", "true");
    if (as_command) {
        http_finish(req, 200, command_object(row));
        return;
    }
    if (row->http_status == 201) {
        char location[160];
        resource_path(row->type, row->resource_id, location, sizeof(location));
        if (location[0])
            http_add_header(req, "Location", location);
    }
    http_finish(req, row->http_status, ps_xstrdup(row->result));
}

/* A waiter's answer (waiter_answer_fn): ctx is an answer_ctx_t. */
static void answer_waiter(request_t *req, const command_row_t *row, void *ctx)
{
    const answer_ctx_t *a = ctx;
    answer(req, row, &a->actor, a->request_sha256[0] ? a->request_sha256 : NULL, a->as_command,
           0);
}

/* Makes the request of call wait for command_id (see waiter_add). */
static waiter_t *wait_for(api_call_t *call, const char *command_id, const char *request_sha256,
                          int as_command, int published, unsigned timeout_status,
                          const char *timeout_body, const char *timeout_location)
{
    answer_ctx_t *ctx = ps_xcalloc(1, sizeof(*ctx));
    ctx->actor = call->actor;
    ps_strlcpy(ctx->request_sha256, request_sha256 ? request_sha256 : "",
               sizeof(ctx->request_sha256));
    ctx->as_command = as_command;
    return waiter_add(call->req, command_id, answer_waiter, ctx, call->wait_ms, published,
                      timeout_status, timeout_body, timeout_location);
}

/* Looks command_id up; returns 1 with row filled, 0 when it is not there,
 * -1 after answering a database failure. */
static int command_find(api_call_t *call, const char *command_id, command_row_t *row)
{
    ps_pg_err_t err;
    const char *params[] = {command_id};
    PGresult *res = ps_pg_exec_prepared(call->pg, "command", 1, params, &err);
    if (res == NULL) {
        api_db_error(call, &err);
        return -1;
    }
    int found = PQntuples(res) == 1 && command_row_read(res, 0, row) == 0;
    PQclear(res);
    return found;
}

/* The command's 32 hex digits: see the top of the file. */
static int command_digits(const api_call_t *call, char hex[PS_ORDERED_HEX_LEN + 1])
{
    if (call->idempotency_key == NULL) {
        ps_ordered_hex(hex);
        return 0;
    }
    char digest[65];
    ps_hmac_piece_t pieces[] = {{"idempotency\0", 12},
                                {call->actor.id, strlen(call->actor.id) + 1},
                                {call->idempotency_key, strlen(call->idempotency_key)}};
    if (ps_sha256_hex(pieces, 3, digest) < 0)
        return -1;
    memcpy(hex, digest, PS_ORDERED_HEX_LEN);
    hex[PS_ORDERED_HEX_LEN] = '\0';
    return 0;
}

/* The fingerprint of the request a command is made from. */
static int request_digest(const api_call_t *call, char out[65])
{
    ps_hmac_piece_t pieces[] = {{call->method, strlen(call->method) + 1},
                                {call->path, strlen(call->path) + 1},
                                {call->req->body ? call->req->body : "", call->req->len}};
    return ps_sha256_hex(pieces, 3, out);
}

/* Publishes the command message; the waiter answers from the report. */
static void publish(api_call_t *call, waiter_t *w, const char *topic, const char *type,
                    const char *key, const char *text)
{
    ps_envelope_t env;
    ps_envelope_init(&env, "api", type);
    ps_strlcpy(env.actor, call->actor.id, sizeof(env.actor));
    snprintf(env.actor_roles, sizeof(env.actor_roles), "%s%s%s",
             call->actor.admin ? "admin" : "", call->actor.admin && call->actor.sandbox ? " " : "",
             call->actor.sandbox ? "sandbox" : "");
    publish_t *pub = waiter_publish(w);
    pub->produced_us = ps_mono_us();
    rd_kafka_resp_err_t err =
        ps_envelope_produce(intake.producer, topic, key, text, strlen(text), &env, pub);
    if (err) {
        ps_log_error("cannot queue the command for kafka; answering 503", "message_id",
                     env.message_id, "detail", rd_kafka_err2str(err), NULL);
        pub->done(pub, err); /* no report will come: answer as if it had failed */
        return;
    }
    ps_log_debug("command published", "message_id", env.message_id, "type", type, NULL);
}

int commands_replay(api_call_t *call)
{
    if (call->idempotency_key == NULL)
        return 0;
    if (!ps_is_token(call->idempotency_key, IDEMPOTENCY_KEY_MAX)) {
        api_error(call, 400, "invalid_idempotency_key",
                  "Idempotency-Key must be 1 to 255 printable ASCII characters",
                  "Idempotency-Key");
        return 1;
    }
    char hex[PS_ORDERED_HEX_LEN + 1], command_id[48], digest[65];
    if (command_digits(call, hex) < 0 || request_digest(call, digest) < 0) {
        api_error(call, 503, "overloaded", "cannot compute a digest; retry later", NULL);
        return 1;
    }
    snprintf(command_id, sizeof(command_id), "cmd_%s", hex);
    command_row_t row;
    int found = command_find(call, command_id, &row);
    if (found > 0) {
        answer(call->req, &row, &call->actor, digest, 0, 1);
        command_row_free(&row);
    }
    return found != 0;
}

void commands_submit(api_call_t *call, const char *topic, const char *type,
                     const char *aggregate, const char *resource_prefix, const char *resource_id,
                     json_t *params)
{
    char hex[PS_ORDERED_HEX_LEN + 1], command_id[48], rid[PS_JWT_SUB_MAX + 1], digest[65];
    if (command_digits(call, hex) < 0 || request_digest(call, digest) < 0) {
        json_decref(params);
        api_error(call, 503, "overloaded", "cannot compute a digest; retry later", NULL);
        return;
    }
    snprintf(command_id, sizeof(command_id), "cmd_%s", hex);
    if (resource_id)
        ps_strlcpy(rid, resource_id, sizeof(rid));
    else
        snprintf(rid, sizeof(rid), "%s%s", resource_prefix, hex);

    json_t *msg = json_pack("{s:s, s:s, s:s, s:s, s:o}", "command_id", command_id, "type", type,
                            "resource_id", rid, "request_sha256", digest, "params", params);
    json_t *accepted = json_pack("{s:s, s:s, s:s}", "command_id", command_id, "id", rid,
                                 "status", "accepted");
    char *text = json_dumps(msg, JSON_COMPACT), *accepted_text = json_dumps(accepted, JSON_COMPACT);
    json_decref(msg);
    json_decref(accepted);
    if (text == NULL || accepted_text == NULL)
        abort(); /* only for want of memory: both are valid JSON */
    char location[96];
    snprintf(location, sizeof(location), "/api/v1/commands/%s", command_id);
    waiter_t *w = wait_for(call, command_id, digest, 0, 0, 202, accepted_text, location);
    publish(call, w, topic, type, aggregate ? aggregate : rid, text);
    free(text);
    free(accepted_text);
}

static int command_id_valid(const char *id)
{
    if (strncmp(id, "cmd_", 4) != 0 || strlen(id) != 4 + PS_ORDERED_HEX_LEN)
        return 0;
    for (const char *p = id + 4; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    }
    return 1;
}

void commands_get(api_call_t *call)
{
    static const char not_found[] =
        "no such command; one accepted moments ago shows here once it is applied "
        "(ask with Prefer: wait=N to wait for it)";
    if (!command_id_valid(call->id)) {
        api_error(call, 404, "resource_missing", not_found, "id");
        return;
    }
    command_row_t row;
    int found = command_find(call, call->id, &row);
    if (found > 0) {
        answer(call->req, &row, &call->actor, NULL, 1, 0);
        command_row_free(&row);
        return;
    }
    if (found < 0)
        return;
    if (call->wait_ms == 0) {
        api_error(call, 404, "resource_missing", not_found, "id");
        return;
    }
    char *body = error_text("resource_missing", not_found);
    wait_for(call, call->id, NULL, 1, 1, 404, body, "");
    free(body);
}
