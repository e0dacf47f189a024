/* Outbound webhooks: a domain event posted to a subscriber's URL, signed as
 * Stripe signs its webhooks (t=<unix>,v1=<HMAC-SHA256 of "t.body">), so a
 * receiver can check it with the same code. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifications.h"
#include "paystream/stripe_sig.h"

char *hook_body(json_t *event)
{
    json_t *body = json_pack("{s:O?, s:s, s:O?, s:O?, s:O?, s:O?}", "id",
                             json_object_get(event, "message_id"), "object", "event", "type",
                             json_object_get(event, "type"), "aggregate",
                             json_object_get(event, "aggregate"), "occurred_at",
                             json_object_get(event, "occurred_at"), "data",
                             json_object_get(event, "data"));
    char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(body);
    if (text == NULL)
        abort(); /* only for want of memory */
    return text;
}

/* The answer's body is not wanted. */
static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

int hook_post(const char *url, const char *secret, const char *event_id, const char *body,
              long timeout_ms, char *err, size_t errlen)
{
    char sig[PS_SIG_HEADER_MAX], header[PS_SIG_HEADER_MAX + 32], id[160];
    if (ps_sig_sign(secret, body, strlen(body), (int64_t)time(NULL), sig, sizeof(sig)) < 0) {
        snprintf(err, errlen, "cannot sign the body");
        return -1;
    }
    snprintf(header, sizeof(header), "Paystream-Signature: %s", sig);
    snprintf(id, sizeof(id), "Paystream-Event-Id: %s", event_id);
    CURL *c = curl_easy_init();
    if (c == NULL) {
        snprintf(err, errlen, "cannot make a curl handle");
        return -1;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, header);
    h = curl_slist_append(h, id);
    h = curl_slist_append(h, "User-Agent: paystream-notifications");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s", curl_easy_strerror(rc));
        return -1;
    }
    if (status < 200 || status > 299) {
        snprintf(err, errlen, "answered HTTP %ld", status);
        return -1;
    }
    return 0;
}
