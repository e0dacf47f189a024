/* The schema as --migrate makes it, on databases of their own on the test
 * PostgreSQL: a database of paystream 0.1 (its migrations, filled through its
 * own functions) upgraded without losing a row and ending as a new one is;
 * the function files re-applied whole when one changes, so that a definition
 * removed from them is gone from the database too. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

#define UPGRADE_DIR PS_SOURCE_DIR "/tests/upgrade"

/* The DSN of database name on the test server. */
static void dsn_of(const char *name, char *out, size_t len)
{
    const char *dsn = ts_env("PAYSTREAM_PG_DSN");
    const char *slash = strrchr(dsn, '/');
    snprintf(out, len, "%.*s/%s", (int)(slash - dsn), dsn, name);
}

/* A new empty database; its DSN goes to dsn. */
static void new_database(const char *prefix, char *dsn, size_t len)
{
    char name[64], sql[128];
    ts_unique(name, sizeof(name), prefix);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    ts_sql_exec(sql);
    dsn_of(name, dsn, len);
}

/* The one value sql returns on dsn ("" for NULL or no row). */
static char *psql(const char *dsn, const char *sql)
{
    char *v = ts_sql_at(dsn, sql);
    return v ? v : strdup("");
}

/* paystream-payments --migrate on dsn with the schemas in dir; returns its
 * log. */
static char *migrate(const char *dsn, const char *dir)
{
    int status;
    char *out = ts_sh(&status, "PAYSTREAM_PG_DSN='%s' PAYSTREAM_SCHEMA_DIR='%s' "
                               "'%s/services/payments/paystream-payments' --migrate 2>&1",
                      dsn, dir, getenv("PAYSTREAM_BUILD_DIR"));
    cr_assert_eq(status, 0, "--migrate: %s", out);
    return out;
}

/* What defines a schema, object by object: every table's columns, the
 * constraints, indexes, functions, triggers and views. Partitions are left
 * out: which days have one depends on the rows, not on the definition. */
static char *schema_of(const char *dsn)
{
    return psql(dsn,
        "WITH part AS (SELECT oid, relname::text AS name FROM pg_class WHERE relispartition) "
        "SELECT string_agg(x, chr(10) ORDER BY x) FROM ("
        " SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' ||"
        "        is_nullable || ' ' || coalesce(column_default, '') || ' ' ||"
        "        coalesce(generation_expression, '') AS x"
        " FROM information_schema.columns WHERE table_schema = 'public'"
        "   AND table_name::text NOT IN (SELECT name FROM part)"
        " UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' ||"
        "        pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE connamespace = 'public'::regnamespace AND conrelid <> 0"
        "   AND conrelid NOT IN (SELECT oid FROM part)"
        " UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'"
        "   AND tablename::text NOT IN (SELECT name FROM part)"
        " UNION ALL SELECT 'partitioned ' || partrelid::regclass || ' ' ||"
        "        pg_get_partkeydef(partrelid) FROM pg_partitioned_table"
        " UNION ALL SELECT 'function ' || oid::regprocedure || ' ' || md5(prosrc) FROM pg_proc"
        " WHERE pronamespace = 'public'::regnamespace"
        " UNION ALL SELECT 'trigger ' || tgname || ' ' || tgrelid::regclass FROM pg_trigger"
        " WHERE NOT tgisinternal"
        " UNION ALL SELECT 'view ' || viewname || ' ' || md5(definition) FROM pg_views"
        " WHERE schemaname = 'public'"
        " UNION ALL SELECT 'rule ' || rulename FROM pg_rules WHERE schemaname = 'public') s");
}

/* A query that digests every row of every table as it is now, by the columns
 * the tables have now, so that it can be run again after an upgrade that
 * adds columns. */
static char *snapshot_query(const char *dsn)
{
    return psql(dsn,
        "SELECT string_agg(format('SELECT %L || ''='' || md5(query_to_xml(%L, false, false, '''')::text)',"
        "                         c.table_name, format('SELECT %s FROM %I ORDER BY %s', c.cols,"
        "                                              c.table_name, c.cols)),"
        "                  ' UNION ALL ' ORDER BY c.table_name)"
        " FROM (SELECT k.table_name, string_agg(quote_ident(k.column_name), ', '"
        "                                       ORDER BY k.column_name) AS cols"
        "       FROM information_schema.columns k JOIN information_schema.tables t"
        "         ON t.table_schema = k.table_schema AND t.table_name = k.table_name"
        "       WHERE k.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
        "         AND k.table_name <> 'schema_migrations'"
        "       GROUP BY k.table_name) c");
}

static char *snapshot(const char *dsn, const char *query)
{
    char *sql = NULL;
    cr_assert_gt(asprintf(&sql, "SELECT string_agg(s, ' ' ORDER BY s) FROM (%s) x(s)", query), 0);
    char *out = psql(dsn, sql);
    free(sql);
    return out;
}

