/* The paypal gateway: PayPal's REST API, Orders v2.
 *
 * A charge is two calls, as PayPal's checkout is: the first payment.process
 * of a payment creates an order (intent CAPTURE, the return and cancel URLs)
 * and the payment waits with next_action, the buyer's approval link; when
 * the buyer is back, payment.process again captures the order. A refund
 * gives back from the payment's capture, with the caller's words as the
 * note to the payer. Every request carries PayPal-Request-Id, the command
 * id, so a command delivered again repeats its call and PayPal answers it
 * as the first time: nothing is charged or refunded twice. The access
 * token (OAuth2 client credentials) is kept until shortly before it
 * expires, and asked again when PayPal says it no longer holds. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "payments.h"
#include "paystream/log.h"
#include "paystream/money.h"
#include "paystream/util.h"

#define TOKEN_MARGIN_MS 60000

static struct {
    char userpwd[512];
    const char *base, *return_url, *cancel_url;
    long timeout_ms;
    char token[2048];
    int64_t token_until_ms;
} paypal;

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    gateway_answer_t *a = userp;
    size_t len = size * n;
    if (len > 15 && strncasecmp(data, "Paypal-Debug-Id:", 16) == 0)
        sscanf(data + 16, " %63[^\r\n]", a->request_id);
    return len;
}

void paypal_gateway_init(const char *client_id, const char *secret, const char *api_base,
                         long timeout_ms, const char *return_url, const char *cancel_url)
{
    snprintf(paypal.userpwd, sizeof(paypal.userpwd), "%s:%s", client_id, secret);
    paypal.base = api_base;
    paypal.timeout_ms = timeout_ms;
    paypal.return_url = return_url;
    paypal.cancel_url = cancel_url;
}

/* One request to PayPal: POST path with body (JSON, or the token form when
 * token_request). Returns 0 with *http and *root (which may be NULL) when
 * PayPal answered, -1 with err when there was no answer. */
static int paypal_post(const char *path, const char *request_id, const char *body,
                       int token_request, long *http, json_t **root, char *err, size_t errlen)
{
    char url[512], auth[2100], rid[160];
    CURL *c = curl_easy_init();
    if (c == NULL) {
        snprintf(err, errlen, "cannot set up the request to PayPal");
        return -1;
    }
    snprintf(url, sizeof(url), "%s%s", paypal.base, path);
    struct curl_slist *h = NULL;
    if (token_request) {
        curl_easy_setopt(c, CURLOPT_USERPWD, paypal.userpwd);
        h = curl_slist_append(h, "Content-Type: application/x-www-form-urlencoded");
    } else {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", paypal.token);
        snprintf(rid, sizeof(rid), "PayPal-Request-Id: %s", request_id);
        h = curl_slist_append(h, auth);
        h = curl_slist_append(h, rid);
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, "Prefer: return=representation");
    }
    gateway_answer_t a = {.body.max = GATEWAY_ANSWER_MAX};
    CURLcode rc = gateway_post(c, url, h, body, paypal.timeout_ms, on_header, &a, http, root);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    char status[16];
    snprintf(status, sizeof(status), "%ld", *http);
    ps_log_info("paypal answered", "request_id", request_id, "path", path, "status", status,
                "debug_id", a.request_id[0] ? a.request_id : NULL, NULL);
    if (rc == CURLE_OK)
        return 0;
    snprintf(err, errlen, "no answer from PayPal: %s", curl_easy_strerror(rc));
    json_decref(*root);
    *root = NULL;
    return -1;
}

