/* Orders through the API: authentication, commands answered asynchronously
 * or with Prefer: wait, idempotency keys, ownership, state rules, bad input
 * and the write limit, against the running intake and payments worker. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "paystream/jwt.h"
#include "support.h"

static const char *const WAIT[] = {"Prefer: wait=30", NULL};

#define ORDER_BODY                                                                              \
    "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"sku_tee\",\"name\":\"T-shirt\","      \
    "\"quantity\":2,\"unit_price\":\"29.99\"},{\"product_id\":\"sku_mug\",\"quantity\":1,"  \
    "\"unit_price\":\"5\"}],\"shipping_address\":{\"line1\":\"1 Main St\",\"city\":\"Oslo\"}}"

static void assert_error(ts_http_t *r, long status, const char *code, const char *param)
{
    cr_assert_eq(r->status, status, "expected %ld, got %ld: %s", status, r->status, r->body);
    char *c = ts_json(r->body, "error.code");
    cr_assert(c && strcmp(c, code) == 0, "expected error code %s: %s", code, r->body);
    free(c);
    if (param) {
        char *p = ts_json(r->body, "error.param");
        cr_assert(p && strcmp(p, param) == 0, "expected param %s: %s", param, r->body);
        free(p);
    }
    char *m = ts_json(r->body, "error.message");
    cr_assert(m && *m, "errors carry a message: %s", r->body);
    free(m);
}

/* Creates an order for user with Prefer: wait; returns its id. */
static char *create_order(const char *user)
{
    ts_http_t r = ts_api("POST", "/api/v1/orders", user, WAIT, ORDER_BODY);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *id = ts_json(r.body, "id");
    cr_assert(id && strncmp(id, "ord_", 4) == 0, "%s", r.body);
    ts_http_free(&r);
    return id;
}

static char *order_count(const char *user)
{
    return ts_sql("SELECT count(*) FROM orders WHERE actor = $1", user, NULL);
}

