/* Inventory and notifications, driven by domain events: orders through the
 * API, payments through the fake Stripe API and signed webhooks, domain
 * events through the outbox and Kafka to paystream-inventory (PostgreSQL)
 * and paystream-notifications (the mail catcher of scripts/dev, and the
 * fake Stripe's webhook receiver). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "paystream/stripe_sig.h"
#include "support.h"

static const char *const WAIT[] = {"Prefer: wait=30", NULL};

/* A new product with stock units; its sku goes to sku. */
static void product(char *sku, size_t len, int stock)
{
    int status;
    ts_unique(sku, len, "sku_");
    free(ts_sh(&status, "'%s/services/admin/paystream-admin' products put %s --stock %d --name 'Lamp'",
               getenv("PAYSTREAM_BUILD_DIR"), sku, stock));
    cr_assert_eq(status, 0, "products put %s", sku);
}

/* "stock/reserved" of sku once it equals expect; asserts it does. */
static void wait_counts(const char *sku, const char *expect)
{
    char *last = NULL;
    int ok = ts_wait_sql(expect, "SELECT stock || '/' || reserved FROM products WHERE sku = $1", sku,
                         NULL);
    if (!ok)
        last = ts_sql("SELECT stock || '/' || reserved FROM products WHERE sku = $1", sku, NULL);
    cr_assert(ok, "%s: stock/reserved %s, expected %s", sku, last ? last : "?", expect);
}

/* An order of quantity units of sku (and an optional second item) at 12.50
 * EUR each, with email and customer_name. */
static char *order_of(const char *user, const char *sku, int quantity, const char *email,
                      const char *name, const char *extra_item)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"currency\":\"eur\",\"email\":\"%s\",\"customer_name\":\"%s\","
             "\"items\":[{\"product_id\":\"%s\",\"name\":\"Lamp\",\"quantity\":%d,"
             "\"unit_price\":\"12.50\"}%s%s]}",
             email, name, sku, quantity, extra_item ? "," : "", extra_item ? extra_item : "");
    return ts_call(user, "POST", "/api/v1/orders", body, 201, "id");
}

/* Pays order (amount in EUR) by card; returns the payment's id. */
static char *pay(const char *user, const char *order, const char *amount)
{
    char body[256], path[160];
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"%s\",\"currency\":\"eur\"}",
             order, amount);
    char *payment = ts_call(user, "POST", "/api/v1/payments", body, 201, "id");
    snprintf(path, sizeof(path), "/api/v1/payments/%s/process", payment);
    char *status = ts_call(user, "POST", path, "{\"payment_method\":\"pm_card_visa\"}", 200, "status");
    cr_assert_str_eq(status, "completed");
    free(status);
    return payment;
}

/* How many emails the mail catcher holds that contain text. */
static int mails_with(const char *text)
{
    int status;
    char *out = ts_sh(&status, "grep -l -F -e '%s' '%s'/new/* 2>/dev/null | wc -l", text,
                      ts_env("PAYSTREAM_MAIL_DIR"));
    int n = atoi(out);
    free(out);
    return n;
}

/* The one email that contains text, whole (malloc'd). */
static char *mail_with(const char *text)
{
    int status;
    char *mail = ts_sh(&status, "cat \"$(grep -l -F -e '%s' '%s'/new/* | head -1)\"", text,
                       ts_env("PAYSTREAM_MAIL_DIR"));
    cr_assert(status == 0 && *mail, "no email with %s", text);
    return mail;
}

/* Waits until the email of event_type about aggregate was sent. */
static void wait_email_sent(const char *event_type, const char *aggregate)
{
    cr_assert(ts_wait_sql("sent", "SELECT status FROM notifications WHERE channel = 'email' "
                          "AND event_type = $1 AND aggregate = $2", event_type, aggregate, NULL),
              "the %s email of %s is sent", event_type, aggregate);
}

