/* The workers' metrics: after a small run (a card payment, a Stripe
 * event, an email, a usage record, a command without an actor, which can
 * only be dead-lettered), each worker serves every metric deploy/dashboards/README.md
 * documents for it, the counts show the run, and no worker serves a
 * metric the document does not name. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "paystream/kafka.h"
#include "support.h"

#define DOC PS_SOURCE_DIR "/deploy/dashboards/README.md"

static const char *const WAIT[] = {"Prefer: wait=30", NULL};

static const struct {
    const char *name, *env;
} workers[] = {
    {"payments", "PAYSTREAM_METRICS_URL_PAYMENTS"},
    {"connect-accounts", "PAYSTREAM_METRICS_URL_CONNECT_ACCOUNTS"},
    {"inventory", "PAYSTREAM_METRICS_URL_INVENTORY"},
    {"notifications", "PAYSTREAM_METRICS_URL_NOTIFICATIONS"},
};
#define NWORKERS (sizeof(workers) / sizeof(workers[0]))

static char *scrape(const char *env)
{
    int status;
    char *text = ts_sh(&status, "curl -fsS '%s'", ts_env(env));
    cr_assert_eq(status, 0, "GET %s", ts_env(env));
    return text;
}

/* The value of the first series of text that starts with series (a name,
 * or a name and the start of its labels), or -1. */
static double value_of(const char *text, const char *series)
{
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, series, strlen(series)) == 0) {
            /* The value follows the labels, whose values may hold spaces. */
            const char *end = strchr(line, '\n'), *brace = strchr(line, '{');
            const char *from = brace && (end == NULL || brace < end) ? strstr(brace, "} ") : line;
            const char *sp = from ? strchr(from, ' ') : NULL;
            if (sp && (end == NULL || sp < end))
                return strtod(sp + 1, NULL);
        }
    }
    return -1;
}

/* Whether worker's row of the document's workers column names it. */
static int serves(const char *column, const char *worker)
{
    if (strncmp(column, "all", 3) == 0)
        return 1;
    const char *at = strstr(column, worker);
    return at && (at == column || at[-1] == ' ') && !isalpha((unsigned char)at[strlen(worker)]) &&
           at[strlen(worker)] != '-';
}