Test(orders, created_with_wait_computes_totals_and_a_number)
{
    char user[64];
    ts_unique(user, sizeof(user), "user_");
    ts_http_t r = ts_api("POST", "/api/v1/orders", user, WAIT, ORDER_BODY);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *id = ts_json(r.body, "id"), *total = ts_json(r.body, "total_minor");
    char *status = ts_json(r.body, "status"), *number = ts_json(r.body, "number");
    char *currency = ts_json(r.body, "currency"), *location = ts_header(&r, "Location");
    cr_assert_str_eq(total, "6498", "2 x 29.99 + 5.00");
    cr_assert_str_eq(status, "pending");
    cr_assert_str_eq(currency, "USD");
    cr_assert(number && strncmp(number, "PS-", 3) == 0, "%s", r.body);
    char expect[128];
    snprintf(expect, sizeof(expect), "/api/v1/orders/%s", id);
    cr_assert(location && strcmp(location, expect) == 0, "Location: %s", location);
    ts_http_free(&r);

    r = ts_api("GET", expect, user, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *line = ts_sql("SELECT line_total_minor::text FROM order_items WHERE order_id = $1 AND line = 1",
                        id, NULL);
    cr_assert_str_eq(line, "5998");
    char *actor = ts_sql("SELECT actor FROM orders WHERE id = $1", id, NULL);
    cr_assert_str_eq(actor, user, "the owner is the authenticated user");
    ts_http_free(&r);
    free(id), free(total), free(status), free(number), free(currency), free(location);
    free(line), free(actor);
}

/* The order service's clients send prices as JSON numbers: each is read by
 * its digits, never through a double (0.1 + 0.2 style errors would show in
 * the cents of 3 x 19.99 + 0.07). */
Test(orders, prices_sent_as_json_numbers_are_taken_exactly)
{
    char user[64];
    ts_unique(user, sizeof(user), "user_");
    ts_http_t r = ts_api("POST", "/api/v1/orders", user, WAIT,
                         "{\"currency\":\"usd\",\"items\":["
                         "{\"product_id\":\"sku_tee\",\"quantity\":3,\"unit_price\":19.99},"
                         "{\"product_id\":\"sku_pin\",\"quantity\":1,\"unit_price\":7e-2},"
                         "{\"product_id\":\"sku_mug\",\"quantity\":1,\"unit_price\":\"5.10\"},"
                         "{\"product_id\":\"sku_cap\",\"quantity\":2,\"unit_price\":12.500}]}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *id = ts_json(r.body, "id"), *total = ts_json(r.body, "total_minor");
    cr_assert_str_eq(total, "9014", "3 x 19.99 + 0.07 + 5.10 + 2 x 12.50");
    char *prices = ts_sql("SELECT string_agg(unit_price_minor::text, ',' ORDER BY line) "
                          "FROM order_items WHERE order_id = $1", id, NULL);
    cr_assert_str_eq(prices, "1999,7,510,1250");
    ts_http_free(&r);
    free(id), free(total), free(prices);
}

Test(orders, accepted_without_wait_then_visible_as_a_command)
{
    char user[64];
    ts_unique(user, sizeof(user), "user_");
    ts_http_t r = ts_api("POST", "/api/v1/orders", user, NULL, ORDER_BODY);
    cr_assert_eq(r.status, 202, "%s", r.body);
    char *command = ts_json(r.body, "command_id"), *id = ts_json(r.body, "id");
    char *state = ts_json(r.body, "status"), *location = ts_header(&r, "Location");
    cr_assert_str_eq(state, "accepted");
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/commands/%s", command);
    cr_assert(location && strcmp(location, path) == 0, "Location: %s", location);
    ts_http_free(&r);

    r = ts_api("GET", path, user, WAIT, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *cstate = ts_json(r.body, "status"), *rid = ts_json(r.body, "resource_id");
    char *http = ts_json(r.body, "http_status"), *total = ts_json(r.body, "result.total_minor");
    cr_assert_str_eq(cstate, "succeeded");
    cr_assert_str_eq(rid, id);
    cr_assert_str_eq(http, "201");
    cr_assert_str_eq(total, "6498");
    ts_http_free(&r);

    char other[64];
    ts_unique(other, sizeof(other), "user_");
    r = ts_api("GET", path, other, NULL, NULL);
    assert_error(&r, 404, "resource_missing", NULL);
    ts_http_free(&r);
    free(command), free(id), free(state), free(location), free(cstate), free(rid), free(http);
    free(total);
}

Test(orders, an_idempotency_key_returns_the_first_result)
{
    char user[64], key[80];
    ts_unique(user, sizeof(user), "user_");
    ts_unique(key, sizeof(key), "Idempotency-Key: k_");
    const char *headers[] = {key, "Prefer: wait=30", NULL};
    ts_http_t first = ts_api("POST", "/api/v1/orders", user, headers, ORDER_BODY);
    cr_assert_eq(first.status, 201, "%s", first.body);
    ts_http_t again = ts_api("POST", "/api/v1/orders", user, headers, ORDER_BODY);
    cr_assert_eq(again.status, 201, "%s", again.body);
    cr_assert_str_eq(again.body, first.body, "a retry gets the first answer");
    char *replayed = ts_header(&again, "Idempotent-Replayed");
    cr_assert(replayed && strcmp(replayed, "true") == 0);
    char *n = order_count(user);
    cr_assert_str_eq(n, "1", "a retried create makes one order");

    const char *other_body = "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"x\","
                             "\"quantity\":1,\"unit_price\":\"1\"}]}";
    ts_http_t reused = ts_api("POST", "/api/v1/orders", user, headers, other_body);
    assert_error(&reused, 422, "idempotency_key_reused", NULL);
    free(n);
    n = order_count(user);
    cr_assert_str_eq(n, "1", "a reused key changes nothing");

    const char *bad_key[] = {"Idempotency-Key: has a space", NULL};
    ts_http_t bad = ts_api("POST", "/api/v1/orders", user, bad_key, ORDER_BODY);
    assert_error(&bad, 400, "invalid_idempotency_key", "Idempotency-Key");
    ts_http_free(&bad);

    /* Keys belong to their user: the same key of another user is another command. */
    char other[64];
    ts_unique(other, sizeof(other), "user_");
    ts_http_t theirs = ts_api("POST", "/api/v1/orders", other, headers, ORDER_BODY);
    cr_assert_eq(theirs.status, 201, "%s", theirs.body);
    char *a = ts_json(first.body, "id"), *b = ts_json(theirs.body, "id");
    cr_assert_str_neq(a, b);
    ts_http_free(&first), ts_http_free(&again), ts_http_free(&reused), ts_http_free(&theirs);
    free(replayed), free(n), free(a), free(b);
}

Test(orders, concurrent_retries_of_one_key_make_one_order)
{
    char user[64], key[80];
    ts_unique(user, sizeof(user), "user_");
    ts_unique(key, sizeof(key), "Idempotency-Key: race_");
    const char *headers[] = {key, NULL};
    /* Without waiting: each retry is published before the first is applied. */
    for (int i = 0; i < 5; i++) {
        ts_http_t r = ts_api("POST", "/api/v1/orders", user, headers, ORDER_BODY);
        cr_assert(r.status == 202 || r.status == 201, "%ld %s", r.status, r.body);
        ts_http_free(&r);
    }
    const char *wait_headers[] = {key, "Prefer: wait=30", NULL};
    ts_http_t r = ts_api("POST", "/api/v1/orders", user, wait_headers, ORDER_BODY);
    cr_assert_eq(r.status, 201, "%s", r.body);
    ts_http_free(&r);
    char *n = order_count(user);
    cr_assert_str_eq(n, "1");
    free(n);
}

Test(orders, another_users_order_is_not_found)
{
    char alice[64], bob[64];
    ts_unique(alice, sizeof(alice), "alice_");
    ts_unique(bob, sizeof(bob), "bob_");
    char *id = create_order(alice);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/orders/%s", id);

    ts_http_t r = ts_api("GET", path, bob, NULL, NULL);
    assert_error(&r, 404, "resource_missing", "id");
    ts_http_free(&r);
    r = ts_api("PUT", path, bob, WAIT, "{\"metadata\":{\"note\":\"mine now\"}}");
    assert_error(&r, 404, "resource_missing", "id");
    ts_http_free(&r);
    r = ts_api("DELETE", path, bob, WAIT, NULL);
    assert_error(&r, 404, "resource_missing", "id");
    ts_http_free(&r);
    r = ts_api("GET", "/api/v1/orders", bob, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_null(strstr(r.body, id), "bob's list shows alice's order");
    ts_http_free(&r);

    char *status = ts_sql("SELECT status || ':' || version FROM orders WHERE id = $1", id, NULL);
    cr_assert_str_eq(status, "pending:1", "bob changed nothing");

    /* An admin token sees everyone's orders. */
    char admin[PS_JWT_MAX + 64];
    ts_bearer(admin, sizeof(admin), "ops", 1);
    const char *headers[] = {admin, NULL};
    r = ts_http("GET", path, headers, NULL, 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    free(id), free(status);
}

Test(orders, only_a_pending_order_changes_or_cancels)
{
    char user[64];
    ts_unique(user, sizeof(user), "user_");
    char *id = create_order(user);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/orders/%s", id);

    ts_http_t r = ts_api("PUT", path, user, WAIT,
                         "{\"items\":[{\"product_id\":\"sku_hat\",\"quantity\":3,\"unit_price\":\"10.50\"}],"
                         "\"metadata\":{\"gift\":\"yes\"}}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *total = ts_json(r.body, "total_minor"), *version = ts_json(r.body, "version");
    cr_assert_str_eq(total, "3150");
    cr_assert_str_eq(version, "2");
    ts_http_free(&r);
    char *lines = ts_sql("SELECT count(*) FROM order_items WHERE order_id = $1", id, NULL);
    cr_assert_str_eq(lines, "1", "the items were replaced");

    r = ts_api("DELETE", path, user, WAIT, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *status = ts_json(r.body, "status");
    cr_assert_str_eq(status, "cancelled");
    ts_http_free(&r);

    r = ts_api("DELETE", path, user, WAIT, NULL);
    assert_error(&r, 409, "order_not_pending", NULL);
    ts_http_free(&r);
    r = ts_api("PUT", path, user, WAIT, "{\"metadata\":{\"late\":\"yes\"}}");
    assert_error(&r, 409, "order_not_pending", NULL);
    ts_http_free(&r);
    free(id), free(total), free(version), free(lines), free(status);
}

Test(orders, the_worker_checks_the_state_again)
{
    /* Two cancels published before either is applied: the intake lets both
     * through (the order is pending when it looks), the worker refuses the
     * second. */
    char user[64];
    ts_unique(user, sizeof(user), "user_");
    char *id = create_order(user);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/orders/%s", id);
    ts_http_t a = ts_api("DELETE", path, user, NULL, NULL);
    ts_http_t b = ts_api("DELETE", path, user, NULL, NULL);
    long statuses[2] = {a.status, b.status};
    char *commands[2] = {ts_json(a.body, "command_id"), ts_json(b.body, "command_id")};
    int applied = 0, refused = 0;
    for (int i = 0; i < 2; i++) {
        if (statuses[i] == 409)
            continue; /* the first was applied before the second was read */
        cr_assert_eq(statuses[i], 202);
        char cpath[128];
        snprintf(cpath, sizeof(cpath), "/api/v1/commands/%s", commands[i]);
        ts_http_t c = ts_api("GET", cpath, user, WAIT, NULL);
        char *http = ts_json(c.body, "http_status");
        applied += strcmp(http, "200") == 0;
        refused += strcmp(http, "409") == 0;
        free(http);
        ts_http_free(&c);
    }
    cr_assert_eq(applied, 1, "exactly one cancel applies");
    cr_assert_eq(refused + (statuses[0] == 409) + (statuses[1] == 409), 1);
    ts_http_free(&a), ts_http_free(&b);
    free(commands[0]), free(commands[1]), free(id);
}

Test(orders, lists_are_paginated_and_filtered)
{
    char user[64];
    ts_unique(user, sizeof(user), "user_");
    char *ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = create_order(user);
    ts_http_t r = ts_api("GET", "/api/v1/orders?limit=2", user, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *more = ts_json(r.body, "has_more");
    cr_assert_str_eq(more, "true");
    cr_assert(strstr(r.body, ids[2]) && strstr(r.body, ids[1]) && !strstr(r.body, ids[0]),
              "newest first: %s", r.body);
    ts_http_free(&r);
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/orders?limit=2&starting_after=%s", ids[1]);
    r = ts_api("GET", path, user, NULL, NULL);
    free(more);
    more = ts_json(r.body, "has_more");
    cr_assert_str_eq(more, "false");
    cr_assert(strstr(r.body, ids[0]) && !strstr(r.body, ids[1]), "%s", r.body);
    ts_http_free(&r);
    r = ts_api("GET", "/api/v1/orders?status=cancelled", user, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_null(strstr(r.body, "ord_"), "no order of this user is cancelled: %s", r.body);
    ts_http_free(&r);
    r = ts_api("GET", "/api/v1/orders?status=lost", user, NULL, NULL);
    assert_error(&r, 400, "parameter_invalid", "status");
    ts_http_free(&r);
    r = ts_api("GET", "/api/v1/orders?limit=1000", user, NULL, NULL);
    assert_error(&r, 400, "parameter_invalid", "limit");
    ts_http_free(&r);
    r = ts_api("GET", "/api/v1/orders?sort=asc", user, NULL, NULL);
    assert_error(&r, 400, "parameter_unknown", "sort");
    ts_http_free(&r);
    free(more);
    for (int i = 0; i < 3; i++)
        free(ids[i]);
}

Test(orders, bad_bodies_are_400_naming_the_field_and_change_nothing)
{
    static const struct {
        const char *body, *code, *param;
    } cases[] = {
        {"{\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":\"1\"}]}",
         "parameter_invalid", "currency"},
        {"{\"currency\":\"xyz\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":\"1\"}]}",
         "parameter_invalid", "currency"},
        {"{\"currency\":\"usd\"}", "parameter_invalid", "items"},
        {"{\"currency\":\"usd\",\"items\":[]}", "parameter_invalid", "items"},
        {"{\"currency\":\"usd\",\"items\":{}}", "parameter_invalid", "items"},
        {"{\"currency\":\"usd\",\"coupon\":\"FREE\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":\"1\"}]}",
         "parameter_invalid", "coupon"},
        {"{\"currency\":\"usd\",\"\u00e9t\u00e9\":1,\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":\"1\"}]}",
         "parameter_invalid", "??t??"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":\"1\",\"discount\":1}]}",
         "parameter_invalid", "items[0].discount"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":0,\"unit_price\":\"1\"}]}",
         "parameter_invalid", "items[0].quantity"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":-2,\"unit_price\":\"1\"}]}",
         "parameter_invalid", "items[0].quantity"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":\"2\",\"unit_price\":\"1\"}]}",
         "parameter_invalid", "items[0].quantity"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1.5,\"unit_price\":\"1\"}]}",
         "parameter_invalid", "items[0].quantity"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":\"29.999\"}]}",
         "parameter_invalid", "items[0].unit_price"},
        {"{\"currency\":\"jpy\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":\"500.5\"}]}",
         "parameter_invalid", "items[0].unit_price"},
        /* A JSON number is an amount only if it is whole cents, by its digits. */
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":29.999}]}",
         "parameter_invalid", "items[0].unit_price"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":1},"
         "{\"product_id\":\"b\",\"quantity\":1,\"unit_price\":1e-7}]}",
         "parameter_invalid", "items[1].unit_price"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":-1.5}]}",
         "parameter_invalid", "items[0].unit_price"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":1.0000000000000001}]}",
         "parameter_invalid", "items[0].unit_price"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":true}]}",
         "parameter_invalid", "items[0].unit_price"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":\"-1\"}]}",
         "parameter_invalid", "items[0].unit_price"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":\"1e3\"}]}",
         "parameter_invalid", "items[0].unit_price"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":100000,\"unit_price\":\"9999999999\"}]}",
         "amount_too_large", "items"},
        {"{\"currency\":\"usd\",\"items\":[{\"quantity\":1,\"unit_price\":\"1\"}]}",
         "parameter_invalid", "items[0].product_id"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"\",\"quantity\":1,\"unit_price\":\"1\"}]}",
         "parameter_invalid", "items[0].product_id"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":\"1\"}],"
         "\"shipping_address\":[\"1 Main St\"]}",
         "parameter_invalid", "shipping_address"},
        {"{\"currency\":\"usd\",\"items\":[{\"product_id\":\"a\",\"quantity\":1,\"unit_price\":\"1\"}],"
         "\"billing_address\":{\"a\":{\"b\":{\"c\":{\"d\":1}}}}}",
         "parameter_invalid", "billing_address"},
        {"{\"currency\":\"usd\",\"currency\":\"eur\",\"items\":[]}", "malformed_json", NULL},
        {"{\"currency\":\"usd\",", "malformed_json", NULL},
        {"[1,2,3]", "malformed_json", NULL},
        {"{\"currency\":\"us\xff\",\"items\":[]}", "malformed_json", NULL},
        /* The parser quotes the body near its fault: half a character here,
         * which must not spoil the error's own JSON (found by fuzz_api_body). */
        {"{\"curref\\u000\xc7\x91tity\":1}", "malformed_json", NULL},
        {"", "body_missing", NULL},
    };
    char user[64];
    ts_unique(user, sizeof(user), "user_");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ts_http_t r = ts_api("POST", "/api/v1/orders", user, WAIT, cases[i].body);
        cr_assert_eq(r.status, 400, "case %zu: %ld %s", i, r.status, r.body);
        assert_error(&r, 400, cases[i].code, cases[i].param);
        ts_http_free(&r);
    }
    /* Deeply nested JSON: refused by the parser's depth limit. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    ts_http_t r = ts_api("POST", "/api/v1/orders", user, NULL, deep);
    assert_error(&r, 400, "malformed_json", NULL);
    ts_http_free(&r);
    free(deep);
    /* Over the body limit. */
    size_t big = 2 * 1024 * 1024;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[0] = '{', huge[big - 1] = '}', huge[big] = '\0';
    r = ts_api("POST", "/api/v1/orders", user, NULL, huge);
    assert_error(&r, 413, "body_too_large", NULL);
    ts_http_free(&r);
    free(huge);

    char *n = order_count(user);
    cr_assert_str_eq(n, "0", "no bad request made an order");
    char *c = ts_sql("SELECT count(*) FROM commands WHERE actor = $1", user, NULL);
    cr_assert_str_eq(c, "0", "nor a command");
    free(n), free(c);
}

Test(orders, credentials_are_required_and_checked)
{
    ts_http_t r = ts_api("GET", "/api/v1/orders", NULL, NULL, NULL);
    assert_error(&r, 401, "missing_credentials", "Authorization");
    char *challenge = ts_header(&r, "WWW-Authenticate");
    cr_assert(challenge && strncmp(challenge, "Bearer", 6) == 0);
    ts_http_free(&r);
    free(challenge);

    char token[PS_JWT_MAX], header[PS_JWT_MAX + 64];
    const char *headers[] = {header, NULL};
    long long now = (long long)time(NULL);
    static const struct {
        long long exp; /* relative to now; 0: no exp claim */
        const char *secret;
    } bad[] = {
        {3600, "not-the-secret-but-long-enough-to-pass"},
        {-3600, NULL}, /* expired an hour ago */
        {0, NULL},     /* no exp */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char payload[128];
        if (bad[i].exp)
            snprintf(payload, sizeof(payload), "{\"sub\":\"mallory\",\"exp\":%lld}", now + bad[i].exp);
        else
            snprintf(payload, sizeof(payload), "{\"sub\":\"mallory\"}");
        cr_assert_eq(ps_jwt_sign(payload, bad[i].secret ? bad[i].secret : ts_env("PAYSTREAM_JWT_SECRET"),
                                 token, sizeof(token)), 0);
        snprintf(header, sizeof(header), "Authorization: Bearer %s", token);
        r = ts_http("GET", "/api/v1/orders", headers, NULL, 0);
        assert_error(&r, 401, "invalid_token", "Authorization");
        ts_http_free(&r);
    }
    /* alg none: header {"alg":"none","typ":"JWT"}, payload {"sub":"mallory","exp":9999999999}. */
    snprintf(header, sizeof(header), "Authorization: Bearer "
             "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5IiwiZXhwIjo5OTk5OTk5OTk5fQ.");
    r = ts_http("GET", "/api/v1/orders", headers, NULL, 0);
    assert_error(&r, 401, "invalid_token", "Authorization");
    ts_http_free(&r);
    snprintf(header, sizeof(header), "Authorization: Basic YWxpY2U6c2VjcmV0");
    r = ts_http("GET", "/api/v1/orders", headers, NULL, 0);
    assert_error(&r, 401, "missing_credentials", "Authorization");
    ts_http_free(&r);
}

Test(orders, api_keys_act_for_their_user_until_revoked)
{
    char user[64];
    ts_unique(user, sizeof(user), "keyuser_");
    char *key = ts_api_key(user, "--sandbox");
    cr_assert(strncmp(key, "psk_dev_", 8) == 0, "a sandbox key: %s", key);
    char *stored = ts_sql("SELECT count(*) FROM api_keys WHERE secret_sha256 = encode(sha256($1::bytea), 'hex')",
                          key, NULL);
    cr_assert_str_eq(stored, "1", "the key's hash is stored");
    char *plain = ts_sql("SELECT count(*) FROM api_keys WHERE id = $1 OR secret_sha256 = $1", key, NULL);
    cr_assert_str_eq(plain, "0", "the key itself is not");

    char header[160];
    snprintf(header, sizeof(header), "Authorization: Bearer %s", key);
    const char *headers[] = {header, "Prefer: wait=30", NULL};
    ts_http_t r = ts_http("POST", "/api/v1/orders", headers, ORDER_BODY, strlen(ORDER_BODY));
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *id = ts_json(r.body, "id");
    char *actor = ts_sql("SELECT actor FROM orders WHERE id = $1", id, NULL);
    cr_assert_str_eq(actor, user);
    ts_http_free(&r);

    /* A wrong secret for a real key id, and a key revoked before its first use. */
    char forged[160];
    snprintf(forged, sizeof(forged), "Authorization: Bearer %.*s%040d", (int)(strlen(key) - 40), key, 0);
    const char *fh[] = {forged, NULL};
    r = ts_http("GET", "/api/v1/orders", fh, NULL, 0);
    assert_error(&r, 401, "invalid_api_key", "Authorization");
    ts_http_free(&r);

    char *revoked = ts_api_key(user, "");
    int status;
    char id_part[64];
    snprintf(id_part, sizeof(id_part), "%.*s", (int)(strlen(revoked) - 41), revoked);
    free(ts_sh(&status, "%s/services/admin/paystream-admin apikey revoke %s",
               ts_env("PAYSTREAM_BUILD_DIR"), id_part));
    cr_assert_eq(status, 0);
    snprintf(header, sizeof(header), "Authorization: Bearer %s", revoked);
    const char *rh[] = {header, NULL};
    r = ts_http("GET", "/api/v1/orders", rh, NULL, 0);
    assert_error(&r, 401, "invalid_api_key", "Authorization");
    ts_http_free(&r);
    free(key), free(stored), free(plain), free(id), free(actor), free(revoked);
}

Test(orders, writes_over_the_limit_get_429_with_retry_after)
{
    char user[64];
    ts_unique(user, sizeof(user), "busy_");
    /* Invalid bodies: each still takes a token, and nothing is created. */
    long status = 0;
    ts_http_t r = {0};
    for (int i = 0; i < 5000 && status != 429; i++) {
        ts_http_free(&r);
        r = ts_api("POST", "/api/v1/orders", user, NULL, "{}");
        status = r.status;
    }
    assert_error(&r, 429, "rate_limited", NULL);
    char *retry = ts_header(&r, "Retry-After");
    cr_assert(retry && atoi(retry) >= 1, "Retry-After: %s", retry);
    ts_http_free(&r);
    /* Reads are not limited, nor are other users. */
    r = ts_api("GET", "/api/v1/orders", user, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    char other[64];
    ts_unique(other, sizeof(other), "calm_");
    r = ts_api("POST", "/api/v1/orders", other, NULL, "{}");
    assert_error(&r, 400, "parameter_invalid", "currency");
    ts_http_free(&r);
    free(retry);
}

Test(orders, unknown_endpoints_and_methods)
{
    char user[64];
    ts_unique(user, sizeof(user), "user_");
    ts_http_t r = ts_api("GET", "/api/v1/nothing", user, NULL, NULL);
    assert_error(&r, 404, "not_found", NULL);
    ts_http_free(&r);
    r = ts_api("PATCH", "/api/v1/orders", user, NULL, "{}");
    assert_error(&r, 405, "method_not_allowed", NULL);
    ts_http_free(&r);
    r = ts_api("GET", "/api/v1/orders/ord_%27%20or%201=1", user, NULL, NULL);
    assert_error(&r, 404, "not_found", NULL);
    ts_http_free(&r);
    r = ts_api("GET", "/api/v1/orders?%ff%fe=1", user, NULL, NULL);
    assert_error(&r, 400, "parameter_unknown", "??");
    ts_http_free(&r);
    r = ts_api("GET", "/api/v1/commands/cmd_nothex", user, NULL, NULL);
    assert_error(&r, 404, "resource_missing", "id");
    ts_http_free(&r);
}
