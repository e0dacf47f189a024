/* The notification emails' rendering: escaping, the values of an event,
 * the shipped templates. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "notifications.h"

Test(render, html_escape_turns_every_markup_character_into_an_entity)
{
    char *s = html_escape("<a href=\"x\">Tom & 'Jerry'</a>");
    cr_assert_str_eq(s, "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
    free(s);
}

static json_t *event(const char *text)
{
    json_error_t err;
    json_t *e = json_loads(text, 0, &err);
    cr_assert_not_null(e, "%s", err.text);
    return e;
}

Test(render, values_format_amounts_times_and_nested_objects_and_drop_unsafe_links)
{
    json_t *e = event("{\"type\":\"checkout.voucher_issued\",\"data\":{\"currency\":\"mxn\","
                      "\"amount_minor\":15000,\"order_number\":\"PS-1\",\"voucher\":{\"number\":\"123\","
                      "\"expires_at\":1796000000,\"hosted_voucher_url\":\"javascript:alert(1)\"}}}");
    json_t *v = render_values(e);
    cr_assert_str_eq(json_string_value(json_object_get(v, "amount")), "150.00 MXN");
    cr_assert_str_eq(json_string_value(json_object_get(v, "voucher_number")), "123");
    cr_assert_str_eq(json_string_value(json_object_get(v, "voucher_expires_at")),
                     "2026-11-30 00:53 UTC");
    cr_assert_null(json_object_get(v, "voucher_hosted_voucher_url"), "only http(s) links");
    cr_assert_str_eq(json_string_value(json_object_get(v, "customer_name")), "customer");
    json_decref(v);
    json_decref(e);
}

Test(render, the_order_confirmation_escapes_values_in_html_only_and_keeps_the_subject_one_line)
{
    char err[256];
    templates_t *t = templates_load(PS_TEMPLATE_DIR, err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    json_t *e = event("{\"type\":\"order.paid\",\"data\":{\"number\":\"PS-7\\r\\nBcc: x@y.z\","
                      "\"currency\":\"JPY\",\"total_minor\":1500,\"customer_name\":\"<b>Bo</b>\","
                      "\"items\":[{\"sku\":\"s1\",\"name\":\"Tea & <cakes>\",\"quantity\":3,"
                      "\"unit_price_minor\":500}]}}");
    json_t *v = render_values(e);
    email_t m;
    cr_assert_eq(render_email(t, "order_confirmation", v, &m), 0);
    cr_assert_null(strchr(m.subject, '\n'), "the subject stays one header line: %s", m.subject);
    cr_assert(strstr(m.text, "Hello <b>Bo</b>") && strstr(m.text, "1500 JPY"), "%s", m.text);
    cr_assert(strstr(m.html, "Hello &lt;b&gt;Bo&lt;/b&gt;") && !strstr(m.html, "<b>Bo"), "%s", m.html);
    cr_assert(strstr(m.html, "<td>Tea &amp; &lt;cakes&gt;</td><td>1500 JPY</td>"), "%s", m.html);
    email_free(&m);
    cr_assert_eq(render_email(t, "no_such_template", v, &m), -1);
    json_decref(v);
    json_decref(e);
    templates_free(t);
}

Test(render, a_missing_template_folder_is_named_in_the_error)
{
    char err[256];
    cr_assert_null(templates_load("/nonexistent", err, sizeof(err)));
    cr_assert(strstr(err, "/nonexistent/order_confirmation.txt"), "%s", err);
}

/* The boundary of a message, read from its Content-Type header. */
static char *boundary_of(const char *msg)
{
    const char *b = strstr(msg, "boundary=\"");
    cr_assert_not_null(b, "%s", msg);
    b += 10;
    return strndup(b, strcspn(b, "\""));
}