Test(stock, a_paid_order_commits_its_stock_and_mails_one_confirmation_even_when_replayed)
{
    char user[64], sku[64], email[96], path[160];
    ts_unique(user, sizeof(user), "stock_");
    product(sku, sizeof(sku), 5);
    snprintf(email, sizeof(email), "%s@example.com", user);
    char *order = order_of(user, sku, 2, email, "Ann", NULL);
    wait_counts(sku, "5/2");
    char *stock = ts_sql("SELECT ps_order_json($1)->>'stock'", order, NULL);
    cr_assert_str_eq(stock, "reserved", "the API shows the order's stock reserved");
    free(stock);

    char *payment = pay(user, order, "25.00");
    wait_counts(sku, "3/0");
    wait_email_sent("order.paid", order);
    char *number = ts_sql("SELECT number FROM orders WHERE id = $1", order, NULL);
    cr_assert_eq(mails_with(number), 1, "one confirmation of %s", number);
    char *mail = mail_with(number);
    cr_assert(strstr(mail, "To: ") && strstr(mail, email), "sent to the customer");
    cr_assert(strstr(mail, "multipart/alternative") && strstr(mail, "text/html") &&
              strstr(mail, "25.00 EUR"), "text and HTML with the total: %s", mail);
    free(mail);

    /* The relay publishes order.paid again, as after a crash between
     * publishing and marking it: same message id. */
    char *replayed = ts_sql("WITH r AS (UPDATE outbox SET published_at = NULL WHERE type = 'order.paid' "
                            "AND aggregate = $1 RETURNING 1) SELECT count(*) FROM r", order, NULL);
    cr_assert_str_eq(replayed, "1");
    free(replayed);
    cr_assert(ts_wait_sql("1", "SELECT count(*) FROM outbox WHERE aggregate = $1 "
                          "AND type = 'order.paid' AND published_at IS NOT NULL", order, NULL),
              "the relay published it again");

    /* A full refund puts the units back, and mails the refund. Its events
     * come after the replayed one on the order's partition, so once they
     * are applied the replay was too. */
    snprintf(path, sizeof(path), "/api/v1/payments/%s/refund", payment);
    free(ts_call(user, "POST", path, "{\"amount\":\"25.00\"}", 200, "status"));
    wait_counts(sku, "5/0");
    wait_email_sent("payment.refunded", order);
    cr_assert_eq(ts_kafka_count("paystream.domain.events", order, "order.paid", NULL), 2,
                 "order.paid was published twice");
    cr_assert_eq(mails_with(number), 2, "one confirmation and one refund email, nothing twice");
    char *commits = ts_sql("SELECT count(*) FROM stock_movements WHERE order_id = $1 AND kind = 'commit'",
                           order, NULL);
    cr_assert_str_eq(commits, "1", "the stock was committed once");
    char *emails = ts_sql("SELECT count(*) FROM notifications WHERE aggregate = $1 "
                          "AND event_type = 'order.paid' AND channel = 'email'", order, NULL);
    cr_assert_str_eq(emails, "1");
    free(commits);
    free(emails);
    free(number);
    free(payment);
    free(order);
}

