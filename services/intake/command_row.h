/* A command's row in PostgreSQL's commands table, as the intake reads it:
 * the result the API answers for it once the worker has applied it. */
#ifndef PAYSTREAM_INTAKE_COMMAND_ROW_H
#define PAYSTREAM_INTAKE_COMMAND_ROW_H

#include <libpq-fe.h>

#include "paystream/jwt.h"

typedef struct {
    char id[48], actor[PS_JWT_SUB_MAX + 1], type[48], resource_id[PS_JWT_SUB_MAX + 1];
    char request_sha256[65];
    unsigned http_status;
    char *result; /* malloc'd JSON text */
} command_row_t;

/* The columns of a command as command_row_read reads them. */
#define COMMAND_COLUMNS \
    "id, actor, type, coalesce(resource_id, ''), request_sha256, http_status, result::text"

/* Reads row i of a result of COMMAND_COLUMNS into row (free with
 * command_row_free). Returns 0, or -1 when a value does not fit. */
int command_row_read(PGresult *res, int i, command_row_t *row);
void command_row_free(command_row_t *row);

#endif
