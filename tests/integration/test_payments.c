/* Stripe payment events through the intake, applied by paystream-payments,
 * observed in PostgreSQL. Every test uses its own payment intents. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "paystream/kafka.h"
#include "support.h"

/* Posts an event about object_json and asserts the intake took it; writes the
 * event id into evt (64 bytes). */
static void post(char *evt, const char *type, int64_t created, const char *object_json)
{
    ts_unique(evt, 64, "evt_");
    char *body = ts_event(evt, type, created, object_json);
    ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s: %s", type, r.body);
    ts_http_free(&r);
    free(body);
}

static void wait_event(const char *evt)
{
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stripe_events WHERE id = $1", evt, NULL),
              "event %s was not applied", evt);
}

static char *intent(const char *pi, long amount, const char *status, const char *extra)
{
    char *s = NULL;
    if (asprintf(&s,
                 "{\"id\":\"%s\",\"object\":\"payment_intent\",\"amount\":%ld,\"currency\":\"usd\","
                 "\"status\":\"%s\",\"amount_received\":%ld,\"latest_charge\":\"ch_%s\"%s}",
                 pi, amount, status, strcmp(status, "succeeded") == 0 ? amount : 0L, pi + 3,
                 extra ? extra : "") < 0)
        cr_assert_fail("oom");
    return s;
}

static char *payment_field(const char *field, const char *pi)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT %s::text FROM payments WHERE gateway_payment_id = $1", field);
    return ts_sql(sql, pi, NULL);
}

static void expect_payment(const char *pi, const char *field, const char *expect)
{
    char *v = payment_field(field, pi);
    cr_assert(v != NULL, "no payment for %s", pi);
    cr_assert_str_eq(v, expect, "payments.%s of %s", field, pi);
    free(v);
}

Test(payments, succeeded_event_lands_as_completed_with_its_amount)
{
    char pi[64], evt[64];
    ts_unique(pi, sizeof(pi), "pi_");
    char *obj = intent(pi, 2999, "succeeded", ",\"metadata\":{\"order_id\":\"ord_77\"}");
    post(evt, "payment_intent.succeeded", time(NULL), obj);
    cr_assert(ts_wait_sql("completed", "SELECT status FROM payments WHERE gateway_payment_id = $1", pi, NULL));
    expect_payment(pi, "amount_minor", "2999");
    expect_payment(pi, "currency", "USD");
    expect_payment(pi, "captured_minor", "2999");
    expect_payment(pi, "gateway_status", "succeeded");
    /* An intent paystream did not make claims no order, whatever its
     * metadata says. */
    expect_payment(pi, "(order_id IS NULL)", "true");
    char *ledger = ts_sql("SELECT string_agg(t.type || ':' || t.amount_minor, ',') FROM transactions t "
                          "JOIN payments p ON p.id = t.payment_id WHERE p.gateway_payment_id = $1", pi, NULL);
    cr_assert_str_eq(ledger, "charge:2999");
    char *msg = ts_sql("SELECT message_id FROM stripe_events WHERE id = $1", evt, NULL);
    cr_assert(msg && strlen(msg) == 36, "the event keeps its envelope message id");
    free(ledger);
    free(msg);
    free(obj);
}