Test(stock, orders_racing_for_the_last_unit_on_two_workers_leave_exactly_one_winner)
{
    enum { ORDERS = 12 };
    char user[64], sku[64], email[96];
    ts_unique(user, sizeof(user), "race_");
    snprintf(email, sizeof(email), "%s@example.com", user);
    product(sku, sizeof(sku), 1);
    cr_assert_eq(ts_svc("start", "inventory2"), 0);
    char *orders[ORDERS];
    for (int i = 0; i < ORDERS; i++)
        orders[i] = order_of(user, sku, 1, email, "Racer", NULL);
    for (int i = 0; i < ORDERS; i++)
        cr_assert(ts_wait_sql("1", "SELECT count(*) FROM stock_reservations WHERE order_id = $1",
                              orders[i], NULL), "order %d seen by the inventory", i);
    ts_svc("stop", "inventory2");
    char *won = ts_sql("SELECT count(*) FROM stock_reservations WHERE sku = $1 AND status = 'reserved'",
                       sku, NULL);
    char *lost = ts_sql("SELECT count(*) FROM stock_reservations WHERE sku = $1 "
                        "AND status = 'rejected_out_of_stock'", sku, NULL);
    cr_assert_str_eq(won, "1", "exactly one order holds the last unit");
    cr_assert_str_eq(lost, "11", "every other order is rejected out of stock");
    wait_counts(sku, "1/1");

    /* A rejected order is cancelled for it, not left pending; the winner
     * is not. It takes no payment, and its customer hears why. */
    const char *loser = NULL, *winner = NULL;
    for (int i = 0; i < ORDERS; i++) {
        char *s = ts_sql("SELECT ps_order_stock($1)", orders[i], NULL);
        if (strcmp(s, "rejected_out_of_stock") == 0)
            loser = orders[i];
        else
            winner = orders[i];
        free(s);
    }
    cr_assert_not_null(loser);
    cr_assert_not_null(winner);
    cr_assert(ts_wait_sql("11", "SELECT count(*) FROM orders o JOIN stock_reservations r "
                                "ON r.order_id = o.id WHERE r.sku = $1 AND o.status = 'cancelled' "
                                "AND o.cancellation_reason = 'out_of_stock'", sku, NULL),
              "every rejected order is cancelled, out of stock");
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/orders/%s", loser);
    ts_http_t r = ts_api("GET", path, user, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *status = ts_json(r.body, "status"), *reason = ts_json(r.body, "cancellation_reason");
    cr_assert_str_eq(status, "cancelled");
    cr_assert_str_eq(reason, "out_of_stock");
    free(status), free(reason);
    ts_http_free(&r);
    char *winning = ts_sql("SELECT status FROM orders WHERE id = $1", winner, NULL);
    cr_assert_str_eq(winning, "pending", "the order that got the unit waits for its payment");
    free(winning);
    char body[256];
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"12.50\",\"currency\":\"eur\"}",
             loser);
    r = ts_api("POST", "/api/v1/payments", user, WAIT, body);
    cr_assert_eq(r.status, 409, "%s", r.body);
    char *code = ts_json(r.body, "error.code");
    cr_assert_str_eq(code, "order_not_pending");
    free(code);
    ts_http_free(&r);
    wait_email_sent("order.rejected_out_of_stock", loser);
    char *cancelled = ts_sql("SELECT count(*) FROM outbox WHERE aggregate = $1 AND type = 'order.cancelled' "
                             "AND payload->'data'->>'cancellation_reason' = 'out_of_stock'", loser, NULL);
    cr_assert_str_eq(cancelled, "1", "one order.cancelled, with its reason");
    free(cancelled);
    free(won);
    free(lost);
    for (int i = 0; i < ORDERS; i++)
        free(orders[i]);
}

/* Orders posted without waiting reach the workers together, so their
 * creates and reservations are applied a batch at a time: the outcome must
 * be what applying them one by one in log order gives. */
