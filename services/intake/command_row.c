/* Reading a command's row; see command_row.h. */
#include <stdlib.h>
#include <string.h>

#include "command_row.h"
#include "paystream/util.h"

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
    row->result = ps_xstrdup(PQgetvalue(res, i, 6));
    return 0;
}

void command_row_free(command_row_t *row)
{
    free(row->result);
    row->result = NULL;
}
