/* The operators' tools of paystream-admin against the running system:
 * dead letters listed, shown and sent back to their topic, where the
 * worker applies each once. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support.h"

/* Runs paystream-admin with args; returns its output, *status its exit status. */
static char *admin(int *status, const char *args)
{
    return ts_sh(status, "'%s/services/admin/paystream-admin' %s 2>&1",
                 getenv("PAYSTREAM_BUILD_DIR"), args);
}

/* Whether a line of a dlq list starts with dead letter id. */
static int listed(const char *out, const char *id)
{
    for (const char *line = out; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, id, strlen(id)) == 0 && line[strlen(id)] == '\t')
            return 1;
    }
    return 0;
}

/* A Stripe event that the database refuses until the test lets it (a check
 * on stripe_event_log that names it) is dead-lettered; once the check is
 * gone, a redrive applies it, once. */
Test(operate, a_dead_letter_is_listed_shown_and_redriven_once)
{
    char evt[64], check[256], sql[512];
    ts_unique(evt, sizeof(evt), "evt_poison_");
    snprintf(check, sizeof(check), "poison_%s", evt + 11);
    snprintf(sql, sizeof(sql), "ALTER TABLE stripe_event_log ADD CONSTRAINT %s CHECK (id <> '%s')",
             check, evt);
    ts_sql_exec(sql);
    char *event = ts_succeeded_event(evt, "pi_poison_unknown", 500);
    ts_http_t r = ts_post_signed("/webhooks/stripe", event, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM dead_letters WHERE " TS_LETTER_HOLDS("$1"),
                          evt, NULL),
              "the refused event is dead-lettered");
    char *id = ts_sql("SELECT id FROM dead_letters WHERE " TS_LETTER_HOLDS("$1"), evt, NULL);
    snprintf(sql, sizeof(sql), "ALTER TABLE stripe_event_log DROP CONSTRAINT %s", check);
    ts_sql_exec(sql);

    int status;
    char args[128];
    char *out = admin(&status, "dlq list");
    cr_assert_eq(status, 0, "%s", out);
    cr_assert(strstr(out, "paystream.stripe.events") && strstr(out, "database refused"), "%s", out);
    free(out);
    snprintf(args, sizeof(args), "dlq show %s", id);
    out = admin(&status, args);
    cr_assert_eq(status, 0, "%s", out);
    cr_assert(strstr(out, evt) && strstr(out, "\"message_id\""), "payload and headers: %s", out);
    free(out);

    snprintf(args, sizeof(args), "dlq redrive %s", id);
    out = admin(&status, args);
    cr_assert_eq(status, 0, "%s", out);
    free(out);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", evt, NULL),
              "the redriven event is applied");
    out = admin(&status, args);
    cr_assert_neq(status, 0, "a second redrive needs --again: %s", out);
    cr_assert(strstr(out, "--again"), "%s", out);
    free(out);
    snprintf(args, sizeof(args), "dlq redrive %s --again", id);
    out = admin(&status, args);
    cr_assert_eq(status, 0, "%s", out);
    free(out);
    /* Applied once: the message comes back as a duplicate of itself. */
    char *message_id = ts_sql("SELECT message_id FROM dead_letters WHERE id = $1::bigint", id, NULL);
    cr_assert_not_null(message_id);
    struct timespec pause = {2, 0};
    nanosleep(&pause, NULL);
    char *rows = ts_sql("SELECT count(*) FROM stripe_events WHERE id = $1", evt, NULL);
    cr_assert_str_eq(rows, "1");
    char *letters = ts_sql("SELECT count(*) FROM dead_letters WHERE "
                           TS_LETTER_HOLDS("$1"), evt, NULL);
    cr_assert_str_eq(letters, "1", "nothing dead-lettered again");
    out = admin(&status, "dlq list");
    cr_assert_not(listed(out, id), "a redriven letter leaves the default list: %s", out);
    free(out);
    out = admin(&status, "dlq list --all");
    cr_assert(listed(out, id), "%s", out);
    free(out);
    out = admin(&status, "dlq redrive 999999999");
    cr_assert_neq(status, 0);
    cr_assert(strstr(out, "no dead letter"), "%s", out);
    free(out);
    free(rows), free(letters), free(message_id), free(id), free(event);
}

/* After a database restored from an older backup, say, a replay of the
 * range publishes it again and the workers re-apply what was lost; what
 * they still have is a duplicate. */
