/* paystream-chaos: a stream of signed Stripe events of Stripe's real mix
 * (bench/stripe_mix.h) and of shoppers' API commands, while faults are
 * injected at random moments: payments workers SIGKILLed, the intake
 * SIGKILLed and restarted, PostgreSQL restarted in immediate mode, one of
 * three Kafka brokers killed and brought back. Senders retry what was not
 * answered 2xx, as Stripe and a careful client do (same body, same
 * Idempotency-Key). Afterwards it checks what must hold:
 *
 *   every event answered 2xx is stored once, and none is missing;
 *   every payment ends as its events say, once, its ledger summing to
 *   captured minus refunded;
 *   every command answered 2xx was applied once, with its effect;
 *   the stock books balance;
 *   no email was sent twice for the same event and address.
 *
 * It prints the faults it injected and the counts it checked; exit status 1
 * when a check fails. It runs against the system of PAYSTREAM_RUN_DIR
 * (scripts/dev, 3 KRaft nodes and two payments workers) with its env:
 *
 *   paystream-chaos [--events N] [--orders M] [--seconds S] [--seed X] */
#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "paystream/stripe_sig.h"
#include "paystream/util.h"
#include "stripe_mix.h"

#define POSTERS 8
#define SHOPPERS 4
#define PRODUCTS 20
#define STOCK_EACH 100000
#define GIVE_UP_MS 180000 /* a request never answered 2xx in this long fails the run */
#define DRAIN_MS 300000   /* how long the system may take to apply what it took */

typedef struct {
    long events, orders;
    int seconds;
    uint64_t seed;
} options_t;

static options_t opt = {.events = 20000, .orders = 400, .seconds = 90, .seed = 1};
static char run_tag[32];
static int64_t started_ms;
static atomic_long events_posted, events_acked, intents_made, flows_started;
static atomic_long answers_retried, unacknowledged;

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        fprintf(stderr, "paystream-chaos: %s is not set (source the run's env)\n", name);
        exit(2);
    }
    return v;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("chaos: %6.1fs  ", (double)(ps_mono_ms() - started_ms) / 1000);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

/* ---------------------------------------------------------------- HTTP */

typedef struct {
    CURL *curl;
    char *body;
    size_t len;
} http_t;

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    http_t *h = arg;
    h->body = ps_xrealloc(h->body, h->len + size * n + 1);
    memcpy(h->body + h->len, data, size * n);
    h->len += size * n;
    h->body[h->len] = '\0';
    return size * n;
}

/* One request on h's kept-alive connection; returns the status, 0 when
 * there was no answer. The answer's body is in h->body. */
static long request(http_t *h, const char *method, const char *url, struct curl_slist *headers,
                    const char *body, size_t len)
{
    h->len = 0;
    if (h->body)
        h->body[0] = '\0';
    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE, (long)(body ? len : 0));
    if (body == NULL)
        curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, 40000L);
    curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    long status = 0;
    if (curl_easy_perform(h->curl) == CURLE_OK)
        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* Whether a sender tries again after status: no answer, or one that says
 * so (429, 5xx). */
static int retryable(long status)
{
    return status == 0 || status == 429 || status >= 500;
}

/* Waits before attempt n (from 1) of a retry: 100 ms doubling to 2 s. */
static void backoff(int attempt)
{
    int ms = 100 << (attempt < 5 ? attempt : 5);
    ps_sleep_ms(ms > 2000 ? 2000 : ms);
    atomic_fetch_add(&answers_retried, 1);
}

/* ---------------------------------------------------------- webhooks */

/* Per payment intent: how many of its events were answered 2xx. */
static unsigned char *intent_acked;
static long intents_max;

/* Posts one event until it is answered 2xx (as Stripe retries); returns
 * whether it was. */