/* An access token that holds for a while yet; asks for one when needed. */
static int token_ensure(int renew, char *err, size_t errlen)
{
    if (!renew && paypal.token[0] && ps_mono_ms() < paypal.token_until_ms)
        return 0;
    long http;
    json_t *root;
    if (paypal_post("/v1/oauth2/token", "oauth2", "grant_type=client_credentials", 1, &http,
                    &root, err, errlen) < 0)
        return -1;
    const char *token = str(root, "access_token");
    json_int_t expires = json_integer_value(json_object_get(root, "expires_in"));
    int ok = http == 200 && token && strlen(token) < sizeof(paypal.token);
    if (ok) {
        snprintf(paypal.token, sizeof(paypal.token), "%s", token);
        paypal.token_until_ms = ps_mono_ms() + (int64_t)expires * 1000 - TOKEN_MARGIN_MS;
    } else {
        snprintf(err, errlen, "PayPal gave no access token (HTTP %ld): check PAYPAL_CLIENT_ID "
                              "and PAYPAL_CLIENT_SECRET", http);
    }
    json_decref(root);
    return ok ? 0 : -1;
}

/* The first issue PayPal names in a refusal ("ORDER_NOT_APPROVED"), or NULL. */
static const char *issue(json_t *root)
{
    const char *i = str(json_array_get(json_object_get(root, "details"), 0), "issue");
    return i ? i : str(root, "name");
}

static json_t *error_outcome(int status, const char *code, const char *message)
{
    return json_pack("{s:s, s:i, s:s, s:s}", "outcome", "error", "http_status", status,
                     "failure_code", code, "failure_message", message);
}

/* The body of a request for amount_minor of currency: {"currency_code",
 * "value"}, the value exact from the minor units. */
static json_t *amount_json(json_t *call)
{
    char value[32];
    const char *currency = str(call, "currency");
    json_int_t minor = json_integer_value(json_object_get(call, "amount_minor"));
    if (currency == NULL || ps_money_format(minor, currency, value, sizeof(value)) < 0)
        return NULL;
    char upper[4];
    ps_currency_normalize(currency, upper);
    return json_pack("{s:s, s:s}", "currency_code", upper, "value", value);
}

static json_t *create_order_body(json_t *call)
{
    json_t *amount = amount_json(call);
    if (amount == NULL)
        return NULL;
    return json_pack(
        "{s:s, s:[{s:s, s:s, s:o}], s:{s:{s:{s:s, s:s, s:s, s:s}}}}", "intent", "CAPTURE",
        "purchase_units", "reference_id", str(call, "payment_id"), "custom_id",
        str(call, "payment_id"), "amount", amount, "payment_source", "paypal",
        "experience_context", "return_url", paypal.return_url, "cancel_url", paypal.cancel_url,
        "user_action", "PAY_NOW", "shipping_preference", "NO_SHIPPING");
}

/* The buyer's approval link of an order. */
static json_t *approval_action(json_t *order)
{
    size_t i;
    json_t *link;
    json_array_foreach(json_object_get(order, "links"), i, link) {
        const char *rel = str(link, "rel");
        if (rel && (strcmp(rel, "payer-action") == 0 || strcmp(rel, "approve") == 0) &&
            str(link, "href"))
            return json_pack("{s:s, s:s}", "type", "redirect_to_url", "url", str(link, "href"));
    }
    return NULL;
}

/* What PayPal's answer to a charge's request means. */
static json_t *charge_outcome(json_t *call, long http, json_t *root)
{
    const char *status = str(root, "status");
    if (http >= 200 && http < 300 && str(root, "id") && status) {
        json_t *capture = json_array_get(
            json_object_get(json_object_get(json_array_get(json_object_get(root, "purchase_units"),
                                                            0),
                                            "payments"),
                            "captures"),
            0);
        const char *cstatus = str(capture, "status");
        if (capture == NULL || cstatus == NULL) /* created: the buyer approves next */
            return json_pack("{s:s, s:s, s:s, s:o?}", "outcome", "requires_action",
                             "gateway_payment_id", str(root, "id"), "gateway_status", status,
                             "next_action", approval_action(root));
        const char *outcome = strcmp(cstatus, "COMPLETED") == 0 ? "succeeded"
                              : strcmp(cstatus, "PENDING") == 0 ? "processing"
                                                                : "failed";
        return json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "outcome", outcome, "gateway_payment_id",
                         str(root, "id"), "gateway_status", cstatus, "transaction_id",
                         str(capture, "id"), "failure_code",
                         strcmp(outcome, "failed") == 0 ? "capture_declined" : NULL);
    }
    const char *why = issue(root);
    if (http == 422 && why && strcmp(why, "ORDER_NOT_APPROVED") == 0)
        return json_pack("{s:s, s:s, s:s, s:O?}", "outcome", "requires_action",
                         "gateway_payment_id", str(call, "gateway_payment_id"), "gateway_status",
                         "PAYER_ACTION_REQUIRED", "next_action",
                         json_object_get(call, "next_action"));
    if (http == 422)
        return json_pack("{s:s, s:s?, s:s, s:s}", "outcome", "failed", "gateway_payment_id",
                         str(call, "gateway_payment_id"), "failure_code", why ? why : "UNPROCESSABLE",
                         "failure_message", str(root, "message") ? str(root, "message")
                                                                 : "PayPal did not take the payment");
    return NULL;
}

