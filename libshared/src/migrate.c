/* Bringing the database up to schemas/: see paystream/migrate.h. */
#include "paystream/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paystream/hmac.h"
#include "paystream/log.h"
#include "paystream/util.h"

#define LOCK_KEY "7265631"
#define MAX_FILES 64
#define PATH_MAX_LEN 4096
#define BASELINE "0001_baseline.sql"

/* The files a step applies: names (malloc'd) and their count. */
typedef struct {
    char *names[MAX_FILES];
    int n;
} files_t;

static void files_free(files_t *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->names[i]);
    f->n = 0;
}

static int name_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether name is NNNN_something.sql. */
static int migration_name(const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < 4; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
    }
    return len > 9 && name[4] == '_' && strcmp(name + len - 4, ".sql") == 0 &&
           strchr(name, '.') == name + len - 4;
}

/* The numbered migrations of dir, in name order. */
static int list_migrations(const char *dir, files_t *out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, errlen, "cannot list %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && out->n < MAX_FILES) {
        if (migration_name(e->d_name))
            out->names[out->n++] = ps_xstrdup(e->d_name);
    }
    closedir(d);
    qsort(out->names, (size_t)out->n, sizeof(char *), name_compare);
    return 0;
}

/* The function files named in dir/files.txt, in its order. */
static int list_functions(const char *dir, files_t *out, char *err, size_t errlen)
{
    char path[PATH_MAX_LEN + 16], line[256];
    snprintf(path, sizeof(path), "%s/files.txt", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f) && out->n < MAX_FILES) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != '\0' && line[0] != '#')
            out->names[out->n++] = ps_xstrdup(line);
    }
    fclose(f);
    return 0;
}

static char *read_file(const char *dir, const char *name, char *err, size_t errlen)
{
    char path[2 * PATH_MAX_LEN];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long size = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = ps_xmalloc((size_t)size + 1);
        if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
            free(buf);
            buf = NULL;
        } else {
            buf[size] = '\0';
        }
    }
    if (f)
        fclose(f);
    if (buf == NULL)
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    return buf;
}

/* Runs the SQL of file dir/name; on failure err names the file. */
static int run_file(ps_pg_t *pg, const char *dir, const char *name, char *err, size_t errlen)
{
    char *sql = read_file(dir, name, err, errlen);
    if (sql == NULL)
        return -1;
    ps_pg_err_t e;
    int rc = ps_pg_exec(pg, sql, &e);
    if (rc < 0)
        snprintf(err, errlen, "%s/%s: %s", dir, name, e.message);
    free(sql);
    return rc;
}