static int post_event(http_t *h, const char *url, const char *secret, const char *body,
                      size_t len)
{
    int64_t give_up = ps_mono_ms() + GIVE_UP_MS;
    for (int attempt = 0;; attempt++) {
        char sig[160], header[200];
        ps_sig_sign(secret, body, len, (int64_t)time(NULL), sig, sizeof(sig));
        snprintf(header, sizeof(header), "Stripe-Signature: %s", sig);
        struct curl_slist *hs = curl_slist_append(NULL, header);
        hs = curl_slist_append(hs, "Content-Type: application/json");
        long status = request(h, "POST", url, hs, body, len);
        curl_slist_free_all(hs);
        if (status >= 200 && status < 300)
            return 1;
        if (!retryable(status) || ps_mono_ms() > give_up) {
            say("an event was answered %ld and given up: %.200s", status, h->body ? h->body : "");
            return 0;
        }
        backoff(attempt);
    }
}

/* Waits until event number e is due: the stream spreads the events over
 * the run's seconds. */
static void pace(long e)
{
    int64_t due = started_ms + e * opt.seconds * 1000 / opt.events;
    int64_t now = ps_mono_ms();
    if (due > now)
        ps_sleep_ms(due - now);
}

static void *poster(void *arg)
{
    (void)arg;
    char url[256], buf[MIX_EVENT_MAX], id[64];
    snprintf(url, sizeof(url), "%s/webhooks/stripe", env("PAYSTREAM_INTAKE_URL"));
    const char *secret = env("STRIPE_WEBHOOK_SECRET");
    char first[128];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(secret, ","), secret);
    http_t h = {.curl = curl_easy_init()};
    for (;;) {
        long k = atomic_fetch_add(&intents_made, 1);
        if (k >= intents_max || atomic_load(&events_posted) >= opt.events)
            break;
        mix_intent_t it;
        mix_intent(&it, run_tag, k, opt.seed, (int64_t)time(NULL));
        for (int i = 0; i < it.nevents; i++) {
            pace(atomic_fetch_add(&events_posted, 1));
            size_t len = mix_event(&it, i, buf, id);
            if (post_event(&h, url, first, buf, len)) {
                intent_acked[k]++;
                atomic_fetch_add(&events_acked, 1);
            } else {
                atomic_fetch_add(&unacknowledged, 1);
            }
        }
    }
    curl_easy_cleanup(h.curl);
    free(h.body);
    return NULL;
}

/* ---------------------------------------------------------- shoppers */

/* What a shopper's flow was answered 2xx for. */
typedef struct {
    char order[64], payment[64];
    int64_t total, refunded;
    int paid;
} flow_t;

static flow_t *flows;
static char *api_keys[SHOPPERS];

/* An API write with an Idempotency-Key, sent until it is answered for good
 * (a 202 is followed to its command's result). Returns the final status,
 * with the result in h->body; 0 when given up. */