Test(stock, a_burst_of_orders_reserved_together_keeps_log_order_all_or_nothing_and_the_books)
{
    enum { ORDERS = 40 };
    char user[64], scarce[64], plenty[64];
    ts_unique(user, sizeof(user), "burst_");
    product(scarce, sizeof(scarce), 10);
    product(plenty, sizeof(plenty), 100);
    for (int i = 0; i < ORDERS; i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"currency\":\"eur\",\"items\":["
                 "{\"product_id\":\"%s\",\"quantity\":%d,\"unit_price\":\"12.50\"},"
                 "{\"product_id\":\"%s\",\"quantity\":1,\"unit_price\":\"1.00\"}]}",
                 scarce, i % 3 + 1, plenty);
        ts_http_t r = ts_api("POST", "/api/v1/orders", user, NULL, body);
        cr_assert_eq(r.status, 202, "%s", r.body);
        ts_http_free(&r);
    }
    char n[16];
    snprintf(n, sizeof(n), "%d", ORDERS);
    cr_assert(ts_wait_sql(n, "SELECT count(DISTINCT r.order_id) FROM stock_reservations r "
                             "JOIN orders o ON o.id = r.order_id WHERE o.actor = $1", user, NULL),
              "every order seen by the inventory");

    /* All or nothing: both lines of an order stand the same. */
    char *split = ts_sql("SELECT count(*) FROM stock_reservations a JOIN stock_reservations b "
                         "USING (order_id) WHERE a.sku = $1 AND b.sku = $2 AND a.status <> b.status",
                         scarce, plenty, NULL);
    cr_assert_str_eq(split, "0", "no order is half reserved");
    /* Counts match the lines, within stock; something was turned away. */
    char *books = ts_sql("SELECT count(*) FROM products p WHERE p.sku IN ($1, $2) AND (p.reserved > p.stock "
                         "OR p.reserved <> (SELECT coalesce(sum(quantity), 0) FROM stock_reservations r "
                         "WHERE r.sku = p.sku AND r.status = 'reserved'))", scarce, plenty, NULL);
    cr_assert_str_eq(books, "0", "reserved is the reserved lines' units, within stock");
    char *rejected = ts_sql("SELECT count(*) FROM stock_reservations WHERE sku = $1 "
                            "AND status = 'rejected_out_of_stock'", scarce, NULL);
    cr_assert_gt(atoi(rejected), 0, "40 orders of 1 to 3 units cannot all fit in 10");
    /* In log order: free units only shrink while orders come in, so an
     * order turned away must ask more than is free even now. */
    char *wrong = ts_sql("SELECT count(*) FROM stock_reservations r WHERE r.sku = $1 "
                         "AND r.status = 'rejected_out_of_stock' "
                         "AND r.quantity <= (SELECT stock - reserved FROM products WHERE sku = $1)",
                         scarce, NULL);
    cr_assert_str_eq(wrong, "0", "no order was turned away that fitted");
    /* Each movement starts where the one before it ended. */
    char *gaps = ts_sql("SELECT count(*) FROM (SELECT reserved_after, reserved_delta, "
                        "lag(reserved_after) OVER (PARTITION BY sku ORDER BY id) AS before "
                        "FROM stock_movements WHERE sku IN ($1, $2)) m "
                        "WHERE m.before IS NOT NULL AND m.reserved_after - m.reserved_delta <> m.before",
                        scarce, plenty, NULL);
    cr_assert_str_eq(gaps, "0", "the movements chain");
    char *events = ts_sql("SELECT count(*) FROM outbox o JOIN orders d ON d.id = o.aggregate "
                          "WHERE d.actor = $1 AND o.type = 'order.rejected_out_of_stock'", user, NULL);
    cr_assert_str_eq(events, rejected, "one order.rejected_out_of_stock per rejected order");
    free(split), free(books), free(rejected), free(wrong), free(gaps), free(events);
}

Test(stock, a_cancelled_order_releases_its_stock_and_an_unknown_sku_blocks_no_other_line)
{
    char user[64], sku[64], path[160], unknown[160];
    ts_unique(user, sizeof(user), "cancel_");
    product(sku, sizeof(sku), 5);
    snprintf(unknown, sizeof(unknown),
             "{\"product_id\":\"%s_missing\",\"quantity\":1,\"unit_price\":\"1.00\"}", sku);
    char *order = order_of(user, sku, 3, "c@example.com", "Cy", unknown);
    wait_counts(sku, "5/3");
    char *lines = ts_sql("SELECT string_agg(status, ',' ORDER BY line) FROM stock_reservations "
                         "WHERE order_id = $1", order, NULL);
    cr_assert_str_eq(lines, "reserved,unknown_sku", "the known line is reserved all the same");
    free(lines);

    snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
    free(ts_call(user, "DELETE", path, NULL, 200, "status"));
    wait_counts(sku, "5/0");
    char *moves = ts_sql("SELECT string_agg(kind || ':' || reserved_delta, ',' ORDER BY id) "
                         "FROM stock_movements WHERE order_id = $1", order, NULL);
    cr_assert_str_eq(moves, "reserve:3,release:-3");
    free(moves);
    free(order);
}