/* Runs a statement whose result is one value, copied into out. */
static int query_value(ps_pg_t *pg, const char *sql, int nparams, const char *const *values,
                       char *out, size_t outlen, char *err, size_t errlen)
{
    ps_pg_err_t e;
    PGresult *res = ps_pg_query(pg, sql, nparams, values, &e);
    if (res == NULL) {
        snprintf(err, errlen, "%s", e.message);
        return -1;
    }
    snprintf(out, outlen, "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return 0;
}

static int exec_or_fail(ps_pg_t *pg, const char *sql, char *err, size_t errlen)
{
    ps_pg_err_t e;
    if (ps_pg_exec(pg, sql, &e) == 0)
        return 0;
    snprintf(err, errlen, "%s", e.message);
    return -1;
}

static int record_migration(ps_pg_t *pg, const char *name, char *err, size_t errlen)
{
    char ignored[8];
    const char *params[] = {name};
    return query_value(pg, "INSERT INTO schema_migrations (name) VALUES ($1)", 1, params,
                       ignored, sizeof(ignored), err, errlen);
}

/* A database made by paystream 0.1's migrations (001_*.sql to 010_*.sql,
 * perhaps 011_*.sql) gets its tables to the baseline's by the upgrade file
 * instead of the baseline itself. Returns 1 when it did, 0 for any other
 * database, -1 on failure. */
static int upgrade_legacy(ps_pg_t *pg, const char *schemas, char *err, size_t errlen)
{
    char n[16];
    if (query_value(pg,
                    "SELECT count(*) FILTER (WHERE name ~ '^0(0[1-9]|10)_')::text || '/' || "
                    "count(*) FILTER (WHERE name = '" BASELINE "')::text FROM schema_migrations",
                    0, NULL, n, sizeof(n), err, errlen) < 0)
        return -1;
    if (strcmp(n, "0/0") == 0 || strchr(n, '/')[1] != '0')
        return 0;
    if (strcmp(n, "10/0") != 0) {
        snprintf(err, errlen, "the database was made by paystream 0.1 but has only %.*s of its "
                              "ten migrations; apply them with that release's --migrate first",
                 (int)strcspn(n, "/"), n);
        return -1;
    }
    char dir[PATH_MAX_LEN];
    snprintf(dir, sizeof(dir), "%s/upgrade", schemas);
    if (run_file(pg, dir, "from-0.1.sql", err, errlen) < 0 ||
        record_migration(pg, BASELINE, err, errlen) < 0)
        return -1;
    ps_log_info("database of paystream 0.1 brought to the baseline", "file", "from-0.1.sql", NULL);
    return 1;
}

/* Drops what the function files define: triggers that call paystream's
 * functions, the dashboards' views, the functions no table depends on (a
 * table's default, such as ps_new_id, belongs to the migrations) and the
 * composite types they use. Nothing is dropped in cascade: an object of
 * someone else's that depends on one of these stops the migration instead
 * of vanishing with it. */
static const char drop_definitions[] =
    "DO $$ DECLARE r record; BEGIN\n"
    "  FOR r IN SELECT t.tgname, t.tgrelid::regclass AS tbl FROM pg_trigger t\n"
    "           JOIN pg_proc p ON p.oid = t.tgfoid\n"
    "           WHERE NOT t.tgisinternal AND p.pronamespace = 'public'::regnamespace\n"
    "             AND p.proname LIKE 'ps\\_%' LOOP\n"
    "    EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.tbl);\n"
    "  END LOOP;\n"
    "  FOR r IN SELECT viewname FROM pg_views WHERE schemaname = 'public'\n"
    "           AND viewname LIKE 'dash\\_%' LOOP\n"
    "    EXECUTE format('DROP VIEW %I', r.viewname);\n"
    "  END LOOP;\n"
    "  FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p\n"
    "           WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'ps\\_%'\n"
    "             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = p.oid\n"
    "                             AND d.refclassid = 'pg_proc'::regclass\n"
    "                             AND d.classid IN ('pg_attrdef'::regclass,\n"
    "                                               'pg_constraint'::regclass,\n"
    "                                               'pg_class'::regclass)) LOOP\n"
    "    EXECUTE format('DROP FUNCTION %s', r.fn);\n"
    "  END LOOP;\n"
    "  FOR r IN SELECT t.typname FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid\n"
    "           WHERE t.typnamespace = 'public'::regnamespace AND c.relkind = 'c'\n"
    "             AND t.typname LIKE 'ps\\_%' LOOP\n"
    "    EXECUTE format('DROP TYPE %I', r.typname);\n"
    "  END LOOP;\n"
    "END $$";

/* Before the first migration changes a table, what the function files
 * defined goes (a view or a function's argument would hold on to the
 * table a migration replaces), and schema_functions is emptied so that it
 * is all applied again on the new tables. */
static int drop_for_migration(ps_pg_t *pg, int *dropped, char *err, size_t errlen)
{
    if (*dropped)
        return 0;
    *dropped = 1;
    if (exec_or_fail(pg, drop_definitions, err, errlen) < 0 ||
        exec_or_fail(pg, "DELETE FROM schema_functions", err, errlen) < 0)
        return -1;
    return 0;
}

/* Applies the numbered migrations not yet recorded. Returns how many, or -1. */
static int apply_migrations(ps_pg_t *pg, const char *schemas, char *err, size_t errlen)
{
    char dir[PATH_MAX_LEN], done[8];
    files_t files = {0};
    int applied = upgrade_legacy(pg, schemas, err, errlen), dropped = 0;
    snprintf(dir, sizeof(dir), "%s/migrations", schemas);
    if (applied < 0 || list_migrations(dir, &files, err, errlen) < 0)
        goto fail;
    for (int i = 0; i < files.n; i++) {
        const char *params[] = {files.names[i]};
        if (query_value(pg, "SELECT count(*) FROM schema_migrations WHERE name = $1", 1, params,
                        done, sizeof(done), err, errlen) < 0)
            goto fail;
        if (strcmp(done, "0") != 0)
            continue;
        if (drop_for_migration(pg, &dropped, err, errlen) < 0 ||
            run_file(pg, dir, files.names[i], err, errlen) < 0 ||
            record_migration(pg, files.names[i], err, errlen) < 0)
            goto fail;
        ps_log_info("migration applied", "name", files.names[i], NULL);
        applied++;
    }
    files_free(&files);
    return applied;
fail:
    files_free(&files);
    return -1;
}

/* The function files and their SHA-256s. */
typedef struct {
    files_t files;
    char hex[MAX_FILES][65];
} digests_t;

/* Lists the function files of dir and hashes each one. */
static int function_digests(const char *dir, digests_t *d, char *err, size_t errlen)
{
    if (list_functions(dir, &d->files, err, errlen) < 0)
        return -1;
    for (int i = 0; i < d->files.n; i++) {
        char *sql = read_file(dir, d->files.names[i], err, errlen);
        if (sql == NULL)
            return -1;
        ps_hmac_piece_t piece = {sql, strlen(sql)};
        int rc = ps_sha256_hex(&piece, 1, d->hex[i]);
        free(sql);
        if (rc < 0) {
            snprintf(err, errlen, "cannot hash %s/%s", dir, d->files.names[i]);
            return -1;
        }
    }
    return 0;
}

/* Whether schema_functions holds exactly these files, digests and order:
 * 1 yes, 0 no, -1 on failure. */
static int functions_current(ps_pg_t *pg, const digests_t *d, char *err, size_t errlen)
{
    ps_pg_err_t e;
    PGresult *res = ps_pg_query(pg, "SELECT name, sha256 FROM schema_functions ORDER BY position",
                                0, NULL, &e);
    if (res == NULL) {
        snprintf(err, errlen, "%s", e.message);
        return -1;
    }
    int same = PQntuples(res) == d->files.n;
    for (int i = 0; same && i < d->files.n; i++)
        same = strcmp(PQgetvalue(res, i, 0), d->files.names[i]) == 0 &&
               strcmp(PQgetvalue(res, i, 1), d->hex[i]) == 0;
    PQclear(res);
    return same;
}

/* Applies the function files again when any of them changed. Returns how
 * many were applied (0 when all were current), or -1. */
static int apply_functions(ps_pg_t *pg, const char *schemas, char *err, size_t errlen)
{
    char dir[PATH_MAX_LEN];
    digests_t d = {0};
    int applied = -1, current;
    snprintf(dir, sizeof(dir), "%s/functions", schemas);
    if (function_digests(dir, &d, err, errlen) < 0 ||
        (current = functions_current(pg, &d, err, errlen)) < 0)
        goto done;
    if (current) {
        applied = 0;
        goto done;
    }
    if (exec_or_fail(pg, drop_definitions, err, errlen) < 0 ||
        exec_or_fail(pg, "DELETE FROM schema_functions", err, errlen) < 0)
        goto done;
    for (int i = 0; i < d.files.n; i++) {
        char position[16], ignored[8];
        snprintf(position, sizeof(position), "%d", i);
        const char *params[] = {d.files.names[i], d.hex[i], position};
        if (run_file(pg, dir, d.files.names[i], err, errlen) < 0 ||
            query_value(pg, "INSERT INTO schema_functions (name, sha256, position) "
                            "VALUES ($1, $2, $3::integer)", 3, params, ignored, sizeof(ignored),
                        err, errlen) < 0)
            goto done;
    }
    char count[16];
    snprintf(count, sizeof(count), "%d", d.files.n);
    ps_log_info("function files applied", "files", count, NULL);
    applied = d.files.n;
done:
    files_free(&d.files);
    return applied;
}

int ps_migrate(ps_pg_t *pg, const char *dir, char *err, size_t errlen)
{
    int migrations = -1, functions = -1;
    if (exec_or_fail(pg, "BEGIN; SELECT pg_advisory_xact_lock(" LOCK_KEY ");"
                         "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " name text PRIMARY KEY,"
                         " applied_at timestamptz NOT NULL DEFAULT now());"
                         "CREATE TABLE IF NOT EXISTS schema_functions ("
                         " name text PRIMARY KEY,"
                         " sha256 text NOT NULL,"
                         " position integer NOT NULL,"
                         " applied_at timestamptz NOT NULL DEFAULT now())",
                     err, errlen) == 0 &&
        (migrations = apply_migrations(pg, dir, err, errlen)) >= 0 &&
        (functions = apply_functions(pg, dir, err, errlen)) >= 0 &&
        exec_or_fail(pg, "COMMIT", err, errlen) == 0)
        return migrations + functions;
    ps_pg_err_t e;
    ps_pg_exec(pg, "ROLLBACK", &e);
    return -1;
}