Test(payments, same_event_delivered_twice_changes_nothing_the_second_time)
{
    char pi[64], evt[64], marker[64];
    ts_unique(pi, sizeof(pi), "pi_");
    ts_unique(evt, sizeof(evt), "evt_dup_");
    char *obj = intent(pi, 1500, "succeeded", NULL);
    char *body = ts_event(evt, "payment_intent.succeeded", time(NULL), obj);
    for (int i = 0; i < 2; i++) {
        ts_http_t r = ts_post_signed("/webhooks/stripe", body, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
        cr_assert_eq(r.status, 200, "%s", r.body);
        ts_http_free(&r);
    }
    /* A later event of the same payment is ordered after both copies. */
    char *older = intent(pi, 1500, "requires_payment_method", NULL);
    post(marker, "payment_intent.created", time(NULL) - 60, older);
    wait_event(marker);
    expect_payment(pi, "version", "1");
    expect_payment(pi, "status", "completed");
    char *n = ts_sql("SELECT count(*) FROM transactions t JOIN payments p ON p.id = t.payment_id "
                     "WHERE p.gateway_payment_id = $1", pi, NULL);
    cr_assert_str_eq(n, "1", "one charge in the ledger");
    free(n);
    free(obj);
    free(older);
    free(body);
}

Test(payments, processing_after_succeeded_does_not_regress)
{
    char pi[64], e1[64], e2[64], e3[64];
    ts_unique(pi, sizeof(pi), "pi_");
    int64_t now = time(NULL);
    char *done = intent(pi, 800, "succeeded", NULL), *proc = intent(pi, 800, "processing", NULL);
    post(e1, "payment_intent.succeeded", now, done);
    post(e2, "payment_intent.processing", now - 5, proc); /* older */
    post(e3, "payment_intent.processing", now, proc);     /* same second */
    wait_event(e3);
    expect_payment(pi, "status", "completed");
    expect_payment(pi, "gateway_status", "succeeded");
    free(done);
    free(proc);
}

Test(payments, failed_payment_retried_later_succeeds_and_forgets_the_failure)
{
    char pi[64], e1[64], e2[64];
    ts_unique(pi, sizeof(pi), "pi_");
    int64_t now = time(NULL);
    char *failed = intent(pi, 500, "requires_payment_method",
                          ",\"last_payment_error\":{\"code\":\"card_declined\",\"decline_code\":"
                          "\"insufficient_funds\",\"message\":\"Your card has insufficient funds.\"}");
    post(e1, "payment_intent.payment_failed", now - 10, failed);
    wait_event(e1);
    expect_payment(pi, "status", "failed");
    expect_payment(pi, "failure_code", "insufficient_funds");
    char *ok = intent(pi, 500, "succeeded", NULL);
    post(e2, "payment_intent.succeeded", now, ok);
    wait_event(e2);
    expect_payment(pi, "status", "completed");
    char *code = payment_field("failure_code", pi);
    cr_assert_null(code);
    free(failed);
    free(ok);
}

/* The worker reads a payment intent without building the document; a
 * string longer than what it copies in place is still read whole. */
Test(payments, a_long_failure_message_is_kept_whole_and_unescaped)
{
    char pi[64], e1[64], extra[1200], want[1000];
    ts_unique(pi, sizeof(pi), "pi_");
    char words[700] = "";
    for (int i = 0; i < 30; i++)
        strcat(words, "The bank declined it. ");
    snprintf(extra, sizeof(extra),
             ",\"last_payment_error\":{\"code\":\"card_declined\",\"message\":"
             "\"\\\"D\\u00e9clin\\u00e9\\\": %s\"}", words);
    snprintf(want, sizeof(want), "\"D\xc3\xa9" "clin\xc3\xa9\": %s", words);
    char *failed = intent(pi, 500, "requires_payment_method", extra);
    post(e1, "payment_intent.payment_failed", time(NULL), failed);
    wait_event(e1);
    expect_payment(pi, "status", "failed");
    expect_payment(pi, "failure_code", "card_declined");
    expect_payment(pi, "failure_message", want);
    cr_assert_gt(strlen(want), 600);
    free(failed);
}

static char *charge(const char *pi, long amount, long refunded, const char *refunds)
{
    char *s = NULL;
    if (asprintf(&s,
                 "{\"id\":\"ch_%s\",\"object\":\"charge\",\"payment_intent\":\"%s\",\"amount\":%ld,"
                 "\"amount_captured\":%ld,\"amount_refunded\":%ld,\"captured\":true,"
                 "\"currency\":\"usd\",\"refunds\":{\"object\":\"list\",\"data\":[%s]}}",
                 pi + 3, pi, amount, amount, refunded, refunds) < 0)
        cr_assert_fail("oom");
    return s;
}

static char *refund(const char *id, const char *pi, long amount, const char *status)
{
    char *s = NULL;
    if (asprintf(&s,
                 "{\"id\":\"%s\",\"object\":\"refund\",\"amount\":%ld,\"currency\":\"usd\","
                 "\"payment_intent\":\"%s\",\"status\":\"%s\",\"reason\":\"requested_by_customer\"}",
                 id, amount, pi, status) < 0)
        cr_assert_fail("oom");
    return s;
}

Test(payments, refunds_make_refund_rows_and_ledger_rows_that_balance)
{
    char pi[64], re1[64], re2[64], e1[64], e2[64], e3[64];
    ts_unique(pi, sizeof(pi), "pi_");
    ts_unique(re1, sizeof(re1), "re_");
    ts_unique(re2, sizeof(re2), "re_");
    int64_t now = time(NULL);
    char *ok = intent(pi, 2999, "succeeded", NULL);
    post(e1, "payment_intent.succeeded", now - 20, ok);

    char *r1 = refund(re1, pi, 1000, "succeeded");
    char *partial = charge(pi, 2999, 1000, r1);
    post(e2, "charge.refunded", now - 10, partial);
    wait_event(e2);
    expect_payment(pi, "status", "partially_refunded");
    expect_payment(pi, "refunded_minor", "1000");
    char *row = ts_sql("SELECT status || ':' || amount_minor FROM refunds WHERE id = $1", re1, NULL);
    cr_assert_str_eq(row, "succeeded:1000");
    free(row);

    char *r2 = refund(re2, pi, 1999, "succeeded");
    char *both = NULL;
    cr_assert(asprintf(&both, "%s,%s", r1, r2) > 0);
    char *full = charge(pi, 2999, 2999, both);
    post(e3, "charge.refunded", now, full);
    wait_event(e3);
    expect_payment(pi, "status", "refunded");
    expect_payment(pi, "refunded_minor", "2999");
    char *net = ts_sql("SELECT sum(CASE t.type WHEN 'charge' THEN t.amount_minor ELSE -t.amount_minor END) "
                       "|| '/' || count(*) FROM transactions t JOIN payments p ON p.id = t.payment_id "
                       "WHERE p.gateway_payment_id = $1", pi, NULL);
    cr_assert_str_eq(net, "0/3", "charge 2999 minus refunds 1000 and 1999, three ledger rows");
    char *mismatch = ts_sql("SELECT count(*) FROM dash_ledger_mismatches m JOIN payments p ON p.id = m.id "
                            "WHERE p.gateway_payment_id = $1", pi, NULL);
    cr_assert_str_eq(mismatch, "0");
    free(net);
    free(mismatch);
    free(ok);
    free(r1);
    free(r2);
    free(both);
    free(partial);
    free(full);
}

Test(payments, refund_seen_before_the_payment_succeeded_still_counts)
{
    char pi[64], re[64], e1[64], e2[64];
    ts_unique(pi, sizeof(pi), "pi_");
    ts_unique(re, sizeof(re), "re_");
    int64_t now = time(NULL);
    char *r = refund(re, pi, 500, "succeeded");
    post(e1, "charge.refund.updated", now, r);
    wait_event(e1);
    char *ok = intent(pi, 2000, "succeeded", NULL);
    post(e2, "payment_intent.succeeded", now - 30, ok);
    wait_event(e2);
    expect_payment(pi, "status", "partially_refunded");
    expect_payment(pi, "refunded_minor", "500");
    expect_payment(pi, "captured_minor", "2000");
    free(r);
    free(ok);
}

Test(payments, unknown_event_types_are_stored_and_acknowledged)
{
    char evt[64];
    post(evt, "customer.created", time(NULL), "{\"id\":\"cus_unknown\",\"object\":\"customer\"}");
    wait_event(evt);
    char *row = ts_sql("SELECT type || ' ' || (payload->'data'->'object'->>'id') || ' ' || "
                       "coalesce(outcome, '-') || ' ' || (message_id IS NOT NULL) "
                       "FROM stripe_events WHERE id = $1",
                       evt, NULL);
    cr_assert_str_eq(row, "customer.created cus_unknown - true");
    free(row);
}

/* Types paystream only records are read without building the document;
 * what is on the topic is checked all the same, and the body's type, not
 * the header's, decides what an event is. */
Test(payments, a_recorded_type_is_checked_and_its_body_decides)
{
    char pi[64], broken[128], evt[64], value[1024];
    ts_unique(evt, sizeof(evt), "evt_hdr_");
    snprintf(broken, sizeof(broken), "{\"id\":\"%s\",\"type\":\"customer.created\"", evt);
    ts_produce(PS_TOPIC_STRIPE_EVENTS, evt, "customer.created", broken);
    ts_unique(pi, sizeof(pi), "pi_hdr_");
    char *obj = intent(pi, 700, "succeeded", NULL);
    snprintf(value, sizeof(value),
             "{\"id\":\"%s_2\",\"object\":\"event\",\"type\":\"payment_intent.succeeded\","
             "\"created\":%ld,\"livemode\":false,\"data\":{\"object\":%s}}",
             evt, (long)time(NULL), obj);
    ts_produce(PS_TOPIC_STRIPE_EVENTS, pi, "customer.created", value);
    cr_assert(ts_wait_sql("completed", "SELECT status FROM payments WHERE gateway_payment_id = $1",
                          pi, NULL));
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM dead_letters WHERE payload = "
                          "convert_to($1, 'UTF8') AND reason LIKE 'not a Stripe event%'",
                          broken, NULL));
    free(obj);
}

