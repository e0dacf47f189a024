/* Retention (schemas/functions/retention.sql): the logs lose whole
 * partitions, never what a dedupe needs inside Stripe's retry window; an
 * Idempotency-Key answers for a day and, once expired, never makes a
 * gateway call again. Time is moved by running ps_retention_run as of a
 * later moment, as the payments worker runs it as of now. Each test puts
 * today's partitions back before it ends. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "support.h"

static void post(const char *body)
{
    ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
}

/* Posts an event of a type paystream only records, keyed by pi: once it is
 * stored, every earlier event of pi has been applied. */
static void wait_behind(const char *pi)
{
    char evt[64], obj[256];
    ts_unique(evt, sizeof(evt), "evt_marker_");
    snprintf(obj, sizeof(obj), "{\"id\":\"ch_%s\",\"object\":\"charge\",\"payment_intent\":\"%s\"}",
             pi + 3, pi);
    char *body = ts_event(evt, "charge.updated", time(NULL), obj);
    post(body);
    free(body);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", evt, NULL));
}

/* ps_retention_run as of now + later, keeping logs days and commands hours;
 * returns its actions as "table:action" joined by commas. */
static char *retention_at(const char *later, int days, int hours)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(string_agg(tbl || ':' || action, ',' ORDER BY tbl, action), '') "
             "FROM ps_retention_run(now() + interval '%s', %d, %d)", later, days, hours);
    char *v = ts_sql(sql, NULL);
    cr_assert(v != NULL);
    return v;
}

static void restore_today(void)
{
    free(retention_at("0 s", 30, 24));
}

static char *today_partition(const char *table)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT '%s_p' || to_char(ps_utc_day(now()), 'YYYYMMDD')", table);
    return ts_sql(sql, NULL);
}

Test(retention, a_redelivery_inside_stripes_retry_window_is_still_a_duplicate)
{
    char evt[64], pi[64];
    ts_unique(evt, sizeof(evt), "evt_keep_");
    ts_unique(pi, sizeof(pi), "pi_keep_");
    char *body = ts_succeeded_event(evt, pi, 1234);
    post(body);
    cr_assert(ts_wait_sql("completed", "SELECT status FROM payments WHERE gateway_payment_id = $1",
                          pi, NULL));

    /* Stripe's last retry of the event comes up to three days after it was
     * created: the shortest retention allowed, run then, keeps it. */
    free(retention_at("3 days 23 hours", 4, 24));
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", evt, NULL));
    post(body);
    wait_behind(pi);
    char *once = ts_sql("SELECT p.version || '/' || (SELECT count(*) FROM transactions t "
                        "WHERE t.payment_id = p.id) FROM payments p WHERE gateway_payment_id = $1",
                        pi, NULL);
    cr_assert_str_eq(once, "1/1", "the redelivery moved the payment or the ledger again");

    /* A day later nothing needs it: its whole partition goes, the payment
     * stays. */
    char *part = today_partition("stripe_event_log");
    char *acts = retention_at("5 days", 4, 24);
    cr_assert(strstr(acts, "stripe_event_log:partitions_dropped"), "%s", acts);
    char *gone = ts_sql("SELECT to_regclass($1) IS NULL", part, NULL);
    cr_assert_str_eq(gone, "t", "%s was not dropped", part);
    char *left = ts_sql("SELECT count(*) FROM stripe_events WHERE id = $1", evt, NULL);
    cr_assert_str_eq(left, "0");
    char *kept = ts_sql("SELECT status FROM payments WHERE gateway_payment_id = $1", pi, NULL);
    cr_assert_str_eq(kept, "completed");

    /* Events of a day without a partition are kept in the default one and
     * move into the day's partition when retention makes it. */
    char evt2[64], pi2[64];
    ts_unique(evt2, sizeof(evt2), "evt_default_");
    ts_unique(pi2, sizeof(pi2), "pi_default_");
    char *body2 = ts_succeeded_event(evt2, pi2, 77);
    post(body2);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_event_log_default WHERE id = $1", evt2,
                          NULL));
    restore_today();
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE id = $1", part);
    char *moved = ts_sql(sql, evt2, NULL);
    cr_assert_str_eq(moved, "1", "the event did not move into the new partition");
    free(body), free(body2), free(once), free(part), free(acts), free(gone), free(left);
    free(kept), free(moved);
}

Test(retention, the_shortest_retention_is_stripes_retry_window_and_a_day)
{
    char *err = ts_sh(NULL, "psql -X -q '%s' -c 'SELECT ps_retention_run(now(), 3, 24)' 2>&1",
                      ts_env("PAYSTREAM_PG_DSN"));
    cr_assert(strstr(err, "kept 4 days at least"), "%s", err);
    free(err);
    int status;
    char *out = ts_sh(&status, "PAYSTREAM_LOG_RETENTION_DAYS=3 '%s/services/payments/"
                               "paystream-payments' 2>&1", ts_env("PAYSTREAM_BUILD_DIR"));
    cr_assert_eq(status, 2, "%s", out);
    cr_assert(strstr(out, "PAYSTREAM_LOG_RETENTION_DAYS"), "%s", out);
    free(out);
}