Test(stock, an_order_that_expires_unpaid_releases_its_stock)
{
    char user[64], sku[64];
    ts_unique(user, sizeof(user), "expire_");
    product(sku, sizeof(sku), 4);
    char body[512];
    snprintf(body, sizeof(body),
             "{\"currency\":\"eur\",\"expires_in\":2,\"items\":[{\"product_id\":\"%s\","
             "\"quantity\":4,\"unit_price\":\"1.00\"}]}", sku);
    char *order = ts_call(user, "POST", "/api/v1/orders", body, 201, "id");
    cr_assert(ts_wait_sql("expired", "SELECT status FROM orders WHERE id = $1", order, NULL));
    cr_assert(ts_wait_sql("reserve,release", "SELECT string_agg(kind, ',' ORDER BY id) "
                          "FROM stock_movements WHERE order_id = $1", order, NULL),
              "reserved, then released");
    wait_counts(sku, "4/0");
    free(order);
}

Test(stock, an_oxxo_voucher_email_has_the_number_and_link_and_escapes_the_customer_name)
{
    char user[64], sku[64], pi[64], evt[64], obj[900], body[256];
    ts_unique(user, sizeof(user), "oxxo_");
    product(sku, sizeof(sku), 10);
    char *order = order_of(user, sku, 1, "oxxo@example.com", "<img src=x onerror=alert(1)>&co", NULL);
    /* The payment paystream makes for the order; Stripe's intent for it names
     * it in metadata.payment_id, as the gateway writes it. */
    snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"amount\":\"12.50\",\"currency\":\"eur\"}",
             order);
    char *payment = ts_call(user, "POST", "/api/v1/payments", body, 201, "id");
    ts_unique(pi, sizeof(pi), "pi_");
    ts_unique(evt, sizeof(evt), "evt_");
    snprintf(obj, sizeof(obj),
             "{\"id\":\"%s\",\"object\":\"payment_intent\",\"amount\":1250,\"currency\":\"eur\","
             "\"status\":\"requires_action\",\"metadata\":{\"payment_id\":\"%s\",\"order_id\":\"%s\"},"
             "\"next_action\":{\"type\":\"oxxo_display_details\",\"oxxo_display_details\":"
             "{\"number\":\"%s0042\",\"expires_after\":1796000000,"
             "\"hosted_voucher_url\":\"https://payments.stripe.com/oxxo/voucher/%s\"}}}",
             pi, payment, order, pi + 3, pi);
    char *event = ts_event(evt, "payment_intent.requires_action", time(NULL), obj);
    ts_http_t r = ts_post_signed("/webhooks/stripe", event, ts_env("STRIPE_WEBHOOK_SECRET"), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    ts_http_free(&r);
    free(event);
    wait_email_sent("checkout.voucher_issued", order);
    char number[80];
    snprintf(number, sizeof(number), "%s0042", pi + 3);
    char *mail = mail_with(number);
    char link[160];
    snprintf(link, sizeof(link), "href=\"https://payments.stripe.com/oxxo/voucher/%s\"", pi);
    cr_assert(strstr(mail, link), "the HTML links the voucher: %s", mail);
    cr_assert(strstr(mail, "12.50 EUR"), "the amount");
    cr_assert(strstr(mail, "&lt;img src=x onerror=alert(1)&gt;&amp;co"),
              "the name is escaped in the HTML: %s", mail);
    char *html = strstr(mail, "text/html");
    cr_assert(html && strstr(html, "<img") == NULL, "no markup of the customer in the HTML");
    free(mail);
    free(payment);
    free(order);
}

/* The calls the webhook receiver got for subscriber name about aggregate,
 * as a JSON array (new reference). */
static json_t *hook_calls(const char *name, const char *aggregate)
{
    int status;
    char *out = ts_sh(&status, "curl -fsS http://127.0.0.1:%s/_hooks",
                      ts_env("PAYSTREAM_FAKE_STRIPE_PORT"));
    json_t *all = json_loads(out, 0, NULL), *mine = json_array();
    free(out);
    size_t i;
    json_t *c;
    json_array_foreach(all, i, c) {
        const char *body = json_string_value(json_object_get(c, "body"));
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0 && body &&
            strstr(body, aggregate))
            json_array_append(mine, c);
    }
    json_decref(all);
    return mine;
}