/* stripe_events gives each stored body as jsonb when it is read, so a body
 * that jsonb refuses must never be stored: one such row would make every
 * read of the payloads fail. Put on the topic past the intake, each is
 * dead-lettered, and the events after them are stored and readable. */
Test(payments, a_body_jsonb_would_refuse_is_dead_lettered_not_stored)
{
    static const char *const poisons[] = {
        "\"nul \\u0000 inside\"",      /* jsonb has no NUL in a string */
        "\"lone \\ud800 surrogate\"",  /* nor half a surrogate pair */
        "\"bad \xc3\x28 utf-8\"",      /* nor bytes that are not UTF-8 */
    };
    enum { N = sizeof(poisons) / sizeof(poisons[0]) };
    char evts[N][64], good[64], value[512];
    for (int i = 0; i < N; i++) {
        ts_unique(evts[i], sizeof(evts[i]), "evt_poison_");
        snprintf(value, sizeof(value),
                 "{\"id\":\"%s\",\"object\":\"event\",\"type\":\"customer.created\","
                 "\"created\":%ld,\"livemode\":false,\"data\":{\"object\":{\"id\":\"cus_p\","
                 "\"object\":\"customer\",\"description\":%s}}}",
                 evts[i], (long)time(NULL), poisons[i]);
        ts_produce(PS_TOPIC_STRIPE_EVENTS, evts[i], "customer.created", value);
    }
    ts_unique(good, sizeof(good), "evt_after_poison_");
    snprintf(value, sizeof(value),
             "{\"id\":\"%s\",\"object\":\"event\",\"type\":\"customer.created\","
             "\"created\":%ld,\"livemode\":false,\"data\":{\"object\":{\"id\":\"cus_p\","
             "\"object\":\"customer\",\"description\":\"fine \\u00e9\"}}}",
             good, (long)time(NULL));
    ts_produce(PS_TOPIC_STRIPE_EVENTS, evts[N - 1], "customer.created", value);
    cr_assert(ts_wait_sql("fine \xc3\xa9",
                          "SELECT payload->'data'->'object'->>'description' FROM stripe_events "
                          "WHERE id = $1", good, NULL));
    for (int i = 0; i < N; i++) {
        cr_assert(ts_wait_sql("1", "SELECT count(*) FROM dead_letters WHERE "
                                   TS_LETTER_HOLDS("$1"), evts[i], NULL),
                  "%s was not dead-lettered", poisons[i]);
        char *n = ts_sql("SELECT count(*) FROM stripe_events WHERE id = $1", evts[i], NULL);
        cr_assert_str_eq(n, "0", "%s was stored", poisons[i]);
        free(n);
        /* An operator can look at it: bytes that are not UTF-8 as base64. */
        char *id = ts_sql("SELECT id FROM dead_letters WHERE " TS_LETTER_HOLDS("$1"), evts[i],
                          NULL);
        int status;
        char *shown = ts_sh(&status, "'%s/services/admin/paystream-admin' dlq show %s 2>&1",
                            getenv("PAYSTREAM_BUILD_DIR"), id);
        cr_assert_eq(status, 0, "dlq show of %s: %s", poisons[i], shown);
        cr_assert(strstr(shown, i == N - 1 ? "\"payload_base64\"" : evts[i]), "%s", shown);
        free(shown);
        free(id);
    }
    /* Every payload of the log reads as jsonb. */
    char *all = ts_sql("SELECT count(*) = count(payload) FROM stripe_events", NULL);
    cr_assert_str_eq(all, "t");
    free(all);
}