static long api_write(http_t *h, int shopper, const char *path, const char *key,
                      const char *body)
{
    char url[512], auth[256], idem[160];
    snprintf(url, sizeof(url), "%s%s", env("PAYSTREAM_INTAKE_URL"), path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", api_keys[shopper]);
    snprintf(idem, sizeof(idem), "Idempotency-Key: %s-%s", run_tag, key);
    struct curl_slist *hs = curl_slist_append(NULL, auth);
    hs = curl_slist_append(hs, idem);
    hs = curl_slist_append(hs, "Content-Type: application/json");
    hs = curl_slist_append(hs, "Prefer: wait=10");
    int64_t give_up = ps_mono_ms() + GIVE_UP_MS;
    long status = 0;
    for (int attempt = 0; ps_mono_ms() < give_up; attempt++) {
        status = request(h, "POST", url, hs, body, strlen(body));
        if (status == 202) {
            /* Taken, not applied within the wait: the same request again
             * waits for the same command. */
            ps_sleep_ms(500);
            continue;
        }
        if (!retryable(status))
            break;
        backoff(attempt);
        status = 0;
    }
    curl_slist_free_all(hs);
    if (status == 0)
        atomic_fetch_add(&unacknowledged, 1);
    return status;
}

static char *body_value(const http_t *h, const char *key)
{
    json_t *j = json_loads(h->body ? h->body : "", 0, NULL);
    const char *v = json_string_value(json_object_get(j, key));
    char *out = v ? ps_xstrdup(v) : NULL;
    json_decref(j);
    return out;
}

static void shop(http_t *h, int shopper, long m)
{
    flow_t *f = &flows[m];
    char key[48], body[512], path[160];
    long qty = 1 + m % 3, unit = 250 + (m % 7) * 100;
    snprintf(key, sizeof(key), "o-%ld", m);
    snprintf(body, sizeof(body),
             "{\"currency\":\"usd\",\"email\":\"shopper-%ld@chaos.test\",\"customer_name\":"
             "\"Shopper %ld\",\"items\":[{\"product_id\":\"chaos_%s_%ld\",\"quantity\":%ld,"
             "\"unit_price\":\"%ld.%02ld\"}]}",
             m, m, run_tag, m % PRODUCTS, qty, unit / 100, unit % 100);
    if (api_write(h, shopper, "/api/v1/orders", key, body) != 201)
        return;
    char *order = body_value(h, "id");
    snprintf(f->order, sizeof(f->order), "%s", order ? order : "");
    free(order);
    f->total = qty * unit;

    snprintf(key, sizeof(key), "p-%ld", m);
    snprintf(body, sizeof(body),
             "{\"order_id\":\"%s\",\"amount\":\"%lld.%02lld\",\"currency\":\"usd\"}",
             f->order, (long long)(f->total / 100), (long long)(f->total % 100));
    if (api_write(h, shopper, "/api/v1/payments", key, body) != 201)
        return;
    char *payment = body_value(h, "id");
    snprintf(f->payment, sizeof(f->payment), "%s", payment ? payment : "");
    free(payment);

    snprintf(key, sizeof(key), "c-%ld", m);
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", f->payment);
    if (api_write(h, shopper, path, key, "{\"payment_method\":\"pm_card_visa\"}") != 200)
        return;
    f->paid = 1;
    if (m % 4 != 0)
        return;
    snprintf(key, sizeof(key), "r-%ld", m);
    snprintf(path, sizeof(path), "/api/v1/payments/%s/refund", f->payment);
    if (api_write(h, shopper, path, key, "{\"amount\":\"1.00\"}") == 200)
        f->refunded = 100;
}

static void *shopper(void *arg)
{
    int s = (int)(intptr_t)arg;
    http_t h = {.curl = curl_easy_init()};
    for (;;) {
        long m = atomic_fetch_add(&flows_started, 1);
        if (m >= opt.orders)
            break;
        /* Spread over the run, like the events. */
        int64_t due = started_ms + m * opt.seconds * 1000 / opt.orders;
        if (due > ps_mono_ms())
            ps_sleep_ms(due - ps_mono_ms());
        shop(&h, s, m);
    }
    curl_easy_cleanup(h.curl);
    free(h.body);
    return NULL;
}

/* ------------------------------------------------------------ faults */

static int svc(const char *action, const char *name)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s' svc %s %s >/dev/null 2>&1", env("PAYSTREAM_DEV"), action,
             name);
    int rc = system(cmd);
    if (rc != 0)
        say("scripts/dev svc %s %s failed (%d)", action, name, rc);
    return rc;
}

typedef enum { KILL_PAYMENTS, KILL_INTAKE, RESTART_POSTGRESQL, KILL_BROKER, START_BROKER } fault_t;

typedef struct {
    int64_t at_ms;
    fault_t what;
    int arg;
} planned_t;

static int by_time(const void *a, const void *b)
{
    const planned_t *x = a, *y = b;
    return (x->at_ms > y->at_ms) - (x->at_ms < y->at_ms);
}

static uint64_t rand_state;
static uint64_t next_rand(void)
{
    rand_state ^= rand_state << 13;
    rand_state ^= rand_state >> 7;
    rand_state ^= rand_state << 17;
    return rand_state;
}

static int faults_injected;

