/* The stripe gateway: Stripe's API over libcurl, form-encoded.
 *
 * A charge is one PaymentIntent created and confirmed in one request
 * (POST /v1/payment_intents, confirm=true); a refund is POST /v1/refunds.
 * Every request carries the command id as its Idempotency-Key, so asking
 * again after an unknown outcome (a timeout, a 5xx) gets Stripe's first
 * answer instead of a second charge. The intent names our payment and order
 * in its metadata; the webhook path uses metadata.payment_id to find the
 * payment when Stripe's event comes before this answer is recorded.
 *
 * What Stripe answers becomes ps_gateway_finish's outcome: 200 with the
 * object's status; 402 (card_error) a failed payment with the decline code;
 * other 4xx the command's error (nothing happened); 409, 429 and 5xx unless
 * Stripe-Should-Retry says false, and network failures, an unknown outcome
 * to ask again. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "payments.h"
#include "paystream/log.h"

#define STRIPE_VERSION "2024-06-20"
#define FORM_MAX 2048
#define BODY_MAX (1024 * 1024)

static struct {
    char auth[256];
    const char *base;
    long timeout_ms;
} stripe;

/* The answer being read. */
typedef struct {
    char *body;
    size_t len;
    int should_retry; /* Stripe-Should-Retry: 1 true, 0 false, -1 absent */
    char request_id[64];
} answer_t;

int stripe_gateway_init(const char *secret_key, const char *api_base, long timeout_ms)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ps_log_error("cannot set up libcurl; the stripe gateway is off", NULL);
        return -1;
    }
    snprintf(stripe.auth, sizeof(stripe.auth), "Authorization: Bearer %s", secret_key);
    stripe.base = api_base;
    stripe.timeout_ms = timeout_ms;
    return 0;
}

void stripe_gateway_free(void)
{
    curl_global_cleanup();
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    answer_t *a = userp;
    size_t add = size * n;
    if (a->len + add > BODY_MAX)
        return 0; /* not Stripe: fail the transfer */
    char *grown = realloc(a->body, a->len + add + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + a->len, data, add);
    a->len += add;
    grown[a->len] = '\0';
    a->body = grown;
    return add;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    answer_t *a = userp;
    size_t len = size * n;
    if (len > 20 && strncasecmp(data, "Stripe-Should-Retry:", 20) == 0)
        a->should_retry = strstr(data + 20, "true") ? 1 : 0;
    else if (len > 11 && strncasecmp(data, "Request-Id:", 11) == 0)
        sscanf(data + 11, " %63[^\r\n]", a->request_id);
    return len;
}

/* Appends name=value (value escaped) to form; returns -1 when it is full. */
static int form_add(CURL *c, char *form, const char *name, const char *value)
{
    if (value == NULL)
        return 0;
    char *esc = curl_easy_escape(c, value, 0);
    if (esc == NULL)
        return -1;
    size_t used = strlen(form);
    int n = snprintf(form + used, FORM_MAX - used, "%s%s=%s", used ? "&" : "", name, esc);
    curl_free(esc);
    return n < 0 || (size_t)n >= FORM_MAX - used ? -1 : 0;
}

/* The form of a call. */
static int build_form(CURL *c, const gateway_call_t *call, char *form)
{
    char amount[24], currency[4] = "";
    snprintf(amount, sizeof(amount), "%lld", (long long)call->amount_minor);
    for (int i = 0; i < 3 && call->currency && call->currency[i]; i++)
        currency[i] = (char)(call->currency[i] | 0x20); /* Stripe's codes are lowercase */
    form[0] = '\0';
    if (strcmp(call->kind, "charge") == 0)
        return form_add(c, form, "amount", amount) | form_add(c, form, "currency", currency) |
               form_add(c, form, "payment_method", call->payment_method) |
               form_add(c, form, "confirm", "true") |
               form_add(c, form, "payment_method_types[]", "card") |
               form_add(c, form, "metadata[payment_id]", call->payment_id) |
               form_add(c, form, "metadata[order_id]", call->order_id);
    return form_add(c, form, "payment_intent", call->gateway_payment_id) |
           form_add(c, form, "amount", amount) | form_add(c, form, "reason", call->reason) |
           form_add(c, form, "metadata[payment_id]", call->payment_id);
}

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* 200: the PaymentIntent's or Refund's status as an outcome. */
static json_t *success_outcome(const gateway_call_t *call, json_t *obj)
{
    const char *status = str(obj, "status");
    if (status == NULL)
        return NULL;
    if (strcmp(call->kind, "refund") == 0) {
        const char *outcome = strcmp(status, "succeeded") == 0 || strcmp(status, "pending") == 0
                                  ? status : "failed";
        return json_pack("{s:s, s:s?, s:s?}", "outcome", outcome, "transaction_id", str(obj, "id"),
                         "failure_code", str(obj, "failure_reason"));
    }
    const char *outcome = strcmp(status, "succeeded") == 0        ? "succeeded"
                          : strcmp(status, "processing") == 0     ? "processing"
                          : strcmp(status, "requires_action") == 0 ? "requires_action"
                          : strcmp(status, "requires_payment_method") == 0 ||
                                  strcmp(status, "canceled") == 0
                              ? "failed"
                              : "processing";
    json_t *lpe = json_object_get(obj, "last_payment_error");
    const char *code = str(lpe, "decline_code") ? str(lpe, "decline_code") : str(lpe, "code");
    return json_pack("{s:s, s:s?, s:s, s:s?, s:s?, s:s?}", "outcome", outcome,
                     "gateway_payment_id", str(obj, "id"), "gateway_status", status,
                     "transaction_id", str(obj, "latest_charge"), "failure_code", code,
                     "failure_message", str(lpe, "message"));
}

