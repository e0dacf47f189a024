/* PayPal webhooks: POST /webhooks/paypal. The signature is checked as
 * PayPal documents (paypal_sig.h) against each id of PAYPAL_WEBHOOK_ID,
 * with the certificate PAYPAL-CERT-URL names, fetched once per URL and
 * only from PayPal's certificate addresses (PAYPAL_CERT_URL_PREFIXES); a
 * verified event is published to paystream.paypal.events keyed by its
 * PayPal order, as Stripe's are by their payment intent, and answered 200
 * only once Kafka has it. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "intake.h"
#include "paystream/config.h"
#include "paystream/json_scan.h"
#include "paystream/kafka.h"
#include "paystream/log.h"
#include "paystream/paypal_sig.h"
#include "paystream/util.h"

#define CERTS_MAX 8
#define CERT_URL_MAX 500
#define CERT_BYTES_MAX (64 * 1024)
#define IDS_MAX 4
#define FETCHES_PER_S 1.0 /* certificates fetched, on average, */
#define FETCHES_BURST 5.0 /* and at once */

static struct {
    char ids[IDS_MAX][65]; /* PAYPAL_WEBHOOK_ID: the webhook's id(s) */
    int nids;
    char *prefixes;        /* PAYPAL_CERT_URL_PREFIXES, comma-separated */
    X509_STORE *store;
    pthread_mutex_t lock;  /* guards certs */
    struct {
        char url[CERT_URL_MAX + 1];
        EVP_PKEY *key;
    } certs[CERTS_MAX];
    int next; /* the entry to replace when all are taken */
    ratelimit_t *fetches; /* of certificates not cached */
} pp = {.lock = PTHREAD_MUTEX_INITIALIZER};

