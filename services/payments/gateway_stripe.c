/* The stripe gateway: Stripe's API over libcurl, form-encoded.
 *
 * A charge is one PaymentIntent created and confirmed in one request
 * (POST /v1/payment_intents, confirm=true); a refund is POST /v1/refunds; a
 * customer POST /v1/customers; a balance payment a Checkout Session (POST
 * /v1/checkout/sessions, mode=payment). Every request carries the command id
 * as its Idempotency-Key, so asking again after an unknown outcome (a
 * timeout, a 5xx) gets Stripe's first answer instead of a second charge. The
 * intent names our payment and order in its metadata; the webhook path uses
 * metadata.payment_id to find the payment when Stripe's event comes before
 * this answer is recorded.
 *
 * What Stripe answers becomes the outcome the finish step records: 200 with
 * the object; 402 (card_error) a failed payment with the decline code;
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
#define FORM_MAX 8192

static struct {
    char auth[256];
    const char *base, *success_url, *cancel_url;
    long timeout_ms;
} stripe;


/* A request being written: its form, and the connected account it is
 * made on behalf of (the Stripe-Account header), if any. */
typedef struct {
    CURL *curl;
    char text[FORM_MAX];
    size_t used;
    int full;
    const char *account;
} form_t;

/* A new empty request, or NULL with err. Free with form_free. */
static form_t *form_new(char *err, size_t errlen)
{
    form_t *f = ps_xcalloc(1, sizeof(*f));
    if ((f->curl = curl_easy_init()) == NULL) {
        free(f);
        snprintf(err, errlen, "cannot set up the request to Stripe");
        return NULL;
    }
    return f;
}

static void form_free(form_t *f)
{
    curl_easy_cleanup(f->curl);
    free(f);
}

void stripe_gateway_init(const char *secret_key, const char *api_base, long timeout_ms,
                         const char *success_url, const char *cancel_url)
{
    snprintf(stripe.auth, sizeof(stripe.auth), "Authorization: Bearer %s", secret_key);
    stripe.base = api_base;
    stripe.timeout_ms = timeout_ms;
    stripe.success_url = success_url;
    stripe.cancel_url = cancel_url;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    gateway_answer_t *a = userp;
    size_t len = size * n;
    if (len > 20 && strncasecmp(data, "Stripe-Should-Retry:", 20) == 0)
        a->should_retry = strstr(data + 20, "true") ? 1 : 0;
    else if (len > 11 && strncasecmp(data, "Request-Id:", 11) == 0)
        sscanf(data + 11, " %63[^\r\n]", a->request_id);
    return len;
}

/* Appends name=value (value escaped; nothing for NULL). */
static void form_add(form_t *f, const char *name, const char *value)
{
    if (value == NULL || f->full)
        return;
    char *esc = curl_easy_escape(f->curl, value, 0);
    int n = esc ? snprintf(f->text + f->used, FORM_MAX - f->used, "%s%s=%s",
                           f->used ? "&" : "", name, esc)
                : -1;
    curl_free(esc);
    if (n < 0 || (size_t)n >= FORM_MAX - f->used)
        f->full = 1;
    else
        f->used += (size_t)n;
}

static void form_add_int(form_t *f, const char *name, long long value)
{
    char text[24];
    snprintf(text, sizeof(text), "%lld", value);
    form_add(f, name, text);
}

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Posts form to path with an Idempotency-Key (and Stripe-Account when the
 * form names an account). Returns 0 when Stripe
 * answered for good (*http and *root, which may be NULL, set), -1 with the
 * reason in err when the outcome is unknown and the same request must be
 * made again. */
