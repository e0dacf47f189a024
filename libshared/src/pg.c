#include "paystream/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paystream/log.h"
#include "paystream/util.h"

struct ps_pg {
    char *dsn;
    PGconn *conn;
    const ps_pg_stmt_t *stmts;
    size_t nstmts;
};

static void err_set(ps_pg_err_t *err, const char *sqlstate, const char *message, bool transient)
{
    if (err == NULL)
        return;
    snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", sqlstate ? sqlstate : "");
    snprintf(err->message, sizeof(err->message), "%s", message ? message : "");
    /* libpq ends its messages with a newline; a log line should not. */
    size_t len = strlen(err->message);
    while (len > 0 && (err->message[len - 1] == '\n' || err->message[len - 1] == ' '))
        err->message[--len] = '\0';
    err->transient = transient;
}

/* Fills err from a failed result, or from the connection when res is NULL. */
static void err_from_result(ps_pg_t *pg, const PGresult *res, ps_pg_err_t *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(pg->conn);
    bool lost = PQstatus(pg->conn) != CONNECTION_OK;
    err_set(err, state, msg, lost || state == NULL || ps_pg_sqlstate_transient(state));
}

bool ps_pg_sqlstate_transient(const char *s)
{
    if (s == NULL || *s == '\0')
        return true;
    return strncmp(s, "08", 2) == 0      /* connection exception */
           || strcmp(s, "40001") == 0    /* serialization failure */
           || strcmp(s, "40P01") == 0    /* deadlock detected */
           || strncmp(s, "53", 2) == 0   /* insufficient resources */
           || strncmp(s, "57P", 3) == 0  /* operator intervention: shutdown */
           || strcmp(s, "55P03") == 0    /* lock not available */
           /* The schema, the database or the login is not what the
            * statements expect: no message is at fault, and all of them
            * apply once an operator migrates or fixes it. */
           || strncmp(s, "42", 2) == 0   /* syntax error or access rule violation */
           || strncmp(s, "28", 2) == 0   /* invalid authorization */
           || strcmp(s, "3D000") == 0    /* no such database */
           || strcmp(s, "3F000") == 0;   /* no such schema */
}

PGresult *ps_pg_prepare(PGconn *conn, const ps_pg_stmt_t *stmts, size_t nstmts)
{
    for (size_t i = 0; i < nstmts; i++) {
        PGresult *res = PQprepare(conn, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            return res;
        PQclear(res);
    }
    return NULL;
}

static int prepare_all(ps_pg_t *pg, ps_pg_err_t *err)
{
    PGresult *res = ps_pg_prepare(pg->conn, pg->stmts, pg->nstmts);
    if (res == NULL)
        return 0;
    err_from_result(pg, res, err);
    PQclear(res);
    return -1;
}

static int open_conn(ps_pg_t *pg, ps_pg_err_t *err)
{
    if (pg->conn)
        PQfinish(pg->conn);
    pg->conn = PQconnectdb(pg->dsn);
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        err_set(err, "", PQerrorMessage(pg->conn), true);
        return -1;
    }
    /* Quiet NOTICEs (e.g. "relation already exists, skipping"). */
    PQclear(PQexec(pg->conn, "SET client_min_messages = warning"));
    return prepare_all(pg, err);
}

ps_pg_t *ps_pg_connect(const char *dsn, const ps_pg_stmt_t *stmts, size_t nstmts,
                       char *err, size_t errlen)
{
    ps_pg_t *pg = ps_xcalloc(1, sizeof(*pg));
    ps_pg_err_t e;
    pg->dsn = ps_xstrdup(dsn);
    pg->stmts = stmts;
    pg->nstmts = nstmts;
    if (open_conn(pg, &e) < 0) {
        snprintf(err, errlen, "%s", e.message);
        ps_pg_close(pg);
        return NULL;
    }
    return pg;
}