/* Waits until worker's series reaches at least min; returns its value. */
static double wait_at_least(const char *env, const char *series, double min)
{
    double v = -1;
    for (int i = 0; i < TS_WAIT_MS / 200; i++) {
        char *text = scrape(env);
        v = value_of(text, series);
        free(text);
        if (v >= min)
            return v;
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("%s: %s is %g, expected at least %g", env, series, v, min);
    return v;
}

static void small_run(void)
{
    char user[64], path[160], body[256];
    ts_unique(user, sizeof(user), "metrics_");
    char *order = ts_call(user, "POST", "/api/v1/orders",
                          "{\"currency\":\"eur\",\"email\":\"m@example.com\",\"items\":"
                          "[{\"product_id\":\"sku_metrics\",\"quantity\":1,\"unit_price\":\"3.00\"}]}",
                          201, "id");
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"3.00\",\"currency\":\"eur\"}",
             order);
    char *payment = ts_call(user, "POST", "/api/v1/payments", body, 201, "id");
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    free(ts_call(user, "POST", path, "{\"payment_method\":\"pm_card_visa\"}", 200, NULL));
    char evt[64];
    ts_unique(evt, sizeof(evt), "evt_metrics_");
    char *event = ts_succeeded_event(evt, "pi_metrics_unknown", 300);
    ts_http_t r = ts_post_signed("/webhooks/stripe", event, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    snprintf(body, sizeof(body), "{\"email\":\"%s@example.com\"}", user);
    r = ts_api("POST", "/api/v1/customers", user, WAIT, body);
    cr_assert_eq(r.status, 201, "%s", r.body);
    ts_http_free(&r);
    r = ts_api("POST", "/api/v1/usage", user, WAIT,
               "{\"meter\":\"api_call\",\"quantity\":1,\"identifier\":\"metrics-1\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    ts_http_free(&r);
    ts_produce(PS_TOPIC_COMMANDS_PAYMENTS, user, "order.create", "{\"not\": \"a command\"}");
    free(event), free(payment), free(order);
}

Test(metrics, every_documented_worker_metric_is_served_and_counts_a_small_run, .timeout = 300)
{
    small_run();

    /* The run, counted. */
    const char *pay = "PAYSTREAM_METRICS_URL_PAYMENTS";
    wait_at_least(pay, "paystream_messages_total{outcome=\"applied\"}", 3);
    wait_at_least(pay, "paystream_batch_apply_seconds_count", 1);
    wait_at_least(pay, "paystream_gateway_calls_total{gateway=\"stripe\",kind=\"charge\","
                       "outcome=\"succeeded\"}", 1);
    wait_at_least(pay, "paystream_gateway_call_seconds_count{gateway=\"stripe\",kind=\"charge\"}",
                  1);
    wait_at_least(pay, "paystream_dead_letters_total{topic=\"paystream.commands.payments\","
                       "reason=\"bad envelope\"}", 1);
    wait_at_least(pay, "paystream_meter_events_total{result=\"reported\"}", 1);
    wait_at_least(pay, "paystream_consumer_lag{topic=\"paystream.", 0);
    wait_at_least("PAYSTREAM_METRICS_URL_NOTIFICATIONS",
                  "paystream_notification_attempts_total{channel=\"email\",result=\"sent\"}", 1);
    wait_at_least("PAYSTREAM_METRICS_URL_NOTIFICATIONS",
                  "paystream_notifications_queued{channel=\"email\"}", 0);
    wait_at_least("PAYSTREAM_METRICS_URL_INVENTORY", "paystream_messages_total{outcome=", 1);
    /* The relay that holds the lock publishes, as soon as it is woken: a
     * worker restarted by an earlier suite counts from zero again. */
    double published = 0;
    for (int i = 0; i < TS_WAIT_MS / 200 && published == 0; i++) {
        if (i > 0)
            nanosleep(&(struct timespec){0, 200 * 1000000L}, NULL);
        for (size_t w = 0; w < 3; w++) {
            char *text = scrape(workers[w].env);
            double v = value_of(text, "paystream_outbox_published_total");
            published += v > 0 ? v : 0;
            cr_assert_geq(value_of(text, "paystream_outbox_backlog"), 0, "%s", workers[w].name);
            free(text);
        }
    }
    cr_assert_gt(published, 0, "a relay published the run's domain events");

    /* The document and what is served, both ways. */
    FILE *f = fopen(DOC, "r");
    cr_assert_not_null(f, DOC);
    char line[1024];
    int in_table = 0, documented = 0;
    char names[64][80];
    size_t nnames = 0;
    char *texts[NWORKERS];
    for (size_t w = 0; w < NWORKERS; w++)
        texts[w] = scrape(workers[w].env);
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, "<!-- worker metrics"))
            in_table = 1;
        else if (strstr(line, "<!-- end of worker metrics"))
            in_table = 0;
        if (!in_table || strncmp(line, "| `paystream_", 13) != 0)
            continue;
        char name[80];
        size_t n = strcspn(line + 3, "{`");
        cr_assert_lt(n, sizeof(name));
        memcpy(name, line + 3, n);
        name[n] = '\0';
        snprintf(names[nnames++], sizeof(names[0]), "%s", name);
        const char *column = strchr(line + 1, '|'); /* the cell after the name's */
        cr_assert_not_null(column);
        column += 2;
        char type_line[128];
        snprintf(type_line, sizeof(type_line), "# TYPE %s ", name);
        for (size_t w = 0; w < NWORKERS; w++) {
            if (serves(column, workers[w].name))
                cr_assert(strstr(texts[w], type_line), "%s serves %s", workers[w].name, name);
        }
        documented++;
    }
    fclose(f);
    cr_assert_geq(documented, 16, "the table was found");
    for (size_t w = 0; w < NWORKERS; w++) {
        for (const char *t = strstr(texts[w], "# TYPE "); t; t = strstr(t + 1, "# TYPE ")) {
            char name[80];
            sscanf(t + 7, "%79s", name);
            size_t i = 0;
            while (i < nnames && strcmp(names[i], name) != 0)
                i++;
            cr_assert_lt(i, nnames, "%s serves %s, which " DOC " does not document",
                         workers[w].name, name);
        }
        free(texts[w]);
    }
}