static int stripe_post(const char *path, const char *idempotency_key, form_t *f, long *http,
                       json_t **root, char *err, size_t errlen)
{
    char url[512], key[160], account[128];
    snprintf(url, sizeof(url), "%s%s", stripe.base, path);
    snprintf(key, sizeof(key), "Idempotency-Key: %s", idempotency_key);
    struct curl_slist *h = curl_slist_append(NULL, stripe.auth);
    h = curl_slist_append(h, key);
    if (f->account) {
        snprintf(account, sizeof(account), "Stripe-Account: %s", f->account);
        h = curl_slist_append(h, account);
    }
    h = curl_slist_append(h, "Stripe-Version: " STRIPE_VERSION);
    gateway_answer_t a = {.body.max = GATEWAY_ANSWER_MAX, .should_retry = -1};
    CURLcode rc = gateway_post(f->curl, url, h, f->text, stripe.timeout_ms, on_header, &a, http,
                               root);
    curl_slist_free_all(h);

    char status[16];
    snprintf(status, sizeof(status), "%ld", *http);
    ps_log_info("stripe answered", "idempotency_key", idempotency_key, "path", path, "status", status, "request_id",
                a.request_id[0] ? a.request_id : NULL, NULL);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "no answer from Stripe: %s", curl_easy_strerror(rc));
    } else if ((*http >= 200 && *http < 300) ||
               (*http >= 400 && *http < 500 && *http != 409 && *http != 429) ||
               a.should_retry == 0) {
        return 0; /* Stripe-Should-Retry: false says asking again will not help */
    } else {
        snprintf(err, errlen, "Stripe answered %ld (request %s)", *http,
                 a.request_id[0] ? a.request_id : "-");
    }
    json_decref(*root);
    *root = NULL;
    return -1;
}

/* The request of a call: its path and form. Returns the path, or NULL with
 * *outcome set when the call cannot be made at all. */
static const char *build_request(json_t *call, form_t *f, json_t **outcome)
{
    const char *kind = str(call, "kind");
    char currency[4] = "";
    for (int i = 0; i < 3 && str(call, "currency") && str(call, "currency")[i]; i++)
        currency[i] = (char)(str(call, "currency")[i] | 0x20); /* Stripe's codes are lowercase */
    long long amount = json_integer_value(json_object_get(call, "amount_minor"));
    if (strcmp(kind, "charge") == 0) {
        form_add_int(f, "amount", amount);
        form_add(f, "currency", currency);
        form_add(f, "payment_method", str(call, "payment_method"));
        form_add(f, "confirm", "true");
        form_add(f, "payment_method_types[]", "card");
        form_add(f, "metadata[payment_id]", str(call, "payment_id"));
        form_add(f, "metadata[order_id]", str(call, "order_id"));
        return "/v1/payment_intents";
    }
    if (strcmp(kind, "refund") == 0) {
        form_add(f, "payment_intent", str(call, "gateway_payment_id"));
        form_add_int(f, "amount", amount);
        form_add(f, "reason", str(call, "reason"));
        form_add(f, "metadata[payment_id]", str(call, "payment_id"));
        return "/v1/refunds";
    }
    if (strcmp(kind, "customer") == 0) {
        form_add(f, "email", str(call, "email"));
        form_add(f, "name", str(call, "name"));
        form_add(f, "metadata[customer_id]", str(call, "customer_id"));
        return "/v1/customers";
    }
    if (*stripe.success_url == '\0' || *stripe.cancel_url == '\0') {
        *outcome = json_pack("{s:s, s:i, s:s, s:s}", "outcome", "error", "http_status", 409,
                             "failure_code", "checkout_not_configured", "failure_message",
                             "PAYSTREAM_CHECKOUT_SUCCESS_URL and PAYSTREAM_CHECKOUT_CANCEL_URL "
                             "must be set on the payments worker for Stripe Checkout");
        return NULL;
    }
    form_add(f, "mode", "payment");
    form_add(f, "customer", str(call, "stripe_customer_id"));
    form_add(f, "client_reference_id", str(call, "customer_id"));
    form_add(f, "line_items[0][quantity]", "1");
    form_add(f, "line_items[0][price_data][currency]", currency);
    form_add_int(f, "line_items[0][price_data][unit_amount]", amount);
    form_add(f, "line_items[0][price_data][product_data][name]", "Account balance");
    form_add(f, "success_url", stripe.success_url);
    form_add(f, "cancel_url", stripe.cancel_url);
    form_add(f, "metadata[customer_id]", str(call, "customer_id"));
    form_add(f, "metadata[purpose]", "balance");
    form_add(f, "payment_intent_data[metadata][customer_id]", str(call, "customer_id"));
    return "/v1/checkout/sessions";
}