void ps_pg_close(ps_pg_t *pg)
{
    if (pg == NULL)
        return;
    if (pg->conn)
        PQfinish(pg->conn);
    free(pg->dsn);
    free(pg);
}

int ps_pg_ensure(ps_pg_t *pg, ps_pg_err_t *err)
{
    if (PQstatus(pg->conn) == CONNECTION_OK)
        return 0;
    ps_log_warn("postgresql connection lost; reconnecting", NULL);
    return open_conn(pg, err);
}

int ps_pg_exec(ps_pg_t *pg, const char *sql, ps_pg_err_t *err)
{
    PGresult *res = PQexec(pg->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        err_from_result(pg, res, err);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    return 0;
}

PGresult *ps_pg_exec_prepared(ps_pg_t *pg, const char *name, int nparams,
                              const char *const *values, ps_pg_err_t *err)
{
    PGresult *res = PQexecPrepared(pg->conn, name, nparams, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        err_from_result(pg, res, err);
        PQclear(res);
        return NULL;
    }
    return res;
}

PGresult *ps_pg_query(ps_pg_t *pg, const char *sql, int nparams, const char *const *values,
                      ps_pg_err_t *err)
{
    PGresult *res = PQexecParams(pg->conn, sql, nparams, NULL, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    err_from_result(pg, res, err);
    PQclear(res);
    return NULL;
}

/* Reads results up to and including the pipeline sync. Stores the first
 * error in err (returning -1) and, when results is not NULL, the tuples of
 * call i in results[i]. */
static int pipeline_collect(ps_pg_t *pg, size_t n, PGresult **results, ps_pg_err_t *err)
{
    int rc = 0;
    /* Slot 0 is BEGIN, 1..n the calls, n+1 COMMIT. */
    for (size_t slot = 0; slot < n + 2; slot++) {
        PGresult *res;
        while ((res = PQgetResult(pg->conn)) != NULL) {
            ExecStatusType st = PQresultStatus(res);
            if (st == PGRES_FATAL_ERROR && rc == 0) {
                err_from_result(pg, res, err);
                err->index = slot > 0 ? slot - 1 : 0;
                rc = -1;
            } else if (st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED) {
                rc = -1;
            }
            if (rc == 0 && results && slot >= 1 && slot <= n) {
                results[slot - 1] = res;
                continue;
            }
            PQclear(res);
        }
    }
    PGresult *sync = PQgetResult(pg->conn);
    if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC && rc == 0) {
        err_from_result(pg, sync, err);
        rc = -1;
    }
    PQclear(sync);
    return rc;
}

int ps_pg_batch(ps_pg_t *pg, const ps_pg_call_t *calls, size_t n, PGresult **results,
                ps_pg_err_t *err)
{
    memset(results, 0, n * sizeof(*results));
    if (PQenterPipelineMode(pg->conn) != 1) {
        err_from_result(pg, NULL, err);
        return -1;
    }
    int ok = PQsendQueryParams(pg->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    for (size_t i = 0; ok && i < n; i++)
        ok = PQsendQueryPrepared(pg->conn, calls[i].stmt, calls[i].nparams, calls[i].values,
                                 calls[i].lengths, calls[i].formats, 0);
    ok = ok && PQsendQueryParams(pg->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
    ok = ok && PQpipelineSync(pg->conn);
    int rc = -1;
    if (!ok) {
        err_from_result(pg, NULL, err);
    } else {
        rc = pipeline_collect(pg, n, results, err);
    }
    if (PQstatus(pg->conn) == CONNECTION_OK)
        PQexitPipelineMode(pg->conn);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++) {
            PQclear(results[i]);
            results[i] = NULL;
        }
        /* A failed COMMIT in a pipeline leaves no transaction open, but an
         * error before it leaves an aborted one to end. */
        if (PQstatus(pg->conn) == CONNECTION_OK &&
            PQtransactionStatus(pg->conn) != PQTRANS_IDLE)
            PQclear(PQexec(pg->conn, "ROLLBACK"));
    }
    return rc;
}
