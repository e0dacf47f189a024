/* paystream-fake-stripe: a stand-in for Stripe's API for the integration
 * tests (STRIPE_API_BASE points the payments worker here).
 *
 *   paystream-fake-stripe --port PORT
 *
 * POST /v1/payment_intents (confirm=true) and POST /v1/refunds, form-encoded,
 * answered as Stripe answers its test payment methods: pm_card_visa (and
 * _mastercard, _amex) succeed, pm_card_chargeDeclined is a 402 card_error,
 * pm_card_authenticationRequired requires_action, anything else a 400.
 * POST /v1/customers, POST /v1/checkout/sessions (mode=payment, one
 * price_data line) and POST /v1/billing/meter_events (an identifier seen
 * before is refused, as Stripe enforces their uniqueness). It
 * checks what paystream must send: a Bearer sk_test_ key, an
 * Idempotency-Key, the fields, lowercase currencies; and it keeps Stripe's
 * idempotency rules: the same key and form get the first answer, the same
 * key with another form is a 400 idempotency_error.
 *
 * For the tests: POST /_fail?count=N&status=S answers the next N API
 * requests with S (and Stripe-Should-Retry: true) before doing anything;
 * POST /_events gives the fake an event Stripe "has", which GET /v1/events
 * lists (created[gte], limit, starting_after; newest first) as Stripe does;
 * GET /_requests lists every API request received: path, idempotency key,
 * Stripe-Account, form, status. An intent made with a Stripe-Account is
 * refunded only with the same one, as on Stripe.
 *
 * It is also the tests' receiver of paystream's outbound webhooks:
 * POST /_hooks/NAME[?sleep_ms=N] records the call (signature, event id,
 * body) and answers 200, or 500 while NAME has failures left, which
 * POST /_hook_fail?name=NAME&count=N sets; GET /_hooks lists the calls. */
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../fake_server.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *requests;     /* [{path, idempotency_key, form, status}] */
static json_t *idempotent;   /* key -> {path, form, status, answer} */
static json_t *intents;      /* pi id -> {amount, refunded} */
static json_t *identifiers;  /* meter event identifier -> times accepted */
static json_t *hooks;        /* [{name, signature, event_id, body, status}] */
static json_t *hook_fails;   /* name -> failures left */
static json_t *events;       /* the events Stripe "has", in the order they were given */
static int fail_count, fail_status, next_id = 1;
/* Part of every id: ids stay unique across restarts of the fake against a
 * database that keeps the ids of earlier runs. */