/* Posts a succeeded payment intent whose amount members are amounts and
 * checks it is dead-lettered for reason, no payment made. */
static void expect_amounts_refused(const char *amounts, const char *reason)
{
    char pi[64], evt[64], obj[256];
    ts_unique(pi, sizeof(pi), "pi_");
    snprintf(obj, sizeof(obj), "{\"id\":\"%s\",\"object\":\"payment_intent\",%s,"
             "\"currency\":\"usd\",\"status\":\"succeeded\"}", pi, amounts);
    post(evt, "payment_intent.succeeded", time(NULL), obj);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM dead_letters WHERE " TS_LETTER_HOLDS("$1")
                          " AND reason LIKE '%' || $2 || '%'", evt, reason, NULL),
              "%s is dead-lettered for %s", amounts, reason);
    char *n = ts_sql("SELECT count(*) FROM payments WHERE gateway_payment_id = $1", pi, NULL);
    cr_assert_str_eq(n, "0");
    free(n);
}

/* Money is an integer number of minor units: a real or a negative amount
 * is dead-lettered, and the payment is left as it was. */
Test(payments, a_payment_intent_amount_must_be_a_non_negative_integer)
{
    expect_amounts_refused("\"amount\":12.5,\"amount_received\":0",
                           "is not a non-negative integer amount");
    expect_amounts_refused("\"amount\":100,\"amount_received\":-1",
                           "is not a non-negative integer amount");
}

