/* reconcile --since TIME [--page N]: after an outage longer than Stripe's
 * retries (three days), lists the events Stripe has since TIME (GET
 * /v1/events, page by page; Stripe keeps 30 days of them) and feeds those
 * paystream has not recorded in stripe_events through the normal pipeline:
 * to the topic and under the key the intake would have used, oldest first,
 * with an envelope of source "reconcile". The payments worker then applies
 * them as if their webhooks had come, with the same dedupe and staleness
 * rules. Events of connected accounts are listed by Stripe per account and
 * are not read here. */
#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "paystream/config.h"
#include "paystream/envelope.h"
#include "paystream/kafka.h"
#include "paystream/pg.h"
#include "paystream/stripe_event.h"
#include "paystream/util.h"

#define PAGE_DEFAULT 100
#define ANSWER_MAX (16 * 1024 * 1024)
#define TIMEOUT_MS 30000

/* One page of GET /v1/events, or NULL after saying why on stderr. */
static json_t *events_page(const char *since, int page, const char *after)
{
    char url[512], auth[256];
    snprintf(url, sizeof(url), "%s/v1/events?created%%5Bgte%%5D=%s&limit=%d%s%s",
             ps_config_str("STRIPE_API_BASE"), since, page, after ? "&starting_after=" : "",
             after ? after : "");
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", ps_config_str("STRIPE_SECRET_KEY"));
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, auth);
    ps_buf_t a = {.max = ANSWER_MAX};
    long http = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ps_buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)TIMEOUT_MS);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    json_t *root = a.data ? json_loads(a.data, 0, NULL) : NULL;
    free(a.data);
    if (rc != CURLE_OK || http != 200 || !json_is_array(json_object_get(root, "data"))) {
        const char *msg = json_string_value(json_object_get(json_object_get(root, "error"),
                                                            "message"));
        fprintf(stderr, "paystream-admin: Stripe's events could not be listed (%s, HTTP %ld)%s%s\n",
                curl_easy_strerror(rc), http, msg ? ": " : "", msg ? msg : "");
        json_decref(root);
        return NULL;
    }
    return root;
}

/* The ids of events (an array) that stripe_events does not have. */
static json_t *missing_ids(ps_pg_t *pg, json_t *events)
{
    json_t *ids = json_array(), *e;
    size_t i;
    json_array_foreach(events, i, e)
        json_array_append(ids, json_object_get(e, "id"));
    char *text = json_dumps(ids, JSON_COMPACT);
    const char *params[] = {text};
    ps_pg_err_t err;
    PGresult *res = ps_pg_query(pg,
                                "SELECT coalesce(jsonb_agg(x), '[]')::text FROM "
                                "jsonb_array_elements_text($1::jsonb) x WHERE NOT EXISTS "
                                "(SELECT 1 FROM stripe_events s WHERE s.id = x)",
                                1, params, &err);
    json_t *missing = res ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    if (res == NULL)
        fprintf(stderr, "paystream-admin: %s\n", err.message);
    PQclear(res);
    free(text);
    json_decref(ids);
    return missing;
}

static int contains(json_t *ids, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        if (strcmp(json_string_value(v), id) == 0)
            return 1;
    }
    return 0;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : NULL;
}

/* Feeds event into the pipeline as the intake would publish it. */
static int feed(rd_kafka_t *p, json_t *event)
{
    json_t *obj = json_object_get(json_object_get(event, "data"), "object");
    ps_stripe_key_t k = {
        .id = str(event, "id"), .type = str(event, "type"), .account = str(event, "account"),
        .object_id = str(obj, "id"), .payment_intent = str(obj, "payment_intent"),
        .customer = str(obj, "customer"),
    };
    ps_envelope_t env;
    ps_envelope_init(&env, "reconcile", k.type ? k.type : "");
    char *value = json_dumps(event, JSON_COMPACT), err[256];
    const char *key = ps_stripe_event_key(&k, k.account != NULL);
    int rc = ps_kafka_produce_sync(p, ps_stripe_event_topic(&k), key, strlen(key), value,
                                   strlen(value), ps_envelope_to_headers(&env), TIMEOUT_MS, err,
                                   sizeof(err));
    if (rc < 0)
        fprintf(stderr, "paystream-admin: %s not fed: %s\n", k.id, err);
    free(value);
    return rc;
}

