/* What must hold when parts fail: the broker stops answering, the schema
 * is not what the worker expects, a worker is killed in the middle of a
 * stream. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "paystream/util.h"
#include "support.h"

Test(failures, broker_not_answering_makes_the_intake_answer_503)
{
    char evt[64], pi[64];
    ts_unique(evt, sizeof(evt), "evt_down_");
    ts_unique(pi, sizeof(pi), "pi_down_");
    char *body = ts_succeeded_event(evt, pi, 100);
    cr_assert_eq(ts_svc("pause", "kafka"), 0);
    int64_t started = ps_mono_ms();
    ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    int64_t took = ps_mono_ms() - started;
    cr_assert_eq(ts_svc("resume", "kafka"), 0);
    cr_assert_eq(r.status, 503, "with the broker stopped: %ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"code\":\"kafka_unavailable\""), "%s", r.body);
    cr_assert_lt(took, 30000, "503 comes within the publish bound, not at the client's timeout");
    ts_http_free(&r);

    /* Stripe retries a 503: once the broker is back the retry is taken and
     * applied, once, even if the first attempt reached the log after all. */
    int64_t deadline = ps_mono_ms() + TS_WAIT_MS;
    do {
        r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
        if (r.status == 200)
            break;
        ts_http_free(&r);
        usleep(200 * 1000);
    } while (ps_mono_ms() < deadline);
    cr_assert_eq(r.status, 200, "after the broker is back: %ld %s", r.status, r.body);
    ts_http_free(&r);
    cr_assert(ts_wait_sql("completed", "SELECT status FROM payments WHERE gateway_payment_id = $1", pi, NULL));
    char *v = ts_sql("SELECT version FROM payments WHERE gateway_payment_id = $1", pi, NULL);
    cr_assert_str_eq(v, "1");
    free(v);
    free(body);
}

Test(failures, a_schema_the_worker_does_not_expect_stalls_it_without_dead_letters)
{
    char evt[64], pi[64];
    ts_unique(evt, sizeof(evt), "evt_schema_");
    ts_unique(pi, sizeof(pi), "pi_schema_");
    char *body = ts_succeeded_event(evt, pi, 700);
    /* As if a migration had not been applied. */
    ts_sql_exec("ALTER FUNCTION ps_apply_stripe_batch(jsonb, text[]) RENAME TO ps_apply_stripe_batch_away");
    ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    sleep(3);
    char *dead = ts_sql("SELECT count(*) FROM dead_letters WHERE " TS_LETTER_HOLDS("$1"),
                        evt, NULL);
    char *seen = ts_sql("SELECT count(*) FROM stripe_events WHERE id = $1", evt, NULL);
    ts_sql_exec("ALTER FUNCTION ps_apply_stripe_batch_away(jsonb, text[]) RENAME TO ps_apply_stripe_batch");
    cr_assert_str_eq(dead, "0", "the event was dead-lettered for the database's fault");
    cr_assert_str_eq(seen, "0", "applied without its function?");
    /* Fixed: the worker goes on where it stopped. */
    cr_assert(ts_wait_sql("completed", "SELECT status FROM payments WHERE gateway_payment_id = $1",
                          pi, NULL), "not applied once the schema was back");
    free(dead);
    free(seen);
    free(body);
}

Test(failures, a_full_disk_stalls_the_worker_loudly_and_skips_nothing)
{
    char evt[64], pi[64];
    ts_unique(evt, sizeof(evt), "evt_full_");
    ts_unique(pi, sizeof(pi), "pi_full_");
    char *body = ts_succeeded_event(evt, pi, 900);
    /* What PostgreSQL answers when its disk is full (SQLSTATE 53100). */
    ts_sql_exec("CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' "
                "USING ERRCODE = 'disk_full'; END $$");
    ts_sql_exec("CREATE TRIGGER test_disk_full BEFORE INSERT ON stripe_event_log "
                "FOR EACH ROW EXECUTE FUNCTION test_disk_full()");
    ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    int status;
    char *warned = NULL;
    for (int i = 0; i < 100; i++) {
        free(warned);
        warned = ts_sh(&status, "grep -c '\"sqlstate\":\"53100\"' '%s/logs/payments.log' || true",
                       ts_env("PAYSTREAM_RUN_DIR"));
        if (atoi(warned) > 0)
            break;
        usleep(100 * 1000);
    }
    char *dead = ts_sql("SELECT count(*) FROM dead_letters WHERE " TS_LETTER_HOLDS("$1"),
                        evt, NULL);
    /* The table before its partitions, in the order the worker's retries
     * lock them: dropping the trigger alone could deadlock with them. */
    ts_sql_exec("BEGIN; LOCK TABLE stripe_event_log IN ACCESS EXCLUSIVE MODE; "
                "DROP TRIGGER test_disk_full ON stripe_event_log; COMMIT");
    ts_sql_exec("DROP FUNCTION test_disk_full()");
    cr_assert_gt(atoi(warned), 0, "no warning with the SQLSTATE in the worker's log");
    cr_assert_str_eq(dead, "0", "the event was dead-lettered for the disk's fault");
    /* Room again: the worker goes on where it stalled. */
    cr_assert(ts_wait_sql("completed", "SELECT status FROM payments WHERE gateway_payment_id = $1",
                          pi, NULL), "not applied once the disk had room");
    free(warned);
    free(dead);
    free(body);
}