static unsigned run_tag;

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, json_t *body,
                                 int retry)
{
    char *text = json_dumps(body, JSON_COMPACT);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Request-Id", "req_fake");
    if (retry)
        MHD_add_response_header(r, "Stripe-Should-Retry", "true");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static json_t *error(const char *type, const char *code, const char *message, const char *param)
{
    return json_pack("{s:{s:s, s:s?, s:s, s:s?}}", "error", "type", type, "code", code,
                     "message", message, "param", param);
}

/* Decodes %XX and + in place. */
static void url_decode(char *s)
{
    char *w = s;
    for (; *s; s++) {
        if (*s == '+') {
            *w++ = ' ';
        } else if (*s == '%' && s[1] && s[2]) {
            char hex[3] = {s[1], s[2], 0};
            *w++ = (char)strtol(hex, NULL, 16);
            s += 2;
        } else {
            *w++ = *s;
        }
    }
    *w = '\0';
}

/* The form as a JSON object of name -> value. */
static json_t *parse_form(const char *body)
{
    json_t *form = json_object();
    char *copy = strdup(body), *save = NULL;
    for (char *pair = strtok_r(copy, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(pair, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        url_decode(pair);
        url_decode(eq + 1);
        json_object_set_new(form, pair, json_string(eq + 1));
    }
    free(copy);
    return form;
}

static const char *field(json_t *form, const char *name)
{
    return json_string_value(json_object_get(form, name));
}

static json_t *payment_intent(json_t *form, const char *account, unsigned *status)
{
    static const char *const required[] = {"amount", "currency", "payment_method", "confirm",
                                           "metadata[payment_id]", NULL};
    for (int i = 0; required[i]; i++) {
        if (field(form, required[i]) == NULL) {
            *status = 400;
            return error("invalid_request_error", "parameter_missing", "Missing required param",
                         required[i]);
        }
    }
    const char *cur = field(form, "currency"), *pm = field(form, "payment_method");
    long amount = atol(field(form, "amount"));
    if (amount <= 0 || strlen(cur) != 3 || strspn(cur, "abcdefghijklmnopqrstuvwxyz") != 3 ||
        strcmp(field(form, "confirm"), "true") != 0) {
        *status = 400;
        return error("invalid_request_error", "parameter_invalid", "Invalid amount, currency or confirm",
                     NULL);
    }
    char id[32], charge[32];
    snprintf(id, sizeof(id), "pi_fake_%x_%d", run_tag, next_id);
    snprintf(charge, sizeof(charge), "ch_fake_%x_%d", run_tag, next_id++);
    json_t *metadata = json_pack("{s:s, s:s?}", "payment_id", field(form, "metadata[payment_id]"),
                                 "order_id", field(form, "metadata[order_id]"));
    if (strcmp(pm, "pm_card_chargeDeclined") == 0) {
        *status = 402;
        json_decref(metadata);
        return json_pack("{s:{s:s, s:s, s:s, s:s, s:{s:s, s:s}}}", "error", "type", "card_error",
                         "code", "card_declined", "decline_code", "generic_decline", "message",
                         "Your card was declined.", "payment_intent", "id", id, "status",
                         "requires_payment_method");
    }
    const char *state = strcmp(pm, "pm_card_authenticationRequired") == 0 ? "requires_action"
                        : strcmp(pm, "pm_card_visa") == 0 || strcmp(pm, "pm_card_mastercard") == 0 ||
                                strcmp(pm, "pm_card_amex") == 0
                            ? "succeeded"
                            : NULL;
    if (state == NULL) {
        json_decref(metadata);
        *status = 400;
        char msg[160];
        snprintf(msg, sizeof(msg), "No such PaymentMethod: '%.100s'", pm);
        return error("invalid_request_error", "resource_missing", msg, "payment_method");
    }
    if (strcmp(state, "succeeded") == 0)
        json_object_set_new(intents, id, json_pack("{s:I, s:I, s:s?}", "amount", (json_int_t)amount,
                                                   "refunded", (json_int_t)0, "account", account));
    *status = 200;
    return json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s?, s:o}", "id", id, "object",
                     "payment_intent", "amount", (json_int_t)amount, "amount_received",
                     (json_int_t)(strcmp(state, "succeeded") == 0 ? amount : 0), "currency", cur,
                     "status", state, "latest_charge",
                     strcmp(state, "succeeded") == 0 ? charge : NULL, "metadata", metadata);
}

/* An intent made on behalf of a connected account lives in that account:
 * a refund of it without the same Stripe-Account finds nothing. */
static json_t *refund(json_t *form, const char *account, unsigned *status)
{
    const char *pi = field(form, "payment_intent");
    json_t *intent = pi ? json_object_get(intents, pi) : NULL;
    const char *owner = intent ? json_string_value(json_object_get(intent, "account")) : NULL;
    if ((owner == NULL) != (account == NULL) || (owner && strcmp(owner, account) != 0))
        intent = NULL;
    long amount = field(form, "amount") ? atol(field(form, "amount")) : 0;
    *status = 400;
    if (intent == NULL)
        return error("invalid_request_error", "resource_missing", "No such payment_intent",
                     "payment_intent");
    json_int_t left = json_integer_value(json_object_get(intent, "amount")) -
                      json_integer_value(json_object_get(intent, "refunded"));
    if (amount <= 0 || amount > left)
        return error("invalid_request_error", "amount_too_large",
                     "Refund amount is greater than unrefunded amount", "amount");
    json_object_set_new(intent, "refunded",
                        json_integer(json_integer_value(json_object_get(intent, "refunded")) + amount));
    char id[32];
    snprintf(id, sizeof(id), "re_fake_%x_%d", run_tag, next_id++);
    *status = 200;
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s?}", "id", id, "object", "refund", "amount",
                     (json_int_t)amount, "status", "succeeded", "payment_intent", pi, "reason",
                     field(form, "reason"));
}