Test(schema, a_database_of_paystream_0_1_is_upgraded_without_losing_a_row)
{
    char old[256], fresh[256];
    new_database("old_", old, sizeof(old));
    new_database("fresh_", fresh, sizeof(fresh));
    int status;
    char *out = ts_sh(&status, "zcat '%s/paystream-0.1-schema.sql.gz' | "
                               "psql -X -q -v ON_ERROR_STOP=1 '%s' >/dev/null 2>&1 && "
                               "psql -X -q -v ON_ERROR_STOP=1 '%s' -f '%s/fill-0.1.sql' >/dev/null",
                      UPGRADE_DIR, old, old, UPGRADE_DIR);
    cr_assert_eq(status, 0, "the 0.1 database: %s", out);
    free(out);
    char *rows = psql(old, "SELECT (SELECT count(*) FROM payments) || '/' || "
                           "(SELECT count(*) FROM outbox) || '/' || (SELECT count(*) FROM notifications)");
    cr_assert_str_eq(rows, "3/6/7", "0.1's functions filled it");
    free(rows);
    char *query = snapshot_query(old);
    char *before = snapshot(old, query);

    char *log = migrate(old, PS_SOURCE_DIR "/schemas");
    cr_assert(strstr(log, "brought to the baseline"), "%s", log);
    free(log);
    char *after = snapshot(old, query);
    cr_assert_str_eq(after, before, "every row of 0.1 is still there, unchanged");

    free(migrate(fresh, PS_SOURCE_DIR "/schemas"));
    char *a = schema_of(old), *b = schema_of(fresh);
    cr_assert_str_eq(a, b, "the upgraded database is defined as a new one is");

    /* It works as a new one does: the rules of today apply to 0.1's payment. */
    char *outcomes = psql(old,
        "SELECT string_agg(outcome, ',' ORDER BY ord) FROM (SELECT '["
        "{\"event_id\":\"evt_up_9\",\"type\":\"charge.refunded\",\"created\":1700000100,"
        "\"payload\":{},\"payment_intent\":\"pi_up_1\",\"intent_status\":\"completed\","
        "\"amount\":2500,\"currency\":\"EUR\",\"captured\":2500,\"refunded\":2500,"
        "\"charge_id\":\"ch_up_1\",\"refunds\":[{\"id\":\"re_up_9\",\"amount\":2500,"
        "\"currency\":\"EUR\",\"status\":\"succeeded\"}]},"
        "{\"event_id\":\"evt_up_10\",\"type\":\"charge.refunded\",\"created\":1700000101,"
        "\"payload\":{},\"connect\":true,\"account\":\"acct_up_1\","
        "\"payment_intent\":\"pi_up_2\",\"currency\":\"USD\"}]'::jsonb AS b) s, "
        "ps_apply_stripe_events(s.b, " TS_STRIPE_PAYLOADS("s.b") ")");
    cr_assert_str_eq(outcomes, "applied,account_mismatch");
    char *order = psql(old, "SELECT status FROM orders WHERE id = 'ord_up_1'");
    cr_assert_str_eq(order, "refunded");
    char *again = migrate(old, PS_SOURCE_DIR "/schemas");
    cr_assert(strstr(again, "\"applied\":\"0\""), "a second --migrate has nothing to do: %s", again);
    free(again), free(order), free(outcomes), free(a), free(b), free(after), free(before);
    free(query);
}

Test(schema, a_changed_function_file_is_applied_again_whole)
{
    char db[256];
    new_database("defs_", db, sizeof(db));
    int status;
    char *dir = ts_sh(&status, "d=$(mktemp -d) && cp -r '%s/schemas/.' \"$d\" && printf %%s \"$d\"",
                      PS_SOURCE_DIR);
    cr_assert_eq(status, 0);
    free(migrate(db, dir));
    char *before = psql(db, "SELECT sha256 FROM schema_functions WHERE name = 'notifications.sql'");

    /* Renamed in its file: the old name must not linger in the database. */
    free(ts_sh(&status, "sed -i 's/ps_notification_done(/ps_notification_finish(/' "
                        "'%s/functions/notifications.sql'", dir));
    cr_assert_eq(status, 0);
    char *log = migrate(db, dir);
    cr_assert(strstr(log, "function files applied"), "%s", log);
    char *after = psql(db, "SELECT sha256 FROM schema_functions WHERE name = 'notifications.sql'");
    cr_assert_str_neq(after, before);
    char *names = psql(db, "SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc "
                           "WHERE proname IN ('ps_notification_done', 'ps_notification_finish')");
    cr_assert_str_eq(names, "ps_notification_finish");
    char *views = psql(db, "SELECT count(*) FROM pg_views WHERE viewname LIKE 'dash\\_%'");
    cr_assert_str_eq(views, "7", "views and triggers are made again with the functions");
    char *triggers = psql(db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal");
    cr_assert_str_eq(triggers, "4");
    free(ts_sh(&status, "rm -rf '%s'", dir));
    free(triggers), free(views), free(names), free(after), free(log), free(before), free(dir);
}
