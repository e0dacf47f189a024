/* The schema of paystream's database, brought up to date by --migrate.
 *
 * schemas/migrations/NNNN_name.sql change the shape of the data (tables,
 * indexes, constraints, data); each is applied once, in name order, and
 * recorded in schema_migrations. schemas/functions/ hold what the system does
 * with the data (functions, triggers, views and the types they use), one file
 * per domain, each the current and only definition: whenever one of them
 * changed (its SHA-256 differs from the one in schema_functions), every
 * object they define is dropped and all of them are applied again, in the
 * order of schemas/functions/files.txt (the idea of Flyway's repeatable
 * migrations). A database made by paystream 0.1's migrations (001_*.sql ...)
 * is brought to the baseline by schemas/upgrade/from-0.1.sql instead of
 * 0001_baseline.sql. */
#ifndef PAYSTREAM_MIGRATE_H
#define PAYSTREAM_MIGRATE_H

#include <stddef.h>

#include "paystream/pg.h"

/* Brings the database of pg up to the schema in dir (a schemas/ folder), in
 * one transaction under an advisory lock, so that concurrent callers wait
 * and then find nothing to do. Returns the number of migration and function
 * files applied (0: it was up to date), or -1 with the reason in err and
 * nothing changed. */
int ps_migrate(ps_pg_t *pg, const char *dir, char *err, size_t errlen);

#endif