static void inject(const planned_t *p)
{
    char name[16];
    switch (p->what) {
    case KILL_PAYMENTS:
        snprintf(name, sizeof(name), "%s", p->arg ? "payments2" : "payments");
        say("fault: SIGKILL %s; started again 1 s later", name);
        svc("kill", name);
        ps_sleep_ms(1000);
        svc("start", name);
        break;
    case KILL_INTAKE:
        say("fault: SIGKILL intake; started again at once");
        svc("kill", "intake");
        svc("start", "intake");
        break;
    case RESTART_POSTGRESQL:
        say("fault: PostgreSQL restarted in immediate mode (a crash and recovery)");
        svc("crash", "postgresql");
        break;
    case KILL_BROKER:
        snprintf(name, sizeof(name), "kafka%d", p->arg);
        say("fault: SIGKILL Kafka broker %d of 3; started again 15 s later", p->arg);
        svc("kill", name);
        break;
    case START_BROKER:
        snprintf(name, sizeof(name), "kafka%d", p->arg);
        say("Kafka broker %d started again", p->arg);
        svc("start", name);
        return;
    }
    faults_injected++;
}

static void *faults(void *arg)
{
    (void)arg;
    planned_t plan[8];
    int n = 0;
    int64_t span = (int64_t)opt.seconds * 1000;
    rand_state = opt.seed * 2654435761u + 1;
#define AT() (span / 10 + (int64_t)(next_rand() % (uint64_t)(span * 7 / 10)))
    for (int i = 0; i < 3; i++)
        plan[n++] = (planned_t){AT(), KILL_PAYMENTS, i % 2};
    plan[n++] = (planned_t){AT(), KILL_INTAKE, 0};
    plan[n++] = (planned_t){AT(), RESTART_POSTGRESQL, 0};
    int broker = 1 + (int)(next_rand() % 3);
    int64_t killed = AT();
    plan[n++] = (planned_t){killed, KILL_BROKER, broker};
    plan[n++] = (planned_t){killed + 15000, START_BROKER, broker};
#undef AT
    qsort(plan, (size_t)n, sizeof(plan[0]), by_time);
    for (int i = 0; i < n; i++) {
        int64_t wait = started_ms + plan[i].at_ms - ps_mono_ms();
        if (wait > 0)
            ps_sleep_ms(wait);
        inject(&plan[i]);
    }
    return NULL;
}

/* ------------------------------------------------------------ checks */

static PGconn *db;
static int failures;
static char *started_at; /* PostgreSQL's now() when the run began */

static char *sql(const char *query, ...) __attribute__((format(printf, 1, 2)));
static char *sql(const char *query, ...)
{
    char *text = NULL;
    va_list ap;
    va_start(ap, query);
    if (vasprintf(&text, query, ap) < 0)
        abort();
    va_end(ap);
    for (int attempt = 0;; attempt++) {
        if (PQstatus(db) != CONNECTION_OK)
            PQreset(db);
        PGresult *res = PQexec(db, text);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            char *v = ps_xstrdup(PQntuples(res) && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0)
                                                                           : "");
            PQclear(res);
            free(text);
            return v;
        }
        if (attempt == 20) {
            fprintf(stderr, "paystream-chaos: %s\n%s", text, PQerrorMessage(db));
            exit(1);
        }
        PQclear(res);
        ps_sleep_ms(500);
    }
}

static void check(const char *what, long checked, const char *bad)
{
    long n = atol(bad);
    printf("check: %-62s %8ld checked, %ld wrong: %s\n", what, checked, n, n ? "FAIL" : "ok");
    failures += n != 0;
}

/* Waits until query returns want (or more); returns what it last returned. */
static long wait_for(const char *what, const char *query, long want)
{
    int64_t end = ps_mono_ms() + DRAIN_MS;
    long got;
    for (;;) {
        char *v = sql("%s", query);
        got = atol(v);
        free(v);
        if (got >= want || ps_mono_ms() > end)
            break;
        ps_sleep_ms(500);
    }
    say("%s: %ld of %ld", what, got, want);
    return got;
}

/* The expected end of every intent whose events were all answered 2xx, as
 * a temporary table. */
