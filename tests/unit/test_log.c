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

Test(log, masks_card_numbers_written_in_groups)
{
    static const char *const cases[][2] = {
        {"card 4242 4242 4242 4242 declined", "card [card ...4242] declined"},
        {"card 4242-4242-4242-4242.", "card [card ...4242]."},
        {"amex 3782 822463 10005", "amex [card ...0005]"},
        {"order 1234 4242 4242 4242 4242", "order 1234 [card ...4242]"},
        /* Dates, phone numbers and digits in words are no cards. */
        {"on 2026-12-02 call 555-123-4567", "on 2026-12-02 call 555-123-4567"},
        {"id ch_4242424242424242 x", "id ch_4242424242424242 x"},
        {"4242  4242  4242  4242", "4242  4242  4242  4242"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        redact("detail", cases[i][0], out, sizeof(out));
        cr_expect_str_eq(out, cases[i][1], "case %zu", i);
    }
}

Test(log, masks_api_keys_subscriber_secrets_bearer_tokens_and_jwts)
{
    static const char *const cases[][2] = {
        {"key psk_live_0123456789abcdef_0123456789012345678901234567890123456789 refused",
         "key psk_[redacted] refused"},
        {"dev psk_dev_0123456789abcdef_x", "dev psk_[redacted]"},
        {"subscriber secret pswh_9f8e7d6c5b4a", "subscriber secret pswh_[redacted]"},
        {"authorization: bearer abc.def", "authorization: bearer [redacted]"},
        {"BEARER xyz", "BEARER [redacted]"},
        {"token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_x end",
         "token=[jwt redacted] end"},
        {"unsigned eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. end", "unsigned [jwt redacted] end"},
        {"not a jwt: keyJabc.def.ghi or eyJonly", "not a jwt: keyJabc.def.ghi or eyJonly"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        redact("detail", cases[i][0], out, sizeof(out));
        cr_expect_str_eq(out, cases[i][1], "case %zu", i);
    }
}

Test(log, never_overflows_the_output)
{
    char out[8];
    redact("detail", "a very long value that does not fit", out, sizeof(out));
    cr_assert_eq(strlen(out), 7);
    redact("detail", "x sk_live_abcdef", out, sizeof(out));
    cr_assert_eq(strlen(out), 7);
    redact("detail", "4242 4242 4242 4242", out, sizeof(out));
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
