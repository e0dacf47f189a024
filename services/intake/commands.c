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

#include "api.h"
#include "paystream/envelope.h"
#include "paystream/hmac.h"
#include "paystream/kafka.h"
#include "paystream/log.h"

#define IDEMPOTENCY_KEY_MAX 255

int command_row_read(PGresult *res, int i, command_row_t *row)
{
    memset(row, 0, sizeof(*row));
    if (ps_strlcpy(row->id, PQgetvalue(res, i, 0), sizeof(row->id)) >= sizeof(row->id) ||
        ps_strlcpy(row->actor, PQgetvalue(res, i, 1), sizeof(row->actor)) >= sizeof(row->actor) ||
        ps_strlcpy(row->type, PQgetvalue(res, i, 2), sizeof(row->type)) >= sizeof(row->type) ||
        ps_strlcpy(row->resource_id, PQgetvalue(res, i, 3), sizeof(row->resource_id)) >=
            sizeof(row->resource_id))
        return -1;
    ps_strlcpy(row->request_sha256, PQgetvalue(res, i, 4), sizeof(row->request_sha256));
    row->http_status = (unsigned)strtoul(PQgetvalue(res, i, 5), NULL, 10);
    row->result = strdup(PQgetvalue(res, i, 6));
    return row->result ? 0 : -1;
}

void command_row_free(command_row_t *row)
{
    free(row->result);
    row->result = NULL;
}

static char *error_text(const char *code, const char *message)
{
    json_t *e = json_pack("{s:{s:s, s:s, s:s}}", "error", "type", "invalid_request_error",
                          "code", code, "message", message);
    char *text = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    return text;
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

void commands_answer(request_t *req, const command_row_t *row, const actor_t *actor,
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
        api_resource_path(row->type, row->resource_id, location, sizeof(location));
        if (location[0])
            http_add_header(req, "Location", location);
    }
    http_finish(req, row->http_status, strdup(row->result));
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
    rd_kafka_headers_t *hdrs = ps_envelope_to_headers(&env);
    publish_t *pub = waiter_publish(w);
    pub->produced_us = ps_mono_us();
    rd_kafka_resp_err_t err = rd_kafka_producev(
        intake.producer, RD_KAFKA_V_TOPIC(topic),
        RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)text, strlen(text)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(pub), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(hdrs);
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
        commands_answer(call->req, &row, &call->actor, digest, 0, 1);
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
    char location[96];
    snprintf(location, sizeof(location), "/api/v1/commands/%s", command_id);
    waiter_t *w = text && accepted_text
                      ? waiter_add(call->req, command_id, digest, &call->actor, 0, call->wait_ms,
                                   0, 202, accepted_text, location)
                      : NULL;
    if (w == NULL)
        api_error(call, 503, "overloaded", "out of memory; retry later", NULL);
    else
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
        commands_answer(call->req, &row, &call->actor, NULL, 1, 0);
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
    if (body == NULL ||
        waiter_add(call->req, call->id, NULL, &call->actor, 1, call->wait_ms, 1, 404, body, "") == NULL)
        api_error(call, 503, "overloaded", "out of memory; retry later", NULL);
    free(body);
}
