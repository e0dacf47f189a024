/* paystream-fake-paypal: a stand-in for PayPal's REST API for the
 * integration tests (PAYPAL_API_BASE points the payments worker here).
 *
 *   paystream-fake-paypal --port PORT --certs DIR
 *
 * POST /v1/oauth2/token (client credentials: Basic fake_client:fake_secret)
 * gives a Bearer token; POST /v2/checkout/orders (intent CAPTURE, one
 * purchase unit, an amount whose value has the currency's decimals, return
 * and cancel URLs) makes an order waiting for the buyer
 * (PAYER_ACTION_REQUIRED, a payer-action link); POST
 * /v2/checkout/orders/{id}/capture captures an approved order once (422
 * ORDER_NOT_APPROVED before the buyer approved, ORDER_ALREADY_CAPTURED
 * after); POST /v2/payments/captures/{id}/refund gives back at most what
 * is left. Every API request needs the token and a PayPal-Request-Id; the
 * same id on the same path gets the first answer, as on PayPal.
 *
 * For the tests: POST /_approve?order=ID is the buyer approving;
 * POST /_expire_tokens makes every token given so far answer 401;
 * POST /_fail?count=N&status=S answers the next N API requests with S;
 * GET /_requests lists the API requests (method, path, request_id, body,
 * status) and the certificates fetched; GET /v1/notifications/certs/NAME
 * serves DIR/NAME.pem, the
 * certificates the tests sign webhooks with. */
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../fake_server.h"

#define BASIC_AUTH "Basic ZmFrZV9jbGllbnQ6ZmFrZV9zZWNyZXQ=" /* fake_client:fake_secret */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *requests;   /* [{method, path, request_id, body, status}] */
static json_t *answered;   /* "path request_id" -> {status, answer} */
static json_t *orders;     /* id -> {currency, value, approved, capture} */
static json_t *captures;   /* id -> {currency, minor, refunded_minor} */
static int fail_count, fail_status, next_id = 1, token_epoch = 1;
static unsigned run_tag;
static const char *cert_dir;

static json_t *error(const char *name, const char *issue, const char *message)
{
    return json_pack("{s:s, s:s, s:s, s:[{s:s, s:s}]}", "name", name, "message", message,
                     "debug_id", "fakedebug", "details", "issue", issue, "description", message);
}

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The minor units of a PayPal amount ({currency_code, value}); -1 when the
 * value does not have exactly the currency's decimals (JPY none, else 2). */