Test(operate, a_replay_brings_back_what_the_database_lost_and_nothing_twice)
{
    char since[32], lost[64], kept[64], args[256];
    time_t t0 = time(NULL) - 2;
    strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t0));
    ts_unique(lost, sizeof(lost), "evt_lost_");
    ts_unique(kept, sizeof(kept), "evt_kept_");
    const char *const evts[] = {lost, kept};
    for (int i = 0; i < 2; i++) {
        char *event = ts_succeeded_event(evts[i], "pi_replayed_unknown", 700);
        ts_http_t r = ts_post_signed("/webhooks/stripe", event, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
        cr_assert_eq(r.status, 200, "%s", r.body);
        ts_http_free(&r);
        free(event);
        cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", evts[i], NULL));
    }
    free(ts_sql("DELETE FROM stripe_events WHERE id = $1 RETURNING id", lost, NULL));

    int status;
    /* The devbroker (librdkafka's mock cluster) keeps no time index: there
     * the range is given by offset, from the start of this run's topic. */
    int mock = strcmp(ts_env("PAYSTREAM_KAFKA_MODE"), "devbroker") == 0;
    snprintf(args, sizeof(args), "replay paystream.stripe.events --from %s", mock ? "0" : since);
    char *out = admin(&status, args);
    cr_assert_eq(status, 0, "%s", out);
    cr_assert(strstr(out, "replayed ") && !strstr(out, "replayed 0 "), "%s", out);
    free(out);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", lost, NULL),
              "the lost event is applied again");
    char *n = ts_sql("SELECT count(*) FROM stripe_events WHERE id = $1", kept, NULL);
    cr_assert_str_eq(n, "1");
    free(n);

    out = admin(&status, "replay paystream.stripe.events --from 2020-01-01T00:00:00Z");
    cr_assert_eq(status, 2, "older than the dedupe logs: %s", out);
    cr_assert(strstr(out, "--force"), "%s", out);
    free(out);
    out = admin(&status, "replay paystream.stripe.events --from yesterday");
    cr_assert_eq(status, 2, "%s", out);
    free(out);
    out = admin(&status, "replay paystream.no-such-topic --from 0");
    cr_assert_eq(status, 2, "%s", out);
    cr_assert(strstr(out, "not one of paystream's topics"), "%s", out);
    free(out);
}

/* Gives the fake Stripe an event it "has" (for GET /v1/events). */
static void stripe_has(const char *event)
{
    int status;
    free(ts_sh(&status, "curl -fsS -X POST -d '%s' '%s/_events'", event, ts_env("STRIPE_API_BASE")));
    cr_assert_eq(status, 0);
}

/* After an outage longer than Stripe's retries, reconcile lists Stripe's
 * events page by page and feeds the ones paystream never got through the
 * pipeline, once: run again, it feeds nothing. */
Test(operate, reconcile_feeds_what_stripe_has_and_paystream_missed_once)
{
    char since[32], known[64], lost1[64], lost2[64];
    time_t t0 = time(NULL) - 60;
    strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t0));
    ts_unique(known, sizeof(known), "evt_known_");
    ts_unique(lost1, sizeof(lost1), "evt_lost1_");
    ts_unique(lost2, sizeof(lost2), "evt_lost2_");
    char *e_known = ts_succeeded_event(known, "pi_reconciled_a", 800);
    char *e_lost1 = ts_succeeded_event(lost1, "pi_reconciled_b", 900);
    char *e_lost2 = ts_succeeded_event(lost2, "pi_reconciled_c", 1000);
    ts_http_t r = ts_post_signed("/webhooks/stripe", e_known, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", known, NULL));
    stripe_has(e_lost1);
    stripe_has(e_known);
    stripe_has(e_lost2);

    int status;
    char args[128];
    snprintf(args, sizeof(args), "reconcile --since %s --page 2", since);
    char *out = admin(&status, args);
    cr_assert_eq(status, 0, "%s", out);
    cr_assert(strstr(out, "3 events at Stripe, 1 already applied, 2 fed to the pipeline, 0 not fed"),
              "%s", out);
    cr_assert(strstr(out, "reconcile: 2 events listed"), "a progress line a page: %s", out);
    free(out);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", lost1, NULL));
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", lost2, NULL));
    out = admin(&status, args);
    cr_assert_eq(status, 0, "%s", out);
    cr_assert(strstr(out, "3 events at Stripe, 3 already applied, 0 fed"), "%s", out);
    free(out);
    out = admin(&status, "reconcile --since last-week");
    cr_assert_eq(status, 2, "%s", out);
    free(out);
    free(e_known), free(e_lost1), free(e_lost2);
}
