/* The email renderer: any domain event (the input, as JSON) rendered with
 * every shipped template and composed into a message must keep the
 * message's shape: a one-line subject, and exactly the text part, the HTML
 * part and the closing boundary, however the event's values are made. */
#include <jansson.h>

#include "fuzz.h"
#include "notifications.h"

static const char *const names[] = {"order_confirmation", "payment_failed", "refund_issued",
                                    "oxxo_voucher", "out_of_stock", "account_deauthorized",
                                    "account_no_external_accounts"};

/* How many lines of msg open with --boundary. */
static int delimiters(const char *msg)
{
    const char *b = strstr(msg, "boundary=\"");
    FUZZ_CHECK(b != NULL);
    b += 10;
    char delim[80];
    snprintf(delim, sizeof(delim), "\r\n--%.*s", (int)strcspn(b, "\""), b);
    int n = 0;
    for (const char *p = msg; (p = strstr(p, delim)) != NULL; p += strlen(delim))
        n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static templates_t *t;
    char err[256];
    if (t == NULL && (t = templates_load(PS_TEMPLATE_DIR, err, sizeof(err))) == NULL) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    json_t *event = json_loadb((const char *)data, size, 0, NULL);
    if (!json_is_object(event)) {
        json_decref(event);
        return 0;
    }
    json_t *values = render_values(event);
    smtp_t smtp = {.from = "shop@example.com"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        email_t m;
        FUZZ_CHECK(render_email(t, names[i], values, &m) == 0);
        FUZZ_CHECK(strpbrk(m.subject, "\r\n") == NULL);
        char *msg = mail_compose(&smtp, "someone@example.com", &m, 7);
        FUZZ_CHECK(delimiters(msg) == 3);
        free(msg);
        email_free(&m);
    }
    json_decref(values);
    json_decref(event);
    return 0;
}