static json_t *missing(json_t *form, const char *const *required, unsigned *status)
{
    for (int i = 0; required[i]; i++) {
        if (field(form, required[i]) == NULL) {
            *status = 400;
            return error("invalid_request_error", "parameter_missing", "Missing required param",
                         required[i]);
        }
    }
    return NULL;
}

static json_t *customer(json_t *form, unsigned *status)
{
    static const char *const required[] = {"email", "metadata[customer_id]", NULL};
    json_t *e = missing(form, required, status);
    if (e)
        return e;
    char id[32];
    snprintf(id, sizeof(id), "cus_fake_%x_%d", run_tag, next_id++);
    *status = 200;
    return json_pack("{s:s, s:s, s:s, s:s?}", "id", id, "object", "customer", "email",
                     field(form, "email"), "name", field(form, "name"));
}

static json_t *checkout_session(json_t *form, unsigned *status)
{
    static const char *const required[] = {
        "mode", "customer", "success_url", "cancel_url", "line_items[0][quantity]",
        "line_items[0][price_data][currency]", "line_items[0][price_data][unit_amount]",
        "line_items[0][price_data][product_data][name]", "metadata[customer_id]", NULL};
    json_t *e = missing(form, required, status);
    if (e)
        return e;
    const char *cur = field(form, "line_items[0][price_data][currency]");
    long amount = atol(field(form, "line_items[0][price_data][unit_amount]"));
    if (strcmp(field(form, "mode"), "payment") != 0 || amount <= 0 || strlen(cur) != 3 ||
        strspn(cur, "abcdefghijklmnopqrstuvwxyz") != 3) {
        *status = 400;
        return error("invalid_request_error", "parameter_invalid",
                     "Invalid mode, amount or currency", NULL);
    }
    char id[32], url[96];
    snprintf(id, sizeof(id), "cs_fake_%x_%d", run_tag, next_id++);
    snprintf(url, sizeof(url), "https://checkout.stripe.com/c/pay/%s", id);
    *status = 200;
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:{s:s, s:s?}}", "id", id,
                     "object", "checkout.session", "url", url, "status", "open", "payment_status",
                     "unpaid", "mode", "payment", "amount_total", (json_int_t)amount, "currency",
                     cur, "expires_at", (json_int_t)(time(NULL) + 86400), "metadata",
                     "customer_id", field(form, "metadata[customer_id]"), "purpose",
                     field(form, "metadata[purpose]"));
}

static json_t *meter_event(json_t *form, unsigned *status)
{
    static const char *const required[] = {"event_name", "payload[stripe_customer_id]",
                                           "payload[value]", "identifier", "timestamp", NULL};
    json_t *e = missing(form, required, status);
    if (e)
        return e;
    const char *identifier = field(form, "identifier");
    json_t *seen = json_object_get(identifiers, identifier);
    if (seen) {
        *status = 400;
        return error("invalid_request_error", "duplicate_meter_event",
                     "An event with this identifier already exists", "identifier");
    }
    json_object_set_new(identifiers, identifier, json_integer(1));
    *status = 200;
    return json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:I}", "object", "billing.meter_event",
                     "event_name", field(form, "event_name"), "identifier", identifier, "payload",
                     "stripe_customer_id", field(form, "payload[stripe_customer_id]"), "value",
                     field(form, "payload[value]"), "timestamp",
                     (json_int_t)atol(field(form, "timestamp")));
}