static long load_expected_intents(void)
{
    free(sql("CREATE TEMP TABLE expected_intents (pi text PRIMARY KEY, status text, "
             "captured bigint, refunded bigint, events int)"));
    PGresult *res = PQexec(db, "COPY expected_intents FROM STDIN");
    PQclear(res);
    long n = 0;
    long made = atomic_load(&intents_made);
    for (long k = 0; k < made && k < intents_max; k++) {
        mix_intent_t it;
        mix_intent(&it, run_tag, k, opt.seed, 0);
        if (intent_acked[k] != it.nevents)
            continue;
        char line[256];
        int len = snprintf(line, sizeof(line), "%s\t%s\t%lld\t%lld\t%d\n", it.pi, mix_status(&it),
                           (long long)mix_captured(&it), (long long)it.refunded, it.nevents);
        PQputCopyData(db, line, len);
        n++;
    }
    PQputCopyEnd(db, NULL);
    PQclear(PQgetResult(db));
    return n;
}

static long load_flows(void)
{
    free(sql("CREATE TEMP TABLE flows (order_id text, payment_id text, total bigint, "
             "paid boolean, refunded bigint)"));
    PGresult *res = PQexec(db, "COPY flows FROM STDIN");
    PQclear(res);
    long n = 0;
    for (long m = 0; m < opt.orders; m++) {
        const flow_t *f = &flows[m];
        if (!f->order[0])
            continue;
        char line[256];
        int len = snprintf(line, sizeof(line), "%s\t%s\t%lld\t%s\t%lld\n", f->order,
                           f->payment[0] ? f->payment : "\\N", (long long)f->total,
                           f->paid ? "t" : "f", (long long)f->refunded);
        PQputCopyData(db, line, len);
        n++;
    }
    PQputCopyEnd(db, NULL);
    PQclear(PQgetResult(db));
    return n;
}

static void check_webhooks(void)
{
    char like[64], q[512];
    snprintf(like, sizeof(like), "evt\\_%s\\_%%", run_tag);
    long acked = atomic_load(&events_acked);
    snprintf(q, sizeof(q), "SELECT count(*) FROM stripe_events WHERE id LIKE '%s'", like);
    long stored = wait_for("events stored", q, acked);
    char missing[32];
    snprintf(missing, sizeof(missing), "%ld", acked > stored ? acked - stored : 0);
    check("events answered 2xx and not stored", acked, missing);
    char *extra = sql("SELECT count(*) - %ld FROM stripe_events WHERE id LIKE '%s'", acked, like);
    check("events stored that were never answered 2xx (or twice)", acked, extra);
    free(extra);

    long intents = load_expected_intents();
    char *bad = sql(
        "SELECT count(*) FROM expected_intents e "
        "LEFT JOIN LATERAL (SELECT count(*) AS n, min(status) AS status, "
        "       min(captured_minor) AS captured, min(refunded_minor) AS refunded "
        "       FROM payments WHERE gateway_payment_id = e.pi) p ON true "
        "WHERE p.n <> 1 OR p.status <> e.status OR p.captured <> e.captured "
        "   OR p.refunded <> e.refunded");
    check("intents whose payment is not once, as its events say", intents, bad);
    free(bad);
    bad = sql("SELECT count(*) FROM expected_intents e JOIN payments p ON p.gateway_payment_id = e.pi "
              "WHERE (SELECT count(*) FILTER (WHERE t.type = 'charge') FROM transactions t "
              "       WHERE t.payment_id = p.id) <> (e.captured > 0)::int "
              "   OR (SELECT count(*) FILTER (WHERE t.type = 'refund') FROM transactions t "
              "       WHERE t.payment_id = p.id) <> (e.refunded > 0)::int");
    check("intents whose ledger has a charge or refund twice or never", intents, bad);
    free(bad);
}