/* The fake Stripe API's refund requests for intent pi. */
static size_t refunds_sent(const char *pi)
{
    char *out = ts_sh(NULL, "curl -fsS %s/_requests", ts_env("STRIPE_API_BASE"));
    json_t *all = json_loads(out, 0, NULL), *r;
    free(out);
    cr_assert(json_is_array(all));
    size_t i, n = 0;
    json_array_foreach(all, i, r) {
        const char *v = json_string_value(json_object_get(json_object_get(r, "form"),
                                                          "payment_intent"));
        const char *path = json_string_value(json_object_get(r, "path"));
        n += v && path && strcmp(v, pi) == 0 && strcmp(path, "/v1/refunds") == 0;
    }
    json_decref(all);
    return n;
}

static ts_http_t with_key(const char *method, const char *path, const char *user,
                          const char *key, const char *body)
{
    char header[160];
    snprintf(header, sizeof(header), "Idempotency-Key: %s", key);
    const char *headers[] = {"Prefer: wait=30", header, NULL};
    return ts_api(method, path, user, headers, body);
}

Test(retention, an_expired_idempotency_key_never_makes_a_second_refund_or_order)
{
    char user[64], key[64], order_key[64], path[160];
    ts_unique(user, sizeof(user), "keeper_");
    ts_unique(key, sizeof(key), "refund-");
    ts_unique(order_key, sizeof(order_key), "order-");
    static const char order_body[] = "{\"currency\":\"usd\",\"items\":[{\"product_id\":"
                                     "\"sku_kettle\",\"quantity\":1,\"unit_price\":\"45.00\"}]}";
    ts_http_t r = with_key("POST", "/api/v1/orders", user, order_key, order_body);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *order = ts_json(r.body, "id");
    ts_http_free(&r);
    char body[200];
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"45.00\",\"currency\":\"usd\"}",
             order);
    char *payment = ts_call(user, "POST", "/api/v1/payments", body, 201, "id");
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    free(ts_call(user, "POST", path, "{\"payment_method\":\"pm_card_visa\"}", 200, NULL));
    char *pi = ts_sql("SELECT gateway_payment_id FROM payments WHERE id = $1", payment, NULL);

    snprintf(path, sizeof(path), "/api/v1/payments/%s/refund", payment);
    r = with_key("POST", path, user, key, "{\"amount\":\"5.00\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *refund = ts_json(r.body, "refund.id");
    ts_http_free(&r);
    /* Within the day: the first answer again, nothing sent again. */
    r = with_key("POST", path, user, key, "{\"amount\":\"5.00\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *again = ts_json(r.body, "refund.id");
    cr_assert_str_eq(again, refund);
    ts_http_free(&r);
    cr_assert_eq(refunds_sent(pi), 1);

    /* Two days on, the commands of today are gone with their partition. */
    char *acts = retention_at("49 hours", 30, 24);
    cr_assert(strstr(acts, "commands:partitions_dropped"), "%s", acts);
    char *left = ts_sql("SELECT count(*) FROM commands WHERE actor = $1", user, NULL);
    cr_assert_str_eq(left, "0");

    /* The same key now finds its gateway call finished: 409, no call. */
    r = with_key("POST", path, user, key, "{\"amount\":\"5.00\"}");
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert(strstr(r.body, "\"idempotency_key_expired\""), "%s", r.body);
    ts_http_free(&r);
    cr_assert_eq(refunds_sent(pi), 1, "an expired key refunded again");
    char *refunded = ts_sql("SELECT refunded_minor FROM payments WHERE id = $1", payment, NULL);
    cr_assert_str_eq(refunded, "500");

    /* And an order's key finds its order: 409, no second order. */
    r = with_key("POST", "/api/v1/orders", user, order_key, order_body);
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert(strstr(r.body, "\"idempotency_key_expired\""), "%s", r.body);
    ts_http_free(&r);
    char *orders = ts_sql("SELECT count(*) FROM orders WHERE actor = $1", user, NULL);
    cr_assert_str_eq(orders, "1");
    restore_today();
    free(order), free(payment), free(pi), free(refund), free(again), free(acts), free(left);
    free(refunded), free(orders);
}

Test(retention, the_payments_worker_runs_it_at_start)
{
    char *ahead = ts_sql("SELECT 'stripe_event_log_p' || to_char(ps_utc_day(now()) + 2, 'YYYYMMDD')",
                         NULL);
    char sql[160];
    snprintf(sql, sizeof(sql), "DROP TABLE %s", ahead);
    ts_sql_exec(sql);
    cr_assert_eq(ts_svc("restart", "payments"), 0);
    cr_assert(ts_wait_sql("t", "SELECT to_regclass($1) IS NOT NULL", ahead, NULL),
              "the worker did not make %s again", ahead);
    /* Every partition of the log, old and new, compresses payloads with lz4,
     * those as sent and those stored as jsonb before. */
    char *pglz = ts_sql("SELECT coalesce(string_agg(c.relname || '.' || a.attname, ','), '') "
                        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "JOIN pg_attribute a ON a.attrelid = c.oid "
                        "AND a.attname IN ('body', 'payload') "
                        "WHERE i.inhparent = 'stripe_event_log'::regclass "
                        "AND a.attcompression <> 'l'",
                        NULL);
    cr_assert_str_eq(pglz, "", "partitions without lz4: %s", pglz);
    free(ahead), free(pglz);
}