static json_t *refund_outcome(long http, json_t *root)
{
    const char *status = str(root, "status");
    if (http >= 200 && http < 300 && str(root, "id") && status) {
        const char *outcome = strcmp(status, "COMPLETED") == 0 ? "succeeded"
                              : strcmp(status, "PENDING") == 0 ? "pending"
                                                               : "failed";
        return json_pack("{s:s, s:s}", "outcome", outcome, "transaction_id", str(root, "id"));
    }
    return NULL;
}

int paypal_gateway_call(json_t *call, const char *command_id, json_t **outcome, char *err,
                        size_t errlen)
{
    const char *kind = str(call, "kind"), *order = str(call, "gateway_payment_id");
    char path[256];
    json_t *body;
    *outcome = NULL;
    if (strcmp(kind, "charge") == 0 && order == NULL) {
        snprintf(path, sizeof(path), "/v2/checkout/orders");
        body = create_order_body(call);
    } else if (strcmp(kind, "charge") == 0) {
        snprintf(path, sizeof(path), "/v2/checkout/orders/%s/capture", order);
        body = json_object();
    } else if (strcmp(kind, "refund") == 0 && str(call, "capture_id")) {
        snprintf(path, sizeof(path), "/v2/payments/captures/%s/refund", str(call, "capture_id"));
        json_t *amount = amount_json(call);
        body = amount ? json_pack("{s:o, s:s?}", "amount", amount, "note_to_payer",
                                  str(call, "description"))
                      : NULL;
    } else {
        *outcome = error_outcome(409, "gateway_unavailable",
                                 "the paypal gateway does not do this for this payment");
        return 0;
    }
    if (body == NULL) {
        *outcome = error_outcome(400, "parameter_invalid", "the amount cannot be sent to PayPal");
        return 0;
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    long http = 0;
    json_t *root = NULL;
    int rc = token_ensure(0, err, errlen);
    if (rc == 0)
        rc = paypal_post(path, command_id, text, 0, &http, &root, err, errlen);
    if (rc == 0 && http == 401) { /* the token no longer holds: once more with a new one */
        json_decref(root);
        root = NULL;
        rc = token_ensure(1, err, errlen);
        if (rc == 0)
            rc = paypal_post(path, command_id, text, 0, &http, &root, err, errlen);
    }
    free(text);
    if (rc < 0)
        return -1;
    if (http >= 500 || http == 429) {
        snprintf(err, errlen, "PayPal answered %ld", http);
        json_decref(root);
        return -1; /* the same request again, with the same PayPal-Request-Id */
    }
    *outcome = strcmp(kind, "charge") == 0 ? charge_outcome(call, http, root)
                                           : refund_outcome(http, root);
    if (*outcome == NULL) {
        char message[300];
        snprintf(message, sizeof(message), "PayPal refused the request (HTTP %ld): %s", http,
                 issue(root) ? issue(root) : "no reason given");
        *outcome = error_outcome(http == 401 || http == 403 ? 502 : 400,
                                 issue(root) ? issue(root) : "gateway_error", message);
    }
    json_decref(root);
    return 0;
}