/* An amount given twice could be read as either: the event is
 * dead-lettered, not applied with one of them. */
Test(payments, an_intent_giving_its_amount_twice_is_dead_lettered)
{
    expect_amounts_refused("\"amount\":100,\"amount\":100000,\"amount_received\":100",
                           "duplicate object key");
}

Test(payments, an_event_that_cannot_apply_is_dead_lettered_and_the_partition_moves_on)
{
    char pi[64], bad[64], later[64];
    ts_unique(pi, sizeof(pi), "pi_");
    char obj[256];
    snprintf(obj, sizeof(obj), "{\"id\":\"%s\",\"object\":\"payment_intent\",\"amount\":100,"
             "\"currency\":\"xyz\",\"status\":\"succeeded\"}", pi);
    post(bad, "payment_intent.succeeded", time(NULL) - 5, obj);
    char *ok = intent(pi, 100, "succeeded", NULL);
    post(later, "payment_intent.succeeded", time(NULL), ok);
    wait_event(later);
    expect_payment(pi, "status", "completed");
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM dead_letters "
                          "WHERE " TS_LETTER_HOLDS("$1"), bad, NULL));
    char *reason = ts_sql("SELECT reason FROM dead_letters "
                          "WHERE " TS_LETTER_HOLDS("$1"), bad, NULL);
    cr_assert(reason && strstr(reason, "currency"), "dead letter reason: %s", reason ? reason : "(none)");
    char *n = ts_sql("SELECT count(*) FROM stripe_events WHERE id = $1", bad, NULL);
    cr_assert_str_eq(n, "0");
    free(reason);
    free(n);
    free(ok);
}

Test(payments, a_refund_beyond_the_capture_is_refused_by_the_database)
{
    char pi[64], e1[64], e2[64], e3[64];
    ts_unique(pi, sizeof(pi), "pi_");
    int64_t now = time(NULL);
    char *ok = intent(pi, 1000, "succeeded", NULL);
    post(e1, "payment_intent.succeeded", now - 10, ok);
    char *over = charge(pi, 1000, 1500, "");
    post(e2, "charge.refunded", now - 5, over);
    char *later = intent(pi, 1000, "succeeded", NULL);
    post(e3, "payment_intent.succeeded", now, later);
    wait_event(e3);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM dead_letters WHERE reason LIKE '%refund_within_capture%' "
                          "AND " TS_LETTER_HOLDS("$1"), e2, NULL));
    expect_payment(pi, "refunded_minor", "0");
    expect_payment(pi, "status", "completed");
    free(ok);
    free(over);
    free(later);
}
