/* ps_apply_stripe_batch, which applies a poll batch folding each payment's
 * events, against its reference ps_apply_stripe_event, which applies one
 * event at a time: the same random streams (ties and reordering in time,
 * duplicates, refunds (some listing another payment's), events about no
 * payment, Connect events about payments their account does not own, other
 * currencies, the other mode)
 * applied both ways in PostgreSQL must give each event the same outcome and
 * leave the same payments, refunds, ledger, stored events and domain
 * events. Each way uses ids of its own, told apart by a tag. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

#define NPAYMENTS 30
#define NEVENTS 400
#define MAX_CHUNK 60

/* A stream's events with {tag} where the ids of one way go. */
typedef struct {
    char *events[NEVENTS];
} stream_t;

static const char *const kinds[] = {
    "payment_intent.created", "payment_intent.requires_action", "payment_intent.processing",
    "payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled",
    "charge.succeeded", "charge.refunded", "refund.updated", "customer.created",
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* The facts the payments worker would extract from an event of kind about
 * payment k (see stripe_events.c), as an element of the batch array. */
static json_t *element(int i, const char *kind, int k, long created, unsigned *seed)
{
    static const char *const refund_statuses[] = {"pending", "succeeded", "failed", "canceled"};
    char id[64], pi[64], ch[64], re[64];
    long amount = 1000 + 10 * k;
    snprintf(id, sizeof(id), "evt_{tag}_%d", i);
    snprintf(pi, sizeof(pi), "pi_{tag}_%d", k);
    snprintf(ch, sizeof(ch), "ch_{tag}_%d", k);
    json_t *e = json_pack("{s:s, s:s, s:I, s:b, s:s, s:{s:s}}", "event_id", id, "type", kind,
                          "created", (json_int_t)created, "livemode", 0, "message_id", id,
                          "payload", "id", id);
    if (strcmp(kind, "customer.created") == 0)
        return e;
    json_object_set_new(e, "payment_intent", json_string(pi));
    json_object_set_new(e, "currency", json_string("USD"));
    json_object_set_new(e, "amount", json_integer(amount));
    const char *status = NULL;
    if (strncmp(kind, "payment_intent.", 15) == 0) {
        const char *what = kind + 15;
        status = strcmp(what, "processing") == 0  ? "processing"
                 : strcmp(what, "succeeded") == 0 ? "completed"
                 : strcmp(what, "payment_failed") == 0 ? "failed"
                 : strcmp(what, "canceled") == 0       ? "cancelled"
                                                       : "pending";
        json_object_set_new(e, "gateway_status", json_string(what));
        if (strcmp(status, "failed") == 0) {
            json_object_set_new(e, "failure_code", json_string("card_declined"));
            json_object_set_new(e, "failure_message", json_string("Your card was declined."));
        }
    } else if (strncmp(kind, "charge.", 7) == 0) {
        status = "completed";
        json_object_set_new(e, "customer", json_sprintf("cus_%d", k));
    }
    if (status)
        json_object_set_new(e, "intent_status", json_string(status));
    if (strcmp(kind, "payment_intent.succeeded") == 0 || strncmp(kind, "charge.", 7) == 0) {
        /* Some captures are partial: what was captured must only grow. */
        long part = strcmp(kind, "charge.succeeded") == 0 && rand_r(seed) % 2 ? 2 : 1;
        json_object_set_new(e, "captured", json_integer(amount / part));
        json_object_set_new(e, "charge_id", json_string(ch));
    }
    if (strcmp(kind, "charge.refunded") == 0) {
        snprintf(re, sizeof(re), "re_{tag}_%d_1", k);
        json_object_set_new(e, "refunded", json_integer(amount / 2));
        json_object_set_new(e, "refunds", json_pack("[{s:s, s:I, s:s, s:s}]", "id", re, "amount",
                                                    (json_int_t)(amount / 2), "currency", "USD",
                                                    "status", "succeeded"));
    }
    if (strcmp(kind, "refund.updated") == 0) {
        int which = 1 + (int)(rand_r(seed) % 2);
        /* Some name a refund of the next payment: an event listing a
         * refund that the other payment holds is refused. */
        int of = rand_r(seed) % 8 == 0 ? (k + 1) % NPAYMENTS : k;
        snprintf(re, sizeof(re), "re_{tag}_%d_%d", of, which);
        json_object_del(e, "amount");
        json_object_set_new(e, "refunds",
                            json_pack("[{s:s, s:I, s:s, s:s}]", "id", re, "amount",
                                      (json_int_t)(which == 1 ? amount / 2 : amount / 4),
                                      "currency", "USD", "status",
                                      refund_statuses[rand_r(seed) % 4]));
    }
    /* Some come from a connected account, which owns none of these
     * payments; some are in another currency; some of the other mode. */
    unsigned r = rand_r(seed) % 40;
    if (r < 3) {
        json_object_set_new(e, "connect", json_true());
        json_object_set_new(e, "account", json_string("acct_{tag}"));
    } else if (r < 5 && json_object_get(e, "currency")) {
        json_object_set_new(e, "currency", json_string("EUR"));
    } else if (r < 6) {
        json_object_set_new(e, "refusal", json_string("livemode_mismatch"));
    }
    return e;
}

/* NEVENTS events about NPAYMENTS payments, created within 30 s of each
 * other in any order; one in ten is a delivery again of an earlier one. */
static void make_stream(stream_t *s, unsigned seed)
{
    for (int i = 0; i < NEVENTS; i++) {
        if (i > 0 && rand_r(&seed) % 10 == 0) {
            s->events[i] = strdup(s->events[rand_r(&seed) % (unsigned)i]);
            continue;
        }
        const char *kind = kinds[rand_r(&seed) % NKINDS];
        int k = (int)(rand_r(&seed) % NPAYMENTS);
        json_t *e = element(i, kind, k, 1700000000L + (long)(rand_r(&seed) % 30), &seed);
        s->events[i] = json_dumps(e, JSON_COMPACT);
        json_decref(e);
    }
}

/* tmpl with every {tag} replaced by tag; malloc'd. */
static char *with_tag(const char *tmpl, const char *tag)
{
    size_t len = strlen(tmpl) + 1, tlen = strlen(tag);
    for (const char *r = tmpl; (r = strstr(r, "{tag}")) != NULL; r += 5)
        len += tlen;
    char *out = malloc(len), *w = out;
    for (const char *r = tmpl; *r;) {
        if (strncmp(r, "{tag}", 5) == 0) {
            memcpy(w, tag, tlen);
            w += tlen;
            r += 5;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return out;
}

/* events[from, to) as a JSON array, with tag in their ids. */
static char *array_of(const stream_t *s, int from, int to, const char *tag)
{
    size_t len = 3;
    char *parts[MAX_CHUNK];
    for (int i = from; i < to; i++) {
        parts[i - from] = with_tag(s->events[i], tag);
        len += strlen(parts[i - from]) + 1;
    }
    char *out = malloc(len), *w = out;
    *w++ = '[';
    for (int i = from; i < to; i++) {
        size_t n = strlen(parts[i - from]);
        if (i > from)
            *w++ = ',';
        memcpy(w, parts[i - from], n);
        w += n;
        free(parts[i - from]);
    }
    *w++ = ']';
    *w = '\0';
    return out;
}

/* Appends outcome and a comma to list (of NEVENTS * 20 bytes). */
static void add_outcomes(char *list, const char *outcomes)
{
    strcat(list, outcomes);
    strcat(list, ",");
}

/* Applies the stream event by event with ps_apply_stripe_event. */
static void apply_one_by_one(const stream_t *s, const char *tag, char *outcomes)
{
    for (int i = 0; i < NEVENTS; i++) {
        char *arr = array_of(s, i, i + 1, tag);
        char *o = ts_sql("SELECT ps_apply_stripe_event(r, ("
                         TS_STRIPE_PAYLOADS("$1::jsonb") ")[r.ord]) "
                         "FROM ps_stripe_batch_rows($1::jsonb) r",
                         arr, NULL);
        cr_assert(o != NULL);
        add_outcomes(outcomes, o);
        free(o);
        free(arr);
    }
}

/* Applies the stream in batches of random sizes with ps_apply_stripe_batch;
 * counts the events it folded into an earlier event's payment of the same
 * batch, and the events with refunds (applied as the reference does). */
static void apply_in_batches(const stream_t *s, const char *tag, char *outcomes, unsigned seed,
                             long *folded, long *refunds)
{
    for (int from = 0; from < NEVENTS;) {
        int to = from + 1 + (int)(rand_r(&seed) % MAX_CHUNK);
        to = to > NEVENTS ? NEVENTS : to;
        char *arr = array_of(s, from, to, tag);
        char *f = ts_sql("SELECT count(payment_intent) - count(DISTINCT payment_intent) || ' ' || "
                         "count(refunds) FROM ps_stripe_batch_rows($1::jsonb)",
                         arr, NULL);
        char *space = strchr(f, ' ');
        *folded += atol(f);
        *refunds += space ? atol(space + 1) : 0;
        char *o = ts_sql("SELECT string_agg(outcome, ',' ORDER BY ord) FROM "
                         "ps_apply_stripe_batch($1::jsonb, " TS_STRIPE_PAYLOADS("$1::jsonb") ")",
                         arr, NULL);
        cr_assert(o != NULL);
        add_outcomes(outcomes, o);
        free(o);
        free(f);
        free(arr);
        from = to;
    }
}

/* Rows that one way has and the other has not, over the tables and the
 * domain events. */
static long differences(const char *a, const char *b)
{
    static const char *const views[] = {
        "SELECT replace(gateway_payment_id, '{tag}', 'X'), order_id, intent_status, status, "
        "gateway_status, amount_minor, currency, captured_minor, refunded_minor, "
        "refunds_succeeded_minor, customer, account, failure_code, failure_message, "
        "last_event_at, version FROM payments WHERE gateway_payment_id LIKE 'pi\\_{tag}\\_%'",
        "SELECT replace(r.id, '{tag}', 'X'), replace(p.gateway_payment_id, '{tag}', 'X'), "
        "r.amount_minor, r.currency, r.status, r.reason, r.last_event_at FROM refunds r "
        "JOIN payments p ON p.id = r.payment_id WHERE p.gateway_payment_id LIKE 'pi\\_{tag}\\_%'",
        "SELECT replace(p.gateway_payment_id, '{tag}', 'X'), t.type, t.amount_minor, t.currency, "
        "t.status, replace(t.gateway_transaction_id, '{tag}', 'X'), "
        "replace(t.source_event_id, '{tag}', 'X') FROM transactions t JOIN payments p ON "
        "p.id = t.payment_id WHERE p.gateway_payment_id LIKE 'pi\\_{tag}\\_%'",
        "SELECT replace(id, '{tag}', 'X'), type, replace(account, '{tag}', 'X'), created, "
        "livemode, replace(message_id, '{tag}', 'X'), replace(payload::text, '{tag}', 'X'), "
        "outcome FROM stripe_events WHERE id LIKE 'evt\\_{tag}\\_%'",
        /* The triggers on payments saw the same steps. */
        "SELECT type, replace(payload->'data'->>'gateway_payment_id', '{tag}', 'X'), "
        "(payload->'data') - 'payment_id' - 'gateway_payment_id' FROM outbox "
        "WHERE payload->'data'->>'gateway_payment_id' LIKE 'pi\\_{tag}\\_%'",
    };
    long total = 0;
    for (size_t v = 0; v < sizeof(views) / sizeof(views[0]); v++) {
        char *qa = with_tag(views[v], a), *qb = with_tag(views[v], b), *sql = NULL;
        cr_assert(asprintf(&sql,
                           "SELECT count(*) FROM ((%s EXCEPT ALL %s) UNION ALL (%s EXCEPT ALL %s)) d",
                           qa, qb, qb, qa) > 0);
        char *n = ts_sql(sql, NULL);
        if (atol(n) != 0)
            cr_log_error("view %zu: %s rows differ", v, n);
        total += atol(n);
        free(n);
        free(sql);
        free(qa);
        free(qb);
    }
    return total;
}

Test(batch_apply, gives_the_same_result_as_one_event_at_a_time, .timeout = 300)
{
    long folded = 0, refunds = 0;
    static const char outcomes[] = "applied\0stale\0duplicate\0recorded\0unknown_payment\0"
                                   "account_mismatch\0currency_mismatch\0livemode_mismatch\0"
                                   "refund_mismatch\0";
    int seen[9] = {0};
    for (unsigned seed = 1; seed <= 4; seed++) {
        stream_t s;
        char one[32], batch[32];
        char *want = calloc(NEVENTS, 20), *got = calloc(NEVENTS, 20);
        make_stream(&s, seed);
        ts_unique(one, sizeof(one), "o");
        ts_unique(batch, sizeof(batch), "b");
        apply_one_by_one(&s, one, want);
        apply_in_batches(&s, batch, got, seed * 7919, &folded, &refunds);
        cr_assert_str_eq(got, want, "outcomes differ (seed %u)", seed);
        cr_assert_eq(differences(one, batch), 0, "tables differ (seed %u)", seed);
        int k = 0;
        for (const char *o = outcomes; *o; o += strlen(o) + 1)
            seen[k++] += strstr(want, o) != NULL;
        for (int i = 0; i < NEVENTS; i++)
            free(s.events[i]);
        free(want);
        free(got);
    }
    /* The streams exercised every outcome. */
    int k = 0;
    for (const char *o = outcomes; *o; o += strlen(o) + 1)
        cr_assert(seen[k++] > 0, "no %s event in any stream", o);
    cr_assert(folded > 0 && refunds > 0, "both ways ran: %ld events folded, %ld with refunds",
              folded, refunds);
}

/* A payment made through the API, which two intents of one batch name in
 * their metadata: the first adopts it, the second is a payment of its own,
 * as when they come one by one; the batch must not let the second adopt a
 * payment it has not stored yet. */
Test(batch_apply, two_intents_naming_one_payment_in_a_batch_adopt_it_once)
{
    static const char events[] =
        "[{\"event_id\":\"evt_{tag}_a\",\"type\":\"payment_intent.succeeded\","
        "\"created\":1700000000,\"payment_intent\":\"pi_{tag}_a\",\"intent_status\":"
        "\"completed\",\"amount\":1000,\"currency\":\"USD\",\"payment_id\":\"pay_{tag}\","
        "\"payload\":{\"id\":\"evt_{tag}_a\"}},"
        "{\"event_id\":\"evt_{tag}_b\",\"type\":\"payment_intent.succeeded\","
        "\"created\":1700000001,\"payment_intent\":\"pi_{tag}_b\",\"intent_status\":"
        "\"completed\",\"amount\":1000,\"currency\":\"USD\",\"payment_id\":\"pay_{tag}\","
        "\"payload\":{\"id\":\"evt_{tag}_b\"}}]";
    char one[32], batch[32];
    ts_unique(one, sizeof(one), "o");
    ts_unique(batch, sizeof(batch), "b");
    const char *tags[] = {one, batch};
    char *outcomes[2];
    for (int w = 0; w < 2; w++) {
        char id[64];
        snprintf(id, sizeof(id), "pay_%s", tags[w]);
        free(ts_sql("INSERT INTO payments (id, gateway, amount_minor, currency, actor) "
                    "VALUES ($1, 'stripe', 1000, 'USD', 'user_1') RETURNING id",
                    id, NULL));
        char *arr = with_tag(events, tags[w]);
        outcomes[w] = ts_sql(
            w == 0 ? "SELECT string_agg(ps_apply_stripe_event(r, ("
                     TS_STRIPE_PAYLOADS("$1::jsonb") ")[r.ord]), ',' ORDER BY r.ord) "
                     "FROM ps_stripe_batch_rows($1::jsonb) r"
                   : "SELECT string_agg(outcome, ',' ORDER BY ord) FROM "
                     "ps_apply_stripe_batch($1::jsonb, " TS_STRIPE_PAYLOADS("$1::jsonb") ")",
            arr, NULL);
        free(arr);
    }
    cr_assert_str_eq(outcomes[0], "applied,applied");
    cr_assert_str_eq(outcomes[1], outcomes[0]);
    char id[64];
    snprintf(id, sizeof(id), "pay_%s", batch);
    char *r = ts_sql("SELECT string_agg(replace(gateway_payment_id, $2, 'X') || ' ' || "
                     "(id = $1), ',' ORDER BY gateway_payment_id) FROM payments "
                     "WHERE id = $1 OR gateway_payment_id LIKE 'pi\\_' || $2 || '\\_%'",
                     id, batch, NULL);
    cr_assert_str_eq(r, "pi_X_a true,pi_X_b false", "adopted by the first intent only: %s", r);
    cr_assert_eq(differences(one, batch), 0, "tables differ");
    free(r), free(outcomes[0]), free(outcomes[1]);
}

/* Ids of ours are prefix, time and randomness: distinct, in order of making
 * (to the microsecond), and carrying the time they were made. */
Test(batch_apply, new_ids_are_unique_and_in_time_order)
{
    char *r = ts_sql(
        "WITH s AS (SELECT i, ps_new_id('pay_') AS id FROM generate_series(1, 2000) i), "
        "t AS (SELECT i, id, ('x' || lpad(substr(id, 5, 14), 16, '0'))::bit(64)::bigint AS us, "
        "      lag(substr(id, 5, 14)) OVER (ORDER BY i) AS before FROM s) "
        "SELECT count(*) FILTER (WHERE id !~ '^pay_[0-9a-f]{32}$') || ',' || "
        "       (count(*) - count(DISTINCT id)) || ',' || "
        "       count(*) FILTER (WHERE before > substr(id, 5, 14)) || ',' || "
        "       count(*) FILTER (WHERE abs(us / 1e6 - extract(epoch FROM now())) > 60) FROM t",
        NULL);
    cr_assert_str_eq(r, "0,0,0,0", "malformed, repeated, out of order, off the clock: %s", r);
    free(r);
}

/* bench/apply's tool, which drives the payments worker's own batch code
 * without Kafka: every event of its Stripe's mix is applied or recorded
 * and stored once, so its figures are the worker's. */
Test(batch_apply, the_benchmark_of_postgresqls_part_applies_every_event, .timeout = 120)
{
    char prefix[64], like[80];
    ts_unique(prefix, sizeof(prefix), "ab");
    int status;
    char *out = ts_sh(&status,
                      "'%s/bench/paystream-applybench' --dsn '%s' --rounds 1 --events 2000 "
                      "--batch 300 --prefix %s 2>&1",
                      ts_env("PAYSTREAM_BUILD_DIR"), ts_env("PAYSTREAM_PG_DSN"), prefix);
    cr_assert_eq(status, 0, "%s", out);
    char *applied = ts_json(out, "outcomes.applied"), *recorded = ts_json(out, "outcomes.recorded");
    cr_assert(applied && recorded, "%s", out);
    cr_assert_eq(atol(applied) + atol(recorded), 2000, "%s", out);
    cr_assert_gt(atol(applied), 0, "%s", out);
    snprintf(like, sizeof(like), "evt\\_%s1\\_%%", prefix);
    char *stored = ts_sql("SELECT count(*) FROM stripe_events WHERE id LIKE $1", like, NULL);
    cr_assert_str_eq(stored, "2000", "%s", out);
    free(stored);
    free(applied);
    free(recorded);
    free(out);
}