/* An API request, under the lock. */
static json_t *api(const char *path, const char *auth, const char *key, const char *account,
                   const char *body, unsigned *status, int *retry)
{
    json_t *form = parse_form(body), *answer;
    *retry = 0;
    if (fail_count > 0) {
        fail_count--;
        *status = (unsigned)fail_status;
        *retry = 1;
        answer = error("api_error", NULL, "An unknown error occurred (injected)", NULL);
    } else if (auth == NULL || strncmp(auth, "Bearer sk_test_", 15) != 0) {
        *status = 401;
        answer = error("invalid_request_error", NULL, "Invalid API Key provided", NULL);
    } else if (key == NULL || *key == '\0') {
        *status = 400;
        answer = error("invalid_request_error", "idempotency_key_missing",
                       "paystream must send an Idempotency-Key", NULL);
    } else {
        json_t *seen = json_object_get(idempotent, key);
        if (seen && (strcmp(json_string_value(json_object_get(seen, "path")), path) != 0 ||
                     strcmp(json_string_value(json_object_get(seen, "body")), body) != 0)) {
            *status = 400;
            answer = error("idempotency_error", NULL,
                           "Keys for idempotent requests can only be used with the same "
                           "parameters they were first used with.", NULL);
        } else if (seen) {
            *status = (unsigned)json_integer_value(json_object_get(seen, "status"));
            answer = json_incref(json_object_get(seen, "answer"));
        } else {
            answer = strcmp(path, "/v1/payment_intents") == 0 ? payment_intent(form, account, status)
                     : strcmp(path, "/v1/refunds") == 0       ? refund(form, account, status)
                     : strcmp(path, "/v1/customers") == 0     ? customer(form, status)
                     : strcmp(path, "/v1/checkout/sessions") == 0
                         ? checkout_session(form, status)
                         : meter_event(form, status);
            json_object_set_new(idempotent, key,
                                json_pack("{s:s, s:s, s:i, s:O}", "path", path, "body", body,
                                          "status", (int)*status, "answer", answer));
        }
    }
    json_array_append_new(requests, json_pack("{s:s, s:s?, s:s?, s:o, s:i}", "path", path,
                                              "idempotency_key", key, "stripe_account", account,
                                              "form", form, "status", (int)*status));
    return answer;
}

/* GET /v1/events: the events created at or after created[gte], newest
 * first, limit (1 to 100, default 10) a page, after starting_after. */
static json_t *list_events(struct MHD_Connection *conn, unsigned *status)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    const char *gte = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "created[gte]");
    const char *lim = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit");
    const char *after = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "starting_after");
    long limit = lim ? atol(lim) : 10;
    if (auth == NULL || strncmp(auth, "Bearer sk_test_", 15) != 0) {
        *status = 401;
        return error("invalid_request_error", NULL, "Invalid API Key provided", NULL);
    }
    if (limit < 1 || limit > 100) {
        *status = 400;
        return error("invalid_request_error", "parameter_invalid_integer", "Invalid limit", "limit");
    }
    json_t *data = json_array();
    int skipping = after != NULL, more = 0;
    for (size_t i = json_array_size(events); i-- > 0;) {
        json_t *e = json_array_get(events, i);
        const char *id = json_string_value(json_object_get(e, "id"));
        if (gte && json_integer_value(json_object_get(e, "created")) < atoll(gte))
            continue;
        if (skipping) {
            skipping = strcmp(id, after) != 0;
            continue;
        }
        if ((long)json_array_size(data) == limit) {
            more = 1;
            break;
        }
        json_array_append(data, e);
    }
    *status = 200;
    return json_pack("{s:s, s:o, s:b, s:s}", "object", "list", "data", data, "has_more", more,
                     "url", "/v1/events");
}