/* 200: the object as an outcome. */
static json_t *success_outcome(const char *kind, json_t *obj)
{
    const char *status = str(obj, "status");
    if (str(obj, "id") == NULL)
        return NULL;
    if (strcmp(kind, "customer") == 0)
        return json_pack("{s:s, s:s, s:s}", "outcome", "succeeded", "gateway", "stripe",
                         "gateway_customer_id", str(obj, "id"));
    if (strcmp(kind, "checkout") == 0)
        return json_pack("{s:s, s:s, s:s, s:s?, s:O?}", "outcome", "succeeded", "gateway",
                         "stripe", "session_id", str(obj, "id"), "url", str(obj, "url"),
                         "expires_at", json_object_get(obj, "expires_at"));
    if (status == NULL)
        return NULL;
    if (strcmp(kind, "refund") == 0) {
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

/* A definite refusal: a declined card (402) fails a charge; anything else
 * is the command's error and changed nothing at Stripe. */
static json_t *refusal_outcome(const char *kind, long http, json_t *root)
{
    json_t *e = json_object_get(root, "error");
    const char *type = str(e, "type"), *code = str(e, "code");
    const char *decline = str(e, "decline_code");
    if (strcmp(kind, "charge") == 0 && (http == 402 || (type && strcmp(type, "card_error") == 0))) {
        json_t *pi = json_object_get(e, "payment_intent");
        return json_pack("{s:s, s:s?, s:s?, s:s?, s:s?}", "outcome", "failed",
                         "gateway_payment_id", str(pi, "id"), "gateway_status", str(pi, "status"),
                         "failure_code", decline ? decline : code, "failure_message",
                         str(e, "message"));
    }
    char message[300];
    snprintf(message, sizeof(message), "Stripe refused the request: %s",
             str(e, "message") ? str(e, "message") : "no message");
    int status = http == 401 || http == 403 || http >= 500 ? 502 : 400;
    return json_pack("{s:s, s:i, s:s, s:s}", "outcome", "error", "http_status", status,
                     "failure_code", code ? code : "gateway_error", "failure_message", message);
}

int stripe_gateway_call(json_t *call, const char *command_id, json_t **outcome, char *err,
                        size_t errlen)
{
    form_t *f = form_new(err, errlen);
    if (f == NULL)
        return -1;
    const char *kind = str(call, "kind");
    *outcome = NULL;
    f->account = str(call, "account");
    const char *path = build_request(call, f, outcome);
    int ret = -1;
    if (path == NULL) {
        ret = 0;
    } else if (f->full) {
        *outcome = json_pack("{s:s, s:i, s:s, s:s}", "outcome", "error", "http_status", 400,
                             "failure_code", "request_too_large", "failure_message",
                             "the request to Stripe would be too large");
        ret = 0;
    } else {
        long http;
        json_t *root;
        if (stripe_post(path, command_id, f, &http, &root, err, errlen) == 0) {
            *outcome = http == 200 ? success_outcome(kind, root) : refusal_outcome(kind, http, root);
            if (*outcome == NULL)
                snprintf(err, errlen, "Stripe answered 200 without the object's id or status");
            ret = *outcome ? 0 : -1;
            json_decref(root);
        }
    }
    form_free(f);
    return ret;
}

int stripe_meter_event(const meter_event_t *ev, char *err, size_t errlen)
{
    form_t *f = form_new(err, errlen);
    if (f == NULL)
        return -1;
    form_add(f, "event_name", ev->event_name);
    form_add(f, "payload[stripe_customer_id]", ev->stripe_customer_id);
    form_add_int(f, "payload[value]", (long long)ev->value);
    form_add(f, "identifier", ev->identifier);
    form_add_int(f, "timestamp", (long long)ev->timestamp);
    long http;
    json_t *root;
    int ret = -1;
    if (stripe_post("/v1/billing/meter_events", ev->identifier, f, &http, &root, err,
                    errlen) == 0) {
        ret = http == 200 ? 0 : 1;
        if (ret) {
            const char *msg = str(json_object_get(root, "error"), "message");
            snprintf(err, errlen, "Stripe refused the meter event (%ld): %s", http,
                     msg ? msg : "no message");
        }
        json_decref(root);
    }
    form_free(f);
    return ret;
}