Test(mail, the_boundary_is_random_per_message_and_not_made_from_the_id)
{
    smtp_t smtp = {.from = "shop@example.com"};
    email_t e = {.subject = "s", .text = "text", .html = "<p>html</p>"};
    /* An id of ten digits: random hex holds two given digits in a row
     * often, ten almost never. */
    char *a = mail_compose(&smtp, "a@example.com", &e, 9876543210LL);
    char *b = mail_compose(&smtp, "a@example.com", &e, 9876543210LL);
    char *ba = boundary_of(a), *bb = boundary_of(b);
    cr_assert_str_neq(ba, bb, "two messages of one notification share no boundary");
    cr_assert_null(strstr(ba, "9876543210"), "the boundary says nothing of the id: %s", ba);
    cr_assert_geq(strlen(ba), 32);
    cr_assert(strstr(a, "Message-ID: <notification-9876543210@paystream>"),
              "the Message-ID stays stable");
    free(ba), free(bb), free(a), free(b);
}

Test(mail, a_value_cannot_open_a_part_or_a_header)
{
    char err[256];
    templates_t *t = templates_load(PS_TEMPLATE_DIR, err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    /* A name that would end the text part and start one of its own, were
     * its line breaks kept and the boundary guessable. */
    json_t *e = event("{\"type\":\"order.paid\",\"data\":{\"number\":\"PS-9\",\"currency\":\"USD\","
                      "\"total_minor\":100,\"customer_name\":\"Eve\\r\\n\\r\\n--=_paystream_9\\r\\n"
                      "Content-Type: text/html\\r\\n\\r\\n<a href=x>win</a>\",\"items\":[{\"sku\":\"s\","
                      "\"name\":\"Tea\\nBcc: all@example.com\",\"quantity\":1,\"unit_price_minor\":100}]}}");
    json_t *v = render_values(e);
    email_t m;
    cr_assert_eq(render_email(t, "order_confirmation", v, &m), 0);
    smtp_t smtp = {.from = "shop@example.com"};
    char *msg = mail_compose(&smtp, "eve@example.com", &m, 9);
    char *b = boundary_of(msg);
    char delim[80];
    snprintf(delim, sizeof(delim), "\r\n--%s", b);
    int parts = 0;
    for (const char *p = msg; (p = strstr(p, delim)) != NULL; p += strlen(delim))
        parts++;
    cr_assert_eq(parts, 3, "the text part, the HTML part and the end: %s", msg);
    cr_assert_null(strstr(msg, "\r\nContent-Type: text/html\r\n\r\n<a href=x>"),
                   "no part of the customer's: %s", msg);
    cr_assert_null(strstr(msg, "\r\nBcc:"), "no header of the customer's: %s", msg);
    cr_assert(strstr(m.text, "Eve --=_paystream_9 Content-Type: text/html <a href=x>win</a>"),
              "the name stays, on one line: %s", m.text);
    cr_assert(strstr(m.text, "Tea Bcc: all@example.com"), "%s", m.text);
    free(b);
    free(msg);
    email_free(&m);
    json_decref(v);
    json_decref(e);
    templates_free(t);
}

Test(mail, a_password_over_clear_text_smtp_is_refused_unless_allowed)
{
    char err[512];
    smtp_t plain = {.url = "smtp://mail.example.com:25", .user = "shop", .password = "pw"};
    cr_assert_eq(smtp_check(&plain, 0, err, sizeof(err)), -1);
    cr_assert(strstr(err, "PAYSTREAM_SMTP_STARTTLS") && !strstr(err, "pw\""), "%s", err);
    cr_assert_eq(smtp_check(&plain, 1, err, sizeof(err)), 0, "allowed explicitly");
    smtp_t tls = plain;
    tls.starttls = 1;
    cr_assert_eq(smtp_check(&tls, 0, err, sizeof(err)), 0, "STARTTLS required");
    smtp_t smtps = {.url = "smtps://mail.example.com:465", .user = "shop", .password = "pw"};
    cr_assert_eq(smtp_check(&smtps, 0, err, sizeof(err)), 0, "TLS from the start");
    smtp_t anonymous = {.url = "smtp://127.0.0.1:25", .user = ""};
    cr_assert_eq(smtp_check(&anonymous, 0, err, sizeof(err)), 0, "no credentials to expose");
}