static enum MHD_Result on_request(struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *body)
{
    unsigned status = 404;
    int retry = 0;
    json_t *answer;
    const char *sleep_ms = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "sleep_ms");
    if (sleep_ms && strncmp(url, "/_hooks/", 8) == 0)
        usleep((useconds_t)atoi(sleep_ms) * 1000);
    pthread_mutex_lock(&lock);
    if (strcmp(method, "GET") == 0 && strcmp(url, "/_requests") == 0) {
        status = 200;
        answer = json_deep_copy(requests); /* dumped after the lock is let go */
    } else if (strcmp(method, "POST") == 0 && strcmp(url, "/_fail") == 0) {
        const char *count = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "count");
        const char *st = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "status");
        fail_count = count ? atoi(count) : 1;
        fail_status = st ? atoi(st) : 500;
        status = 200;
        answer = json_pack("{s:i}", "failing", fail_count);
    } else if (strcmp(method, "POST") == 0 && strcmp(url, "/_events") == 0) {
        json_t *e = json_loads(body, 0, NULL);
        status = json_is_object(e) ? 200 : 400;
        if (e)
            json_array_append_new(events, e);
        answer = json_object();
    } else if (strcmp(method, "GET") == 0 && strcmp(url, "/v1/events") == 0) {
        answer = list_events(conn, &status);
    } else if (strcmp(method, "GET") == 0 && strcmp(url, "/_hooks") == 0) {
        status = 200;
        answer = json_deep_copy(hooks);
    } else if (strcmp(method, "POST") == 0 && strcmp(url, "/_hook_fail") == 0) {
        const char *name = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "name");
        const char *count = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "count");
        json_object_set_new(hook_fails, name ? name : "", json_integer(count ? atoi(count) : 1));
        status = 200;
        answer = json_object();
    } else if (strcmp(method, "POST") == 0 && strncmp(url, "/_hooks/", 8) == 0) {
        json_int_t left = json_integer_value(json_object_get(hook_fails, url + 8));
        status = left > 0 ? 500 : 200;
        json_object_set_new(hook_fails, url + 8, json_integer(left > 0 ? left - 1 : 0));
        json_array_append_new(
            hooks, json_pack("{s:s, s:s?, s:s?, s:s, s:i}", "name", url + 8, "signature",
                             MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Paystream-Signature"),
                             "event_id",
                             MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Paystream-Event-Id"),
                             "body", body, "status", (int)status));
        answer = json_object();
    } else if (strcmp(method, "POST") == 0 &&
               (strcmp(url, "/v1/payment_intents") == 0 || strcmp(url, "/v1/refunds") == 0 ||
                strcmp(url, "/v1/customers") == 0 || strcmp(url, "/v1/checkout/sessions") == 0 ||
                strcmp(url, "/v1/billing/meter_events") == 0)) {
        answer = api(url, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"),
                     MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key"),
                     MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Stripe-Account"), body,
                     &status, &retry);
    } else {
        answer = error("invalid_request_error", NULL, "Unrecognized request URL", NULL);
    }
    pthread_mutex_unlock(&lock);
    enum MHD_Result ret = send_json(conn, status, answer, retry);
    json_decref(answer);
    return ret;
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--port") != 0) {
        fprintf(stderr, "usage: paystream-fake-stripe --port PORT\n");
        return 2;
    }
    run_tag = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    requests = json_array();
    idempotent = json_object();
    intents = json_object();
    identifiers = json_object();
    hooks = json_array();
    hook_fails = json_object();
    events = json_array();
    int rc = fake_serve("fake stripe", atoi(argv[2]), on_request);
    json_decref(requests);
    json_decref(idempotent);
    json_decref(intents);
    json_decref(identifiers);
    json_decref(hooks);
    json_decref(hook_fails);
    json_decref(events);
    return rc;
}