static long long amount_minor(json_t *amount, const char **currency)
{
    const char *cur = str(amount, "currency_code"), *value = str(amount, "value");
    *currency = cur;
    if (cur == NULL || value == NULL || strlen(cur) != 3 ||
        strspn(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)
        return -1;
    int decimals = strcmp(cur, "JPY") == 0 ? 0 : 2;
    const char *dot = strchr(value, '.');
    size_t whole = dot ? (size_t)(dot - value) : strlen(value);
    if (whole == 0 || strspn(value, "0123456789") != whole ||
        (decimals == 0 ? dot != NULL
                       : dot == NULL || strlen(dot + 1) != 2 || strspn(dot + 1, "0123456789") != 2))
        return -1;
    long long minor = atoll(value) * (decimals ? 100 : 1);
    if (decimals)
        minor += atoll(dot + 1);
    return minor;
}

static void new_id(char *out, size_t len, const char *prefix)
{
    snprintf(out, len, "%s%X%04d", prefix, run_tag, next_id++);
}

static json_t *create_order(json_t *req, unsigned *status)
{
    json_t *unit = json_array_get(json_object_get(req, "purchase_units"), 0);
    json_t *ctx = json_object_get(json_object_get(json_object_get(req, "payment_source"), "paypal"),
                                  "experience_context");
    const char *currency;
    long long minor = amount_minor(json_object_get(unit, "amount"), &currency);
    if (str(req, "intent") == NULL || strcmp(str(req, "intent"), "CAPTURE") != 0 || unit == NULL ||
        json_array_size(json_object_get(req, "purchase_units")) != 1 || minor <= 0 ||
        str(ctx, "return_url") == NULL || str(ctx, "cancel_url") == NULL) {
        *status = 400;
        return error("INVALID_REQUEST", "INVALID_PARAMETER_VALUE",
                     "intent CAPTURE, one purchase unit with an amount, return_url and "
                     "cancel_url are required");
    }
    char id[40], href[160];
    new_id(id, sizeof(id), "O-");
    snprintf(href, sizeof(href), "https://www.sandbox.paypal.com/checkoutnow?token=%s", id);
    json_object_set_new(orders, id,
                        json_pack("{s:s, s:O, s:b, s:n, s:s?}", "currency", currency, "amount",
                                  json_object_get(unit, "amount"), "approved", 0, "capture",
                                  "reference_id", str(unit, "reference_id")));
    *status = 200;
    return json_pack("{s:s, s:s, s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}]}", "id", id, "status",
                     "PAYER_ACTION_REQUIRED", "links", "href", href, "rel", "payer-action",
                     "method", "GET", "href", "https://api.sandbox.paypal.com/v2/checkout/orders",
                     "rel", "self", "method", "GET");
}

static json_t *capture_order(const char *order_id, unsigned *status)
{
    json_t *o = json_object_get(orders, order_id);
    if (o == NULL) {
        *status = 404;
        return error("RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "no such order");
    }
    if (!json_is_true(json_object_get(o, "approved"))) {
        *status = 422;
        return error("UNPROCESSABLE_ENTITY", "ORDER_NOT_APPROVED", "the payer has not approved");
    }
    if (!json_is_null(json_object_get(o, "capture"))) {
        *status = 422;
        return error("UNPROCESSABLE_ENTITY", "ORDER_ALREADY_CAPTURED", "already captured");
    }
    char cap[40];
    new_id(cap, sizeof(cap), "CAP-");
    const char *currency;
    long long minor = amount_minor(json_object_get(o, "amount"), &currency);
    json_object_set_new(o, "capture", json_string(cap));
    json_object_set_new(captures, cap, json_pack("{s:s, s:I, s:I, s:s}", "currency", currency,
                                                 "minor", (json_int_t)minor, "refunded_minor",
                                                 (json_int_t)0, "order", order_id));
    *status = 201;
    return json_pack("{s:s, s:s, s:[{s:s?, s:{s:[{s:s, s:s, s:O}]}}]}", "id", order_id, "status",
                     "COMPLETED", "purchase_units", "reference_id", str(o, "reference_id"),
                     "payments", "captures", "id", cap, "status", "COMPLETED", "amount",
                     json_object_get(o, "amount"));
}

static json_t *refund_capture(const char *capture_id, json_t *req, unsigned *status)
{
    json_t *c = json_object_get(captures, capture_id);
    if (c == NULL) {
        *status = 404;
        return error("RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "no such capture");
    }
    const char *currency;
    long long minor = amount_minor(json_object_get(req, "amount"), &currency);
    json_int_t left = json_integer_value(json_object_get(c, "minor")) -
                      json_integer_value(json_object_get(c, "refunded_minor"));
    if (minor <= 0 || strcmp(currency, str(c, "currency")) != 0) {
        *status = 400;
        return error("INVALID_REQUEST", "INVALID_PARAMETER_VALUE", "bad refund amount");
    }
    if (minor > left) {
        *status = 422;
        return error("UNPROCESSABLE_ENTITY", "REFUND_AMOUNT_EXCEEDED", "more than is left");
    }
    json_object_set_new(c, "refunded_minor",
                        json_integer(json_integer_value(json_object_get(c, "refunded_minor")) +
                                     minor));
    char id[40];
    new_id(id, sizeof(id), "REF-");
    *status = 201;
    return json_pack("{s:s, s:s, s:O, s:s?}", "id", id, "status", "COMPLETED", "amount",
                     json_object_get(req, "amount"), "note_to_payer", str(req, "note_to_payer"));
}

/* An API request, after its credentials. */
static json_t *api(const char *method, const char *url, const char *auth, const char *request_id,
                   const char *body, unsigned *status)
{
    json_t *req = json_loads(body, 0, NULL);
    json_t *answer = NULL;
    char token[64], key[512];
    snprintf(token, sizeof(token), "Bearer A21_fake_%d", token_epoch);
    if (strcmp(url, "/v1/oauth2/token") == 0) {
        if (auth == NULL || strcmp(auth, BASIC_AUTH) != 0 ||
            strcmp(body, "grant_type=client_credentials") != 0) {
            *status = 401;
            answer = json_pack("{s:s}", "error", "invalid_client");
        } else {
            *status = 200;
            answer = json_pack("{s:s, s:s, s:i}", "access_token", token + 7, "token_type",
                               "Bearer", "expires_in", 32400);
        }
    } else if (auth == NULL || strcmp(auth, token) != 0) {
        *status = 401;
        answer = json_pack("{s:s, s:s}", "error", "invalid_token", "error_description",
                           "Token signature verification failed");
    } else if (request_id == NULL || *request_id == '\0') {
        *status = 400;
        answer = error("INVALID_REQUEST", "MISSING_REQUEST_ID", "PayPal-Request-Id is required");
    } else if (fail_count > 0) {
        fail_count--;
        *status = (unsigned)fail_status;
        answer = error("INTERNAL_SERVER_ERROR", "INTERNAL_SERVICE_ERROR", "injected failure");
    } else {
        snprintf(key, sizeof(key), "%s %s", url, request_id);
        json_t *first = json_object_get(answered, key);
        if (first) {
            *status = (unsigned)json_integer_value(json_object_get(first, "status"));
            answer = json_deep_copy(json_object_get(first, "answer"));
        } else {
            const char *tail;
            if (strcmp(url, "/v2/checkout/orders") == 0)
                answer = create_order(req, status);
            else if (strncmp(url, "/v2/checkout/orders/", 20) == 0 &&
                     (tail = strstr(url + 20, "/capture")) && strcmp(tail, "/capture") == 0) {
                char id[64];
                snprintf(id, sizeof(id), "%.*s", (int)(tail - (url + 20)), url + 20);
                answer = capture_order(id, status);
            } else if (strncmp(url, "/v2/payments/captures/", 22) == 0 &&
                       (tail = strstr(url + 22, "/refund")) && strcmp(tail, "/refund") == 0) {
                char id[64];
                snprintf(id, sizeof(id), "%.*s", (int)(tail - (url + 22)), url + 22);
                answer = refund_capture(id, req, status);
            } else {
                *status = 404;
                answer = error("RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "no such resource");
            }
            if (*status < 500)
                json_object_set_new(answered, key, json_pack("{s:i, s:O}", "status", (int)*status,
                                                             "answer", answer));
        }
    }
    json_array_append_new(requests, json_pack("{s:s, s:s, s:s?, s:o, s:i}", "method", method,
                                              "path", url, "request_id", request_id, "body",
                                              req ? req : json_string(body), "status",
                                              (int)*status));
    return answer;
}

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, char *text,
                                 const char *type)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Paypal-Debug-Id", "fakedebug");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* GET /v1/notifications/certs/NAME: DIR/NAME.pem. */
static enum MHD_Result send_cert(struct MHD_Connection *conn, const char *name)
{
    char path[512];
    if (strchr(name, '/') || strstr(name, "..")) /* a test stand-in, still no traversal */
        return send_text(conn, 404, strdup("no such certificate"), "text/plain");
    snprintf(path, sizeof(path), "%s/%s.pem", cert_dir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return send_text(conn, 404, strdup("no such certificate"), "text/plain");
    char *text = calloc(1, FAKE_BODY_MAX + 1);
    size_t n = fread(text, 1, FAKE_BODY_MAX, f);
    fclose(f);
    text[n] = '\0';
    return send_text(conn, 200, text, "application/x-pem-file");
}

static enum MHD_Result on_request(struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *body)
{
    if (strcmp(method, "GET") == 0 && strncmp(url, "/v1/notifications/certs/", 24) == 0) {
        pthread_mutex_lock(&lock);
        json_array_append_new(requests, json_pack("{s:s, s:s}", "method", "GET", "path", url));
        pthread_mutex_unlock(&lock);
        return send_cert(conn, url + 24);
    }
    unsigned status = 200;
    json_t *answer;
    pthread_mutex_lock(&lock);
    if (strcmp(method, "GET") == 0 && strcmp(url, "/_requests") == 0) {
        answer = json_deep_copy(requests);
    } else if (strcmp(method, "POST") == 0 && strcmp(url, "/_fail") == 0) {
        const char *count = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "count");
        const char *st = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "status");
        fail_count = count ? atoi(count) : 1;
        fail_status = st ? atoi(st) : 500;
        answer = json_pack("{s:i}", "failing", fail_count);
    } else if (strcmp(method, "POST") == 0 && strcmp(url, "/_expire_tokens") == 0) {
        token_epoch++;
        answer = json_object();
    } else if (strcmp(method, "POST") == 0 && strcmp(url, "/_approve") == 0) {
        const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "order");
        json_t *o = id ? json_object_get(orders, id) : NULL;
        if (o)
            json_object_set_new(o, "approved", json_true());
        status = o ? 200 : 404;
        answer = json_object();
    } else if (strcmp(method, "POST") == 0) {
        answer = api(method, url, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"),
                     MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "PayPal-Request-Id"), body,
                     &status);
    } else {
        status = 404;
        answer = error("RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "no such resource");
    }
    char *text = json_dumps(answer, JSON_COMPACT);
    pthread_mutex_unlock(&lock);
    json_decref(answer);
    return send_text(conn, status, text, "application/json");
}

int main(int argc, char **argv)
{
    if (argc != 5 || strcmp(argv[1], "--port") != 0 || strcmp(argv[3], "--certs") != 0) {
        fprintf(stderr, "usage: paystream-fake-paypal --port PORT --certs DIR\n");
        return 2;
    }
    cert_dir = argv[4];
    run_tag = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    requests = json_array();
    answered = json_object();
    orders = json_object();
    captures = json_object();
    int rc = fake_serve("fake paypal", atoi(argv[2]), on_request);
    json_decref(requests);
    json_decref(answered);
    json_decref(orders);
    json_decref(captures);
    return rc;
}