#define STREAM 400

typedef struct {
    char prefix[48];
    int posted_ok;
} stream_t;

static void *post_stream(void *arg)
{
    stream_t *s = arg;
    for (int i = 0; i < STREAM; i++) {
        char evt[96], pi[96];
        snprintf(evt, sizeof(evt), "evt_%s_%d", s->prefix, i);
        snprintf(pi, sizeof(pi), "pi_%s_%d", s->prefix, i);
        char *body = ts_succeeded_event(evt, pi, 100 + i);
        ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
        s->posted_ok += r.status == 200;
        ts_http_free(&r);
        free(body);
    }
    return NULL;
}

Test(failures, worker_killed_mid_stream_applies_each_event_exactly_once)
{
    stream_t s = {.posted_ok = 0};
    ts_unique(s.prefix, sizeof(s.prefix), "kill");
    char like[64];
    snprintf(like, sizeof(like), "pi_%s_%%", s.prefix);
    pthread_t poster;
    pthread_create(&poster, NULL, post_stream, &s);
    /* Kill the worker once it has applied part of the stream. */
    int64_t deadline = ps_mono_ms() + TS_WAIT_MS;
    char *applied = NULL;
    do {
        free(applied);
        usleep(20 * 1000);
        applied = ts_sql("SELECT count(*) FROM payments WHERE gateway_payment_id LIKE $1", like, NULL);
    } while (atoi(applied) < STREAM / 4 && ps_mono_ms() < deadline);
    free(applied);
    cr_assert_eq(ts_svc("kill", "payments"), 0);
    usleep(300 * 1000);
    cr_assert_eq(ts_svc("start", "payments"), 0);
    pthread_join(poster, NULL);
    cr_assert_eq(s.posted_ok, STREAM, "every webhook answered 200");

    char count[16];
    snprintf(count, sizeof(count), "%d", STREAM);
    cr_assert(ts_wait_sql(count, "SELECT count(*) FROM payments WHERE gateway_payment_id LIKE $1", like, NULL));
    char *once = ts_sql("SELECT count(*) FROM payments WHERE gateway_payment_id LIKE $1 AND version = 1 "
                        "AND status = 'completed'", like, NULL);
    cr_assert_str_eq(once, count, "each payment moved exactly once");
    char *ledger = ts_sql("SELECT count(*) || '/' || sum(t.amount_minor) FROM transactions t "
                          "JOIN payments p ON p.id = t.payment_id WHERE p.gateway_payment_id LIKE $1",
                          like, NULL);
    char expect[48];
    snprintf(expect, sizeof(expect), "%d/%d", STREAM, STREAM * 100 + STREAM * (STREAM - 1) / 2);
    cr_assert_str_eq(ledger, expect, "one charge per payment, amounts intact");
    free(once);
    free(ledger);
}

Test(startup, a_bad_setting_stops_a_service_with_the_variable_named)
{
    int status;
    char *out = ts_sh(&status, "PAYSTREAM_HTTP_PORT=99999 '%s/services/intake/paystream-intake' 2>&1",
                      ts_env("PAYSTREAM_BUILD_DIR"));
    cr_assert_eq(status, 2, "%s", out);
    cr_assert(strstr(out, "PAYSTREAM_HTTP_PORT=\"99999\" is invalid: expected an integer from 1 to 65535"),
              "%s", out);
    free(out);
    out = ts_sh(&status, "STRIPE_WEBHOOK_SECRET=' , ' PAYSTREAM_HTTP_PORT=1 "
                "'%s/services/intake/paystream-intake' 2>&1", ts_env("PAYSTREAM_BUILD_DIR"));
    cr_assert_eq(status, 2, "%s", out);
    cr_assert(strstr(out, "STRIPE_WEBHOOK_SECRET: no secret given"), "%s", out);
    cr_assert_null(strstr(out, "whsec_"), "secrets never printed: %s", out);
    free(out);
    out = ts_sh(&status, "PAYSTREAM_BATCH_MAX=0 '%s/services/payments/paystream-payments' 2>&1",
                ts_env("PAYSTREAM_BUILD_DIR"));
    cr_assert_eq(status, 2, "%s", out);
    cr_assert(strstr(out, "PAYSTREAM_BATCH_MAX"), "%s", out);
    free(out);
}
