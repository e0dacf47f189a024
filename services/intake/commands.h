/* Writes as commands (commands.c): published to a command topic with the
 * actor in the headers, answered from Kafka's acknowledgement (202) or from
 * the command's result (Prefer: wait, a retried Idempotency-Key, GET
 * /api/v1/commands/{id}). */
#ifndef PAYSTREAM_INTAKE_COMMANDS_H
#define PAYSTREAM_INTAKE_COMMANDS_H

#include <jansson.h>
#include <stddef.h>

#include "call.h"

/* The statements commands.c runs on an API thread's connection. */
extern const ps_pg_stmt_t commands_statements[];
extern const size_t commands_nstatements;

/* Publishes a write as a command to topic (a command topic) and answers it:
 * 202 once Kafka has it, or its result under Prefer: wait. type is e.g.
 * "order.create"; resource_id is the id of the resource it changes, or NULL
 * for a create, which gets a new id starting with resource_prefix ("ord_");
 * aggregate is the Kafka key (NULL: the resource id); params (stolen) is
 * what the worker needs. */
void commands_submit(api_call_t *call, const char *topic, const char *type,
                     const char *aggregate, const char *resource_prefix, const char *resource_id,
                     json_t *params);

/* For a write with an Idempotency-Key, before anything else is checked:
 * answers with the first result when the key's command was applied (or 422
 * when it was made from another request, 400 for a malformed key) and
 * returns 1; returns 0 when the write is to be handled. */
int commands_replay(api_call_t *call);

/* GET /api/v1/commands/{id}. */
void commands_get(api_call_t *call);

#endif
