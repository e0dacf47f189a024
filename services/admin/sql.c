/* PostgreSQL for the admin commands: one statement per connection. */
#include <stdio.h>

#include "admin.h"
#include "paystream/config.h"
#include "paystream/pg.h"

int admin_sql(const char *sql, int nparams, const char *const *params, int print)
{
    char err[512];
    ps_pg_stmt_t stmt = {"admin", sql, nparams};
    ps_pg_t *pg = ps_pg_connect(ps_config_str("PAYSTREAM_PG_DSN"), &stmt, 1, err, sizeof(err));
    if (pg == NULL) {
        fprintf(stderr, "paystream-admin: cannot connect to PostgreSQL: %s\n", err);
        return -1;
    }
    ps_pg_err_t perr;
    PGresult *res = ps_pg_exec_prepared(pg, "admin", nparams, params, &perr);
    int rows = -1;
    if (res == NULL) {
        fprintf(stderr, "paystream-admin: %s\n", perr.message);
    } else {
        rows = PQntuples(res);
        for (int r = 0; print && r < rows; r++) {
            for (int c = 0; c < PQnfields(res); c++)
                printf("%s%s", c ? "\t" : "", PQgetisnull(res, r, c) ? "-" : PQgetvalue(res, r, c));
            printf("\n");
        }
        PQclear(res);
    }
    ps_pg_close(pg);
    return rows;
}

