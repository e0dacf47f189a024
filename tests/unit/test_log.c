#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "paystream/log.h"

static void redact(const char *key, const char *value, char *out, size_t len)
{
    ps_log_redact(key, value, out, len);
}

Test(log, redacts_values_under_secret_keys)
{
    char out[128];
    static const char *const keys[] = {"secret", "STRIPE_WEBHOOK_SECRET", "password",
                                       "Authorization", "api_key", "card_number",
                                       "stripe_signature", "access_token"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        redact(keys[i], "hunter2", out, sizeof(out));
        cr_assert_str_eq(out, "[redacted]", "key %s", keys[i]);
    }
    redact("event_id", "evt_123", out, sizeof(out));
    cr_assert_str_eq(out, "evt_123");
}

Test(log, masks_stripe_keys_inside_text)
{
    char out[256];
    redact("detail", "auth failed for sk_live_abcdef123456 on retry", out, sizeof(out));
    cr_assert_str_eq(out, "auth failed for sk_live_[redacted] on retry");
    redact("detail", "secret whsec_0123456789abcdef", out, sizeof(out));
    cr_assert_str_eq(out, "secret whsec_[redacted]");
    redact("detail", "header Bearer eyJhbGciOi.x.y", out, sizeof(out));
    cr_assert_str_eq(out, "header Bearer [redacted]");
}

Test(log, masks_card_numbers_but_not_other_digits)
{
    char out[256];
    redact("detail", "card 4242424242424242 declined", out, sizeof(out));
    cr_assert_str_eq(out, "card [card ...4242] declined");
    /* 16 digits failing Luhn, and a unix timestamp, are left alone. */
    redact("detail", "ref 4242424242424241 at 1763900000", out, sizeof(out));
    cr_assert_str_eq(out, "ref 4242424242424241 at 1763900000");
    redact("detail", "amex 378282246310005", out, sizeof(out));
    cr_assert_str_eq(out, "amex [card ...0005]");
}

Test(log, never_overflows_the_output)
{
    char out[8];
    redact("detail", "a very long value that does not fit", out, sizeof(out));
    cr_assert_eq(strlen(out), 7);
}

Test(log, writes_one_json_object_per_line)
{
    char path[] = "/tmp/ps_log_testXXXXXX";
    int fd = mkstemp(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    ps_log_init("unit", PS_LOG_INFO);
    ps_log_info("hello \"world\"\n", "message_id", "m-1", "secret", "whsec_abc", "nothing", NULL,
                NULL);
    ps_log_debug("filtered out", NULL);
    dup2(saved, STDERR_FILENO);
    close(saved);

    char buf[2048] = "";
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    unlink(path);
    cr_assert_gt(n, 0);
    cr_assert_eq(strchr(buf, '\n'), buf + n - 1, "exactly one line: %s", buf);
    json_error_t err;
    json_t *line = json_loads(buf, 0, &err);
    cr_assert_not_null(line, "not JSON: %s (%s)", buf, err.text);
    cr_assert_str_eq(json_string_value(json_object_get(line, "msg")), "hello \"world\"\n");
    cr_assert_str_eq(json_string_value(json_object_get(line, "level")), "info");
    cr_assert_str_eq(json_string_value(json_object_get(line, "service")), "unit");
    cr_assert_str_eq(json_string_value(json_object_get(line, "message_id")), "m-1");
    cr_assert_str_eq(json_string_value(json_object_get(line, "secret")), "[redacted]");
    cr_assert(json_is_null(json_object_get(line, "nothing")));
    cr_assert_null(strstr(buf, "whsec_abc"));
    json_decref(line);
}