static void check_commands(void)
{
    long flows_acked = load_flows();
    char *paid = sql("SELECT count(*) FROM flows WHERE paid");
    char *bad = sql(
        "SELECT count(*) FROM flows f "
        "WHERE (SELECT count(*) FROM orders o WHERE o.id = f.order_id) <> 1 "
        "   OR (SELECT count(*) FROM commands c WHERE c.resource_id = f.order_id "
        "       AND c.type = 'order.create') <> 1");
    check("orders answered 201 not there once, by one command", flows_acked, bad);
    free(bad);
    bad = sql(
        "SELECT count(*) FROM flows f JOIN payments p ON p.id = f.payment_id "
        "WHERE f.paid AND (p.captured_minor <> f.total OR p.refunded_minor <> f.refunded "
        "   OR (SELECT count(*) FROM commands c WHERE c.resource_id = f.payment_id "
        "       AND c.type = 'payment.process') <> 1 "
        "   OR (SELECT count(*) FROM commands c WHERE c.resource_id = f.payment_id "
        "       AND c.type = 'payment.refund') <> (f.refunded > 0)::int)");
    check("payments processed and refunded not exactly as answered", atol(paid), bad);
    free(bad);
    bad = sql("SELECT count(*) FROM flows f WHERE f.paid AND NOT EXISTS "
              "(SELECT 1 FROM payments p WHERE p.id = f.payment_id)");
    check("payments answered 200 that do not exist", atol(paid), bad);
    free(bad);
    free(paid);
}

static void check_ledger(void)
{
    char *n = sql("SELECT count(*) FROM payments");
    char *bad = sql("SELECT count(*) FROM dash_ledger_mismatches");
    check("payments whose ledger does not sum to captured - refunded", atol(n), bad);
    free(n);
    free(bad);
}

static void check_stock(void)
{
    /* Every paid order's stock is committed once inventory has its event. */
    char q[600];
    snprintf(q, sizeof(q),
             "SELECT count(DISTINCT r.order_id) FROM stock_reservations r "
             "JOIN flows f ON f.order_id = r.order_id AND f.paid WHERE r.status = 'committed'");
    char *paid = sql("SELECT count(*) FROM flows WHERE paid");
    wait_for("paid orders whose stock is committed", q, atol(paid));
    free(paid);
    char *n = sql("SELECT count(*) FROM products WHERE sku LIKE 'chaos\\_%s\\_%%'", run_tag);
    char *bad = sql(
        "WITH given AS (SELECT sku, sum(stock_delta) FILTER (WHERE kind = 'set') AS given "
        "               FROM stock_movements GROUP BY sku), "
        "     sold AS (SELECT sku, coalesce(sum(quantity) FILTER (WHERE status = 'committed'), 0) "
        "              AS sold, coalesce(sum(quantity) FILTER (WHERE status = 'reserved'), 0) "
        "              AS held FROM stock_reservations GROUP BY sku) "
        "SELECT count(*) FROM products p JOIN given g USING (sku) LEFT JOIN sold s USING (sku) "
        "WHERE p.sku LIKE 'chaos\\_%s\\_%%' AND (p.stock + coalesce(s.sold, 0) <> g.given "
        "   OR p.reserved <> coalesce(s.held, 0) OR p.reserved > p.stock OR p.stock < 0)",
        run_tag);
    check("products whose stock books do not balance", atol(n), bad);
    free(n);
    free(bad);
}

static void check_emails(void)
{
    wait_for("notifications of the run sent or failed",
             "SELECT (count(*) = 0)::int FROM notifications WHERE status IN ('pending', 'sending') "
             "AND target LIKE 'shopper-%@chaos.test'", 1);
    char *sent = sql("SELECT count(*) FROM notifications WHERE status = 'sent' "
                     "AND target LIKE 'shopper-%%@chaos.test'");
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "grep -h -m1 '^Message-ID:' '%s'/new/* 2>/dev/null | sort | uniq -d | wc -l",
             env("PAYSTREAM_MAIL_DIR"));
    FILE *p = popen(cmd, "r");
    char twice[32] = "0";
    if (p == NULL || fgets(twice, sizeof(twice), p) == NULL)
        snprintf(twice, sizeof(twice), "1");
    if (p)
        pclose(p);
    check("emails sent twice for the same event and address", atol(sent), twice);
    free(sent);
}

