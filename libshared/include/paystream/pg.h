/* PostgreSQL: one connection with reconnect, prepared statements that are
 * prepared again after a reconnect, transactions and pipelined batches. */
#ifndef PAYSTREAM_PG_H
#define PAYSTREAM_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct ps_pg ps_pg_t;

/* Why a call failed: SQLSTATE ("" when the connection itself failed), a
 * short message, and whether retrying the same work may succeed. */
typedef struct {
    char sqlstate[6];
    char message[512];
    bool transient;
    size_t index; /* in a batch: which call failed */
} ps_pg_err_t;

/* A named statement prepared on every (re)connection. */
typedef struct {
    const char *name;
    const char *sql;
    int nparams;
} ps_pg_stmt_t;

/* Prepares stmts on conn, a connection of the caller's own (one that
 * ps_pg_t does not suit, such as one that LISTENs). Returns NULL, or the
 * result of the first statement that failed (free with PQclear). */
PGresult *ps_pg_prepare(PGconn *conn, const ps_pg_stmt_t *stmts, size_t nstmts);

/* Opens a connection and prepares stmts (a static table; NULL and 0 for
 * none). Returns the handle (free with ps_pg_close) or NULL with the reason
 * in err. */
ps_pg_t *ps_pg_connect(const char *dsn, const ps_pg_stmt_t *stmts, size_t nstmts,
                       char *err, size_t errlen);
void ps_pg_close(ps_pg_t *pg);

/* Reconnects (and prepares again) when the connection was lost. Returns 0
 * when the connection is usable, or -1 with the reason in err. */
int ps_pg_ensure(ps_pg_t *pg, ps_pg_err_t *err);

/* Runs sql (no parameters, any number of statements). Returns 0, or -1 with
 * err filled. */
int ps_pg_exec(ps_pg_t *pg, const char *sql, ps_pg_err_t *err);

/* Runs prepared statement name. Returns the result (free with PQclear) for
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK, else NULL with err filled. */
PGresult *ps_pg_exec_prepared(ps_pg_t *pg, const char *name, int nparams,
                              const char *const *values, ps_pg_err_t *err);

/* Runs sql once (not prepared) with nparams text values. Returns the
 * result (free with PQclear), or NULL with err filled. */
PGresult *ps_pg_query(ps_pg_t *pg, const char *sql, int nparams, const char *const *values,
                      ps_pg_err_t *err);

/* One call of a prepared statement within a batch. A value is text
 * unless its format is 1: then it is in the type's binary form, lengths
 * bytes long. */
typedef struct {
    const char *stmt;
    int nparams;
    const char *values[24];
    int lengths[24];
    int formats[24];
} ps_pg_call_t;

/* Runs calls in one transaction, pipelined: one round trip for the lot.
 * On success commits and stores each call's result in results (the caller
 * PQclears each); on failure rolls back, stores nothing and fills err with
 * the first failing call's index. Returns 0 or -1. */
int ps_pg_batch(ps_pg_t *pg, const ps_pg_call_t *calls, size_t n, PGresult **results,
                ps_pg_err_t *err);

/* True for SQLSTATEs where the same work may succeed later: connection
 * loss, serialization failure, deadlock, shutdown, lack of resources, and a
 * schema, database or login that is not what the statements expect (an
 * operator's fix, such as a migration, makes them succeed). */
bool ps_pg_sqlstate_transient(const char *sqlstate);

#endif