Test(stock, a_webhook_receiver_that_fails_three_times_gets_it_once_more_signed_and_a_dead_one_holds_back_nothing)
{
    char name[64], dead[64], user[64], sku[64];
    int status;
    ts_unique(name, sizeof(name), "hooks_");
    ts_unique(dead, sizeof(dead), "dead_");
    ts_unique(user, sizeof(user), "hook_");
    const char *admin = getenv("PAYSTREAM_BUILD_DIR");
    const char *port = ts_env("PAYSTREAM_FAKE_STRIPE_PORT");
    char *secret = ts_sh(&status, "'%s/services/admin/paystream-admin' subscribers add %s "
                         "--url http://127.0.0.1:%s/_hooks/%s --events order.created",
                         admin, name, port, name);
    cr_assert_eq(status, 0);
    secret[strcspn(secret, "\n")] = '\0';
    free(ts_sh(&status, "'%s/services/admin/paystream-admin' subscribers add %s "
               "--url http://127.0.0.1:1/nobody --events order.created", admin, dead));
    cr_assert_eq(status, 0);
    free(ts_sh(&status, "curl -fsS -X POST 'http://127.0.0.1:%s/_hook_fail?name=%s&count=3'", port,
               name));
    cr_assert_eq(status, 0);

    product(sku, sizeof(sku), 5);
    char *order = order_of(user, sku, 1, "h@example.com", "Hu", NULL);
    cr_assert(ts_wait_sql("sent", "SELECT status FROM notifications WHERE target = $1 "
                          "AND aggregate = $2", name, order, NULL), "the webhook was delivered");
    json_t *calls = hook_calls(name, order);
    cr_assert_eq(json_array_size(calls), 4, "three failures, then one delivery");
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(json_integer_value(json_object_get(json_array_get(calls, i), "status")),
                     i < 3 ? 500 : 200);
    json_t *last = json_array_get(calls, 3);
    const char *body = json_string_value(json_object_get(last, "body"));
    ps_sig_keys_t keys;
    char err[128];
    cr_assert_eq(ps_sig_keys_parse(secret, &keys, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ps_sig_verify(json_string_value(json_object_get(last, "signature")), body,
                               strlen(body), &keys, time(NULL), 300), PS_SIG_OK,
                 "the delivery is signed with the subscriber's secret");
    ps_sig_keys_free(&keys);
    char *type = ts_json(body, "type");
    cr_assert_str_eq(type, "order.created");
    char *id = ts_json(body, "id");
    cr_assert_str_eq(id, json_string_value(json_object_get(last, "event_id")));
    free(type);
    free(id);

    /* The dead receiver is still being retried; it held back nothing. */
    char *pending = ts_sql("SELECT status IN ('pending', 'sending') AND last_error IS NOT NULL "
                           "FROM notifications WHERE target = $1 AND aggregate = $2", dead, order,
                           NULL);
    cr_assert_str_eq(pending, "t", "the dead receiver's message waits for its next try");
    free(pending);
    free(ts_sh(&status, "'%s/services/admin/paystream-admin' subscribers remove %s", admin, dead));
    free(ts_sh(&status, "'%s/services/admin/paystream-admin' subscribers remove %s", admin, name));
    json_decref(calls);
    free(secret);
    free(order);
}

/* Calls the API as an admin (a JWT with scope admin) and waits for a
 * write's result; returns the answer. */
static ts_http_t as_admin(const char *method, const char *path, const char *body,
                          const char *idempotency_key)
{
    char auth[1024], key[128];
    ts_bearer(auth, sizeof(auth), "ops_products", 1);
    snprintf(key, sizeof(key), "Idempotency-Key: %s", idempotency_key ? idempotency_key : "");
    const char *headers[] = {auth, "Prefer: wait=30", "Content-Type: application/json",
                             idempotency_key ? key : NULL, NULL};
    return ts_http(method, path, headers, body, body ? strlen(body) : 0);
}

Test(stock, admins_read_and_set_stock_through_the_products_api_and_no_one_else_can)
{
    char unique[64], sku[96], path[160], body[256];
    ts_unique(unique, sizeof(unique), "");
    snprintf(sku, sizeof(sku), "TS-RED.XL:%s", unique); /* every character a sku may have */
    snprintf(path, sizeof(path), "/api/v1/products/%s", sku);

    ts_http_t r = as_admin("PUT", path, "{\"stock\": 5, \"name\": \"Red T-shirt, XL\"}", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *got = ts_json(r.body, "available"), *name = ts_json(r.body, "name");
    cr_assert_str_eq(got, "5");
    cr_assert_str_eq(name, "Red T-shirt, XL");
    free(got), free(name);
    ts_http_free(&r);
    wait_counts(sku, "5/0");

    /* An order holds 3: stock cannot go below that, and may go down to it. */
    char *order = order_of("shopper_products", sku, 3, "p@example.com", "Pat", NULL);
    wait_counts(sku, "5/3");
    ts_expect(as_admin("PUT", path, "{\"stock\": 2}", NULL), 409, "stock_below_reserved");
    wait_counts(sku, "5/3");
    r = as_admin("PUT", path, "{\"stock\": 3}", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    got = ts_json(r.body, "available"), name = ts_json(r.body, "name");
    cr_assert_str_eq(got, "0");
    cr_assert_str_eq(name, "Red T-shirt, XL", "a PUT without a name keeps it");
    free(got), free(name);
    ts_http_free(&r);

    r = as_admin("GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char *stock = ts_json(r.body, "stock"), *reserved = ts_json(r.body, "reserved");
    cr_assert_str_eq(stock, "3");
    cr_assert_str_eq(reserved, "3");
    free(stock), free(reserved);
    ts_http_free(&r);
    /* The list by sku: starting after a prefix of this sku, it comes first. */
    char list[256];
    snprintf(list, sizeof(list), "/api/v1/products?limit=1&starting_after=%.*s", (int)strlen(sku) - 1,
             sku);
    r = as_admin("GET", list, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "[{\"sku\": \"") && strstr(r.body, sku), "%s", r.body);
    ts_http_free(&r);

    /* A retried PUT with its Idempotency-Key is answered, not applied
     * again over a change made since (the CLI's). */
    snprintf(body, sizeof(body), "{\"stock\": 7}");
    ts_expect(as_admin("PUT", path, body, unique), 200, NULL);
    int status;
    free(ts_sh(&status, "'%s/services/admin/paystream-admin' products put '%s' --stock 8",
               getenv("PAYSTREAM_BUILD_DIR"), sku));
    cr_assert_eq(status, 0);
    r = as_admin("PUT", path, body, unique);
    cr_assert_eq(r.status, 200, "%s", r.body);
    got = ts_json(r.body, "stock");
    cr_assert_str_eq(got, "7", "the first answer, again");
    free(got);
    ts_http_free(&r);
    wait_counts(sku, "8/3");

    /* Shoppers neither see nor change the catalog, in the intake or the worker. */
    ts_expect(ts_api("GET", "/api/v1/products", "shopper_products", NULL, NULL), 403, "admin_only");
    ts_expect(ts_api("GET", path, "shopper_products", NULL, NULL), 403, "admin_only");
    ts_expect(ts_api("PUT", path, "shopper_products", WAIT, "{\"stock\": 1000}"), 403, "admin_only");
    wait_counts(sku, "8/3");

    /* Bad input: named, and nothing changes. */
    ts_expect(as_admin("PUT", path, "{\"stock\": -1}", NULL), 400, "parameter_invalid");
    ts_expect(as_admin("PUT", path, "{\"stock\": \"5\"}", NULL), 400, "parameter_invalid");
    ts_expect(as_admin("PUT", path, "{\"stock\": 5, \"price\": 1}", NULL), 400, NULL);
    ts_expect(as_admin("PUT", path, "{\"stock\": 5, \"name\": \"two\\nlines\"}", NULL), 400,
           "parameter_invalid");
    ts_expect(as_admin("GET", "/api/v1/products/no_such_sku_at_all", NULL, NULL), 404,
           "resource_missing");
    ts_expect(as_admin("GET", "/api/v1/products/-dash-first", NULL, NULL), 404, NULL);
    wait_counts(sku, "8/3");
    free(order);
}
