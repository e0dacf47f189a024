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