int paypal_webhooks_init(char *err, size_t errlen)
{
    char *ids = ps_xstrdup(ps_config_str("PAYPAL_WEBHOOK_ID")), *save = NULL;
    for (char *id = strtok_r(ids, ",", &save); id; id = strtok_r(NULL, ",", &save)) {
        if (pp.nids == IDS_MAX || !ps_is_token(id, 64)) {
            snprintf(err, errlen, "PAYPAL_WEBHOOK_ID: up to %d ids of PayPal's, comma-separated",
                     IDS_MAX);
            free(ids);
            return -1;
        }
        ps_strlcpy(pp.ids[pp.nids++], id, sizeof(pp.ids[0]));
    }
    free(ids);
    if (pp.nids == 0) {
        ps_log_warn("PAYPAL_WEBHOOK_ID not set; /webhooks/paypal answers 503 until it is", NULL);
        return 0;
    }
    /* Before any thread of the server: libcurl's set-up is not thread-safe. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot set up libcurl for PayPal's certificates");
        return -1;
    }
    pp.prefixes = ps_xstrdup(ps_config_str("PAYPAL_CERT_URL_PREFIXES"));
    pp.fetches = ratelimit_new(FETCHES_PER_S, FETCHES_BURST);
    const char *ca = ps_config_str("PAYPAL_CERT_CA_FILE");
    pp.store = X509_STORE_new();
    if (pp.store == NULL || (*ca ? X509_STORE_load_locations(pp.store, ca, NULL)
                                 : X509_STORE_set_default_paths(pp.store)) != 1) {
        snprintf(err, errlen, "cannot load the CA certificates for PayPal's (%s)",
                 *ca ? ca : "the system's");
        return -1;
    }
    return 0;
}

void paypal_webhooks_free(void)
{
    if (pp.nids == 0)
        return;
    for (int i = 0; i < CERTS_MAX; i++)
        EVP_PKEY_free(pp.certs[i].key);
    X509_STORE_free(pp.store);
    free(pp.prefixes);
    ratelimit_free(pp.fetches);
    curl_global_cleanup();
}

int paypal_webhooks_enabled(void)
{
    return pp.nids > 0;
}

/* Whether url starts with one of PayPal's certificate addresses. */
static int cert_url_allowed(const char *url)
{
    const char *p = pp.prefixes;
    while (p && *p) {
        size_t n = strcspn(p, ",");
        if (n > 0 && strncmp(url, p, n) == 0)
            return strlen(url) <= CERT_URL_MAX && strstr(url, "..") == NULL;
        p += n + (p[n] == ',');
    }
    return 0;
}

/* The checked key of the certificate at url, from the cache or fetched
 * (a new reference). NULL with *unavailable set when it could not be
 * fetched (PayPal retries on the 503 that follows), else NULL with why the
 * certificate is refused in err. */
static EVP_PKEY *cert_key(const char *url, int *unavailable, char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;
    *unavailable = 0;
    pthread_mutex_lock(&pp.lock);
    for (int i = 0; i < CERTS_MAX && key == NULL; i++) {
        if (pp.certs[i].key && strcmp(pp.certs[i].url, url) == 0 &&
            EVP_PKEY_up_ref(pp.certs[i].key) == 1)
            key = pp.certs[i].key;
    }
    pthread_mutex_unlock(&pp.lock);
    if (key)
        return key;
    /* The URL comes with the request and is fetched before the signature
     * can be checked: a few fetches a second at most, so that unsigned
     * requests naming new URLs cannot keep the HTTP threads waiting on
     * PayPal. A refused one is a 503, which PayPal retries. */
    if (ratelimit_take(pp.fetches, "cert") > 0) {
        *unavailable = 1;
        snprintf(err, errlen, "too many certificates fetched just now");
        return NULL;
    }

    ps_buf_t f = {.max = CERT_BYTES_MAX};
    long http = 0;
    CURL *c = curl_easy_init();
    CURLcode rc = CURLE_FAILED_INIT;
    if (c) {
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ps_buf_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
        curl_easy_cleanup(c);
    }
    if (rc != CURLE_OK || http != 200 || f.data == NULL) {
        *unavailable = 1;
        snprintf(err, errlen, "PayPal's certificate could not be fetched (%s, HTTP %ld)",
                 curl_easy_strerror(rc), http);
    } else if ((key = ps_paypal_cert_key(f.data, f.len, pp.store, PS_PAYPAL_CERT_NAME, err,
                                         errlen)) != NULL) {
        pthread_mutex_lock(&pp.lock);
        int slot = pp.next;
        pp.next = (pp.next + 1) % CERTS_MAX;
        EVP_PKEY_free(pp.certs[slot].key);
        ps_strlcpy(pp.certs[slot].url, url, sizeof(pp.certs[slot].url));
        pp.certs[slot].key = EVP_PKEY_up_ref(key) == 1 ? key : NULL;
        pthread_mutex_unlock(&pp.lock);
    }
    free(f.data);
    return key;
}

static void refuse(request_t *req, const char *code, const char *message, const char *param)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "endpoint=\"paypal\",reason=\"%s\"", code);
    ps_metric_add(intake.verify_failures, labels, 1);
    ps_log_warn("webhook signature rejected", "endpoint", "paypal", "reason", code, NULL);
    http_respond_error(req, 400, "invalid_request_error", code, message, param);
}

/* Whether the request carries a signature of one of the webhook's ids;
 * answers it when not. */