/* Every metric name in file (paystream_...; a histogram's _bucket, _sum
 * and _count count as the histogram) is documented in DOC. */
static void only_documented(const char *file)
{
    char *doc = ts_sh(NULL, "grep -o '^| `paystream_[a-z_]*' '%s' | cut -c4-", DOC);
    char *used = ts_sh(NULL, "grep -o 'paystream_[a-z_]*' '%s' | sort -u", file);
    cr_assert(strlen(doc) > 200, "the document's tables were read");
    int checked = 0;
    for (char *save = NULL, *name = strtok_r(used, "\n", &save); name;
         name = strtok_r(NULL, "\n", &save)) {
        if (strcmp(name, "paystream_") == 0)
            continue;
        char base[96];
        snprintf(base, sizeof(base), "%s", name);
        static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
        for (size_t i = 0; i < 3; i++) {
            size_t n = strlen(base), k = strlen(suffixes[i]);
            if (n > k && strcmp(base + n - k, suffixes[i]) == 0)
                base[n - k] = '\0';
        }
        char needle[100];
        snprintf(needle, sizeof(needle), "%s\n", base);
        cr_assert(strstr(doc, needle), "%s uses %s, which " DOC " does not document", file, name);
        checked++;
    }
    cr_assert_gt(checked, 5, "%s names metrics", file);
    free(doc);
    free(used);
}

Test(metrics, the_alerts_and_the_dashboard_use_documented_metrics)
{
    only_documented(PS_SOURCE_DIR "/deploy/prometheus/alerts.yml");
    only_documented(PS_SOURCE_DIR "/deploy/grafana/dashboards/paystream.json");
}

/* GET url with curl; returns the HTTP status (0: no answer). */
static long http_status(const char *url)
{
    char *out = ts_sh(NULL, "curl -gs -o /dev/null -w '%%{http_code}' --max-time 5 '%s'", url);
    long status = atol(out);
    free(out);
    return status;
}

/* Restarts service with var set to value in its environment (NULL: as
 * run/env has it). */
static void restart_with(const char *service, const char *var, const char *value)
{
    if (value)
        setenv(var, value, 1);
    else
        unsetenv(var);
    cr_assert_eq(ts_svc("restart", service), 0, "%s restarted", service);
}

/* Waits until url answers 200. */
static int answers(const char *url)
{
    for (int i = 0; i < 100; i++) {
        if (http_status(url) == 200)
            return 1;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

Test(metrics, the_intake_and_the_workers_metrics_listen_on_ipv6_and_ipv4, .timeout = 180)
{
    char v6[128], v4[128];
    const char *port = ts_env("PAYSTREAM_HTTP_PORT");
    restart_with("intake", "PAYSTREAM_HTTP_ADDR", "::");
    snprintf(v6, sizeof(v6), "http://[::1]:%s/billing", port);
    snprintf(v4, sizeof(v4), "http://127.0.0.1:%s/billing", port);
    int six = answers(v6), four = answers(v4);
    restart_with("intake", "PAYSTREAM_HTTP_ADDR", NULL);
    cr_assert(six, "the intake answers on IPv6 (%s)", v6);
    cr_assert(four, "and on IPv4 (%s)", v4);
    cr_assert(answers(v4), "back on its own address");
    cr_assert_eq(http_status(v6), 0, "127.0.0.1 alone takes no IPv6");

    const char *metrics = ts_env("PAYSTREAM_METRICS_URL_INVENTORY"); /* http://127.0.0.1:P/metrics */
    const char *mport = strrchr(metrics, ':') + 1;
    restart_with("inventory", "PAYSTREAM_METRICS_ADDR", "::1");
    snprintf(v6, sizeof(v6), "http://[::1]:%.*s/metrics", (int)strcspn(mport, "/"), mport);
    int served = answers(v6);
    restart_with("inventory", "PAYSTREAM_METRICS_ADDR", NULL);
    cr_assert(served, "a worker serves its metrics on IPv6 (%s)", v6);
    cr_assert(answers(metrics), "and on IPv4 again");
}