/* ------------------------------------------------------------- setup */

/* PostgreSQL's notices (its restart's "terminating connection") are not
 * this program's output. */
static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static void setup(void)
{
    db = PQconnectdb(env("PAYSTREAM_PG_DSN"));
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "paystream-chaos: %s", PQerrorMessage(db));
        exit(2);
    }
    PQsetNoticeProcessor(db, quiet, NULL);
    started_at = sql("SELECT now()");
    free(sql("SELECT count(ps_product_put('chaos_%s_' || i, 'Chaos ' || i, %d)) "
             "FROM generate_series(0, %d) i", run_tag, STOCK_EACH, PRODUCTS - 1));
    for (int s = 0; s < SHOPPERS; s++) {
        char cmd[512], key[256] = "";
        snprintf(cmd, sizeof(cmd), "'%s/services/admin/paystream-admin' apikey create --user "
                 "chaos_%s_shopper%d --sandbox", env("PAYSTREAM_BUILD_DIR"), run_tag, s);
        FILE *p = popen(cmd, "r");
        if (p == NULL || fgets(key, sizeof(key), p) == NULL) {
            fprintf(stderr, "paystream-chaos: cannot issue an API key\n");
            exit(2);
        }
        pclose(p);
        key[strcspn(key, "\n")] = '\0';
        api_keys[s] = ps_xstrdup(key);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: paystream-chaos [--events N] [--orders M] [--seconds S] [--seed X]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--events") == 0)
            opt.events = atol(argv[++i]);
        else if (strcmp(argv[i], "--orders") == 0)
            opt.orders = atol(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0)
            opt.seconds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0)
            opt.seed = strtoull(argv[++i], NULL, 10);
        else
            usage();
    }
    if (opt.events < 100 || opt.orders < 1 || opt.seconds < 30)
        usage();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(run_tag, sizeof(run_tag), "c%lx", (unsigned long)time(NULL));
    intents_max = opt.events; /* more than enough: each has 3 events or more */
    intent_acked = ps_xcalloc((size_t)intents_max, 1);
    flows = ps_xcalloc((size_t)opt.orders, sizeof(*flows));
    setup();

    started_ms = ps_mono_ms();
    say("run %s: %ld events of Stripe's mix and %ld shoppers' orders over %d s, seed %llu",
        run_tag, opt.events, opt.orders, opt.seconds, (unsigned long long)opt.seed);
    pthread_t posters[POSTERS], shoppers[SHOPPERS], injector;
    for (int i = 0; i < POSTERS; i++)
        pthread_create(&posters[i], NULL, poster, NULL);
    for (int i = 0; i < SHOPPERS; i++)
        pthread_create(&shoppers[i], NULL, shopper, (void *)(intptr_t)i);
    pthread_create(&injector, NULL, faults, NULL);
    for (int i = 0; i < POSTERS; i++)
        pthread_join(posters[i], NULL);
    for (int i = 0; i < SHOPPERS; i++)
        pthread_join(shoppers[i], NULL);
    pthread_join(injector, NULL);
    say("stream over: %ld events answered 2xx, %ld requests never, %ld retries after a "
        "failed answer; %d faults injected",
        atomic_load(&events_acked), atomic_load(&unacknowledged), atomic_load(&answers_retried),
        faults_injected);

    check_webhooks();
    check_commands();
    check_ledger();
    check_stock();
    check_emails();
    char *dead = sql("SELECT count(*) FROM dead_letters WHERE created_at >= '%s'", started_at);
    check("messages dead-lettered during the run", atomic_load(&events_posted) + opt.orders, dead);
    free(dead);
    char never[32];
    snprintf(never, sizeof(never), "%ld", atomic_load(&unacknowledged));
    check("requests never answered 2xx within 3 minutes of retrying",
          atomic_load(&events_posted) + opt.orders, never);
    printf("chaos: %s\n", failures ? "FAILED" : "every check holds");
    PQfinish(db);
    free(started_at);
    curl_global_cleanup();
    return failures ? 1 : 0;
}