static int verified(request_t *req)
{
    const char *tid = http_header(req, "PAYPAL-TRANSMISSION-ID");
    const char *time = http_header(req, "PAYPAL-TRANSMISSION-TIME");
    const char *sig = http_header(req, "PAYPAL-TRANSMISSION-SIG");
    const char *url = http_header(req, "PAYPAL-CERT-URL");
    const char *algo = http_header(req, "PAYPAL-AUTH-ALGO");
    if (!tid || !time || !sig || !url || !algo || strlen(tid) > 100 || strlen(time) > 100) {
        refuse(req, "signature_missing",
               "PAYPAL-TRANSMISSION-ID, -TIME, -SIG, PAYPAL-CERT-URL and PAYPAL-AUTH-ALGO are "
               "required",
               "PAYPAL-TRANSMISSION-SIG");
        return 0;
    }
    if (strcmp(algo, "SHA256withRSA") != 0) {
        refuse(req, "signature_algorithm", "PAYPAL-AUTH-ALGO must be SHA256withRSA",
               "PAYPAL-AUTH-ALGO");
        return 0;
    }
    if (!cert_url_allowed(url)) {
        refuse(req, "cert_url_untrusted", "PAYPAL-CERT-URL is not one of PayPal's certificates",
               "PAYPAL-CERT-URL");
        return 0;
    }
    char why[256];
    int unavailable;
    EVP_PKEY *key = cert_key(url, &unavailable, why, sizeof(why));
    if (key == NULL && unavailable) {
        ps_log_warn("paypal certificate unavailable; answering 503", "detail", why, NULL);
        http_respond_error(req, 503, "api_error", "cert_unavailable",
                           "PayPal's certificate could not be fetched; retry later", NULL);
        return 0;
    }
    if (key == NULL) {
        refuse(req, "cert_untrusted", why, "PAYPAL-CERT-URL");
        return 0;
    }
    int ok = 0;
    for (int i = 0; i < pp.nids && !ok; i++)
        ok = ps_paypal_sig_ok(key, tid, time, pp.ids[i], req->body, req->len, sig);
    EVP_PKEY_free(key);
    if (!ok)
        refuse(req, "signature_mismatch",
               "the signature does not match this body for this server's webhook",
               "PAYPAL-TRANSMISSION-SIG");
    return ok;
}

enum { F_ROOT, F_ID, F_TYPE, F_CREATED, F_RESOURCE, F_RES_ID, F_ORDER, NFIELDS };
static const char *const field_paths[NFIELDS] = {
    [F_ROOT] = "", [F_ID] = "id", [F_TYPE] = "event_type", [F_CREATED] = "create_time",
    [F_RESOURCE] = "resource", [F_RES_ID] = "resource.id",
    [F_ORDER] = "resource.supplementary_data.related_ids.order_id",
};

void handle_paypal_webhook(request_t *req)
{
    if (pp.nids == 0) {
        http_respond_error(req, 503, "api_error", "not_configured",
                           "PAYPAL_WEBHOOK_ID is not configured on this server", NULL);
        return;
    }
    if (!verified(req))
        return;
    ps_json_field_t f[NFIELDS];
    for (int i = 0; i < NFIELDS; i++)
        f[i].path = field_paths[i];
    char why[160], msg[256];
    if (ps_json_scan(req->body, req->len, f, NFIELDS, why, sizeof(why)) < 0) {
        snprintf(msg, sizeof(msg), "body is not valid JSON: %s", why);
        http_respond_error(req, 400, "invalid_request_error", "malformed_json", msg, NULL);
        return;
    }
    const char *id = ps_json_str(&f[F_ID]), *type = ps_json_str(&f[F_TYPE]);
    const char *bad = f[F_ROOT].kind != PS_JSON_OBJECT                ? "(body)"
                      : id == NULL || !ps_is_token(id, 90)            ? "id"
                      : type == NULL || !*type || strlen(type) > 120  ? "event_type"
                      : ps_json_str(&f[F_CREATED]) == NULL            ? "create_time"
                      : f[F_RESOURCE].kind != PS_JSON_OBJECT          ? "resource"
                                                                       : NULL;
    if (bad) {
        snprintf(msg, sizeof(msg), "body is not a PayPal event: field %s is missing or invalid",
                 bad);
        http_respond_error(req, 400, "invalid_request_error", "not_a_paypal_event", msg, bad);
        return;
    }
    /* The PayPal order orders its events: an order's own id, or the order
     * a capture belongs to; else the resource, else the event. */
    const char *order = strncmp(type, "CHECKOUT.ORDER.", 15) == 0 ? ps_json_str(&f[F_RES_ID])
                                                                  : ps_json_str(&f[F_ORDER]);
    const char *key = order && *order ? order : ps_json_str(&f[F_RES_ID]);
    webhook_publish(req, PS_TOPIC_PAYPAL_EVENTS, "paypal", type, key && *key ? key : id, id);
}