/* 4xx: a declined card (402) fails the payment; anything else is the
 * command's error and changed nothing at Stripe. */
static json_t *refusal_outcome(long http, json_t *root)
{
    json_t *e = json_object_get(root, "error");
    const char *type = str(e, "type"), *code = str(e, "code");
    const char *decline = str(e, "decline_code");
    if (http == 402 || (type && strcmp(type, "card_error") == 0)) {
        json_t *pi = json_object_get(e, "payment_intent");
        return json_pack("{s:s, s:s?, s:s?, s:s?, s:s?}", "outcome", "failed",
                         "gateway_payment_id", str(pi, "id"), "gateway_status", str(pi, "status"),
                         "failure_code", decline ? decline : code, "failure_message",
                         str(e, "message"));
    }
    char message[300];
    snprintf(message, sizeof(message), "Stripe refused the request: %s",
             str(e, "message") ? str(e, "message") : "no message");
    return json_pack("{s:s, s:i, s:s, s:s}", "outcome", "error", "http_status",
                     http == 401 || http == 403 ? 502 : 400, "failure_code",
                     code ? code : "gateway_error", "failure_message", message);
}

int stripe_gateway_call(const gateway_call_t *call, json_t **outcome, char *err, size_t errlen)
{
    int charge = strcmp(call->kind, "charge") == 0;
    char url[512], form[FORM_MAX], key[80];
    snprintf(url, sizeof(url), "%s/v1/%s", stripe.base, charge ? "payment_intents" : "refunds");
    snprintf(key, sizeof(key), "Idempotency-Key: %s", call->command_id);
    CURL *c = curl_easy_init();
    if (c == NULL || build_form(c, call, form) < 0) {
        if (c)
            curl_easy_cleanup(c);
        snprintf(err, errlen, "cannot build the request to Stripe");
        return -1;
    }
    struct curl_slist *h = curl_slist_append(NULL, stripe.auth);
    h = curl_slist_append(h, key);
    h = curl_slist_append(h, "Stripe-Version: " STRIPE_VERSION);
    answer_t a = {.should_retry = -1};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, stripe.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    long http = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);

    int ret = -1;
    json_t *root = a.body ? json_loads(a.body, 0, NULL) : NULL;
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "no answer from Stripe: %s", curl_easy_strerror(rc));
    } else if (http == 200 && (*outcome = success_outcome(call, root)) != NULL) {
        ret = 0;
    } else if (http >= 400 && http < 500 && http != 409 && http != 429) {
        *outcome = refusal_outcome(http, root);
        ret = 0;
    } else if (a.should_retry == 0) {
        /* Stripe says asking again will not help: the request failed. */
        *outcome = json_pack("{s:s, s:i, s:s, s:s}", "outcome", "error", "http_status", 502,
                             "failure_code", "gateway_error", "failure_message",
                             "Stripe could not process the request");
        ret = 0;
    } else {
        snprintf(err, errlen, "Stripe answered %ld (request %s)", http,
                 a.request_id[0] ? a.request_id : "-");
    }
    char status[16];
    snprintf(status, sizeof(status), "%ld", http);
    ps_log_info("stripe answered", "command_id", call->command_id, "path",
                charge ? "/v1/payment_intents" : "/v1/refunds", "status", status, "request_id",
                a.request_id[0] ? a.request_id : NULL, NULL);
    json_decref(root);
    free(a.body);
    return ret;
}