int cmd_reconcile(int argc, char **argv)
{
    const char *since_text = NULL;
    int page = PAGE_DEFAULT, bad = 0;
    for (int i = 0; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--since") == 0 && i + 1 < argc)
            since_text = argv[++i];
        else if (strcmp(argv[i], "--page") == 0 && i + 1 < argc)
            page = atoi(argv[++i]);
        else
            bad = 1;
    }
    struct tm tm = {0};
    const char *end = since_text ? strptime(since_text, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    if (bad || end == NULL || *end != '\0' || page < 1 || page > 100) {
        fprintf(stderr, "paystream-admin: reconcile --since TIME [--page 1..100]\n"
                        "  TIME: 2026-12-01T10:00:00Z (UTC); Stripe keeps 30 days of events\n");
        return 2;
    }
    if (*ps_config_str("STRIPE_SECRET_KEY") == '\0') {
        fprintf(stderr, "paystream-admin: reconcile needs STRIPE_SECRET_KEY\n");
        return 2;
    }
    char since[24], err[512];
    snprintf(since, sizeof(since), "%lld", (long long)timegm(&tm));
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before librdkafka's threads */
    ps_pg_t *pg = ps_pg_connect(ps_config_str("PAYSTREAM_PG_DSN"), NULL, 0, err, sizeof(err));
    rd_kafka_t *p = pg ? ps_kafka_producer_new(ps_config_str("PAYSTREAM_KAFKA_BROKERS"),
                                               "paystream-admin-reconcile", ps_kafka_dr_sync,
                                               TIMEOUT_MS, 0, err, sizeof(err))
                       : NULL;
    if (p == NULL) {
        fprintf(stderr, "paystream-admin: %s\n", err);
        ps_pg_close(pg);
        curl_global_cleanup();
        return 1;
    }
    json_t *missing = json_array(); /* newest first, as Stripe lists them */
    int64_t listed = 0;
    int failed = 0, more = 1;
    char after[128] = "";
    while (more && !failed) {
        json_t *root = events_page(since, page, after[0] ? after : NULL);
        json_t *data = json_object_get(root, "data"), *absent = root ? missing_ids(pg, data) : NULL, *e;
        size_t i;
        if (absent == NULL) {
            failed = 1;
        } else {
            json_array_foreach(data, i, e) {
                if (contains(absent, str(e, "id") ? str(e, "id") : ""))
                    json_array_append(missing, e);
            }
            listed += (int64_t)json_array_size(data);
            more = json_is_true(json_object_get(root, "has_more")) && json_array_size(data) > 0;
            const char *last = str(json_array_get(data, json_array_size(data) - 1), "id");
            if (more && last)
                ps_strlcpy(after, last, sizeof(after));
            more = more && last;
            fprintf(stderr, "reconcile: %" PRId64 " events listed, %zu missing so far\n", listed,
                    json_array_size(missing));
        }
        json_decref(absent);
        json_decref(root);
    }
    size_t fed = 0, n = json_array_size(missing);
    for (size_t i = n; i-- > 0 && !failed;) /* oldest first */
        fed += feed(p, json_array_get(missing, i)) == 0;
    printf("reconcile since %s: %" PRId64 " events at Stripe, %" PRId64
           " already applied, %zu fed to the pipeline, %zu not fed%s\n",
           since_text, listed, listed - (int64_t)n, fed, n - fed,
           failed ? "; the listing stopped early, run it again" : "");
    json_decref(missing);
    rd_kafka_destroy(p);
    ps_pg_close(pg);
    curl_global_cleanup();
    return failed || fed < n ? 1 : 0;
}
