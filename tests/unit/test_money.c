#include <criterion/criterion.h>
#include <stdint.h>

#include "paystream/money.h"

static int64_t parse_ok(const char *text, const char *currency)
{
    int64_t minor = -1;
    char err[128] = "";
    cr_assert_eq(ps_money_parse(text, currency, &minor, err, sizeof(err)), 0,
                 "\"%s\" %s should parse, got: %s", text, currency, err);
    return minor;
}

static void parse_fails(const char *text, const char *currency, const char *why)
{
    int64_t minor = 12345;
    char err[128] = "";
    cr_assert_eq(ps_money_parse(text, currency, &minor, err, sizeof(err)), -1,
                 "\"%s\" %s should be refused", text, currency);
    cr_assert_eq(minor, 12345, "a refused amount must not be written");
    cr_assert(strstr(err, why) != NULL, "error \"%s\" should mention \"%s\"", err, why);
}

Test(money, parses_two_decimals_exactly)
{
    cr_assert_eq(parse_ok("29.99", "USD"), 2999);
    cr_assert_eq(parse_ok("0.1", "usd"), 10);
    cr_assert_eq(parse_ok("0.01", "EUR"), 1);
    cr_assert_eq(parse_ok("100", "GBP"), 10000);
    cr_assert_eq(parse_ok("0", "USD"), 0);
    /* The classic float trap: 0.1 + 0.2 style values stay exact. */
    cr_assert_eq(parse_ok("1.15", "USD"), 115);
    cr_assert_eq(parse_ok("4.35", "USD"), 435);
}

Test(money, jpy_has_no_decimals)
{
    cr_assert_eq(parse_ok("500", "JPY"), 500);
    parse_fails("500.5", "JPY", "at most 0 decimals");
    parse_fails("500.0", "JPY", "at most 0 decimals");
}

Test(money, three_and_four_decimal_currencies)
{
    cr_assert_eq(parse_ok("1.234", "KWD"), 1234);
    cr_assert_eq(parse_ok("1.5", "BHD"), 1500);
    cr_assert_eq(parse_ok("1.2345", "CLF"), 12345);
}

Test(money, rejects_three_decimals_for_usd)
{
    parse_fails("29.999", "USD", "at most 2 decimals");
}

Test(money, rejects_exponent_notation)
{
    parse_fails("1e3", "USD", "plain decimal");
    parse_fails("1E3", "USD", "plain decimal");
}

Test(money, rejects_signs_and_spaces)
{
    parse_fails("-5.00", "USD", "start with a digit");
    parse_fails("+5.00", "USD", "start with a digit");
    parse_fails(" 5.00", "USD", "start with a digit");
    parse_fails("5.00 ", "USD", "plain decimal");
    parse_fails("5,00", "USD", "plain decimal");
}

Test(money, rejects_bare_points_and_empty)
{
    parse_fails("", "USD", "empty");
    parse_fails(".5", "USD", "start with a digit");
    parse_fails("5.", "USD", "no decimals");
    parse_fails("1.2.3", "USD", "plain decimal");
    parse_fails("NaN", "USD", "start with a digit");
}

Test(money, rejects_overflow)
{
    cr_assert_eq(parse_ok("92233720368547758.07", "USD"), INT64_MAX);
    parse_fails("92233720368547758.08", "USD", "too large");
    parse_fails("99999999999999999999", "JPY", "too large");
    cr_assert_eq(parse_ok("92233720368547758", "EUR"), 9223372036854775800);
    parse_fails("92233720368547759", "EUR", "too large"); /* fits as integer, not times 100 */
}

Test(money, rejects_unknown_currency)
{
    parse_fails("1.00", "XXX", "unknown currency");
    parse_fails("1.00", "US", "unknown currency");
    parse_fails("1.00", "USDD", "unknown currency");
    cr_assert_eq(ps_currency_exponent(NULL), -1);
}

Test(money, normalizes_currency_case)
{
    char out[4];
    cr_assert_eq(ps_currency_normalize("usd", out), 0);
    cr_assert_str_eq(out, "USD");
    cr_assert_eq(ps_currency_normalize("zzz", out), -1);
}

Test(money, formats_back_to_decimal)
{
    char buf[32];
    cr_assert_eq(ps_money_format(2999, "USD", buf, sizeof(buf)), 5);
    cr_assert_str_eq(buf, "29.99");
    ps_money_format(5, "USD", buf, sizeof(buf));
    cr_assert_str_eq(buf, "0.05");
    ps_money_format(-5, "USD", buf, sizeof(buf));
    cr_assert_str_eq(buf, "-0.05");
    ps_money_format(500, "JPY", buf, sizeof(buf));
    cr_assert_str_eq(buf, "500");
    ps_money_format(INT64_MIN, "USD", buf, sizeof(buf));
    cr_assert_str_eq(buf, "-92233720368547758.08");
    cr_assert_eq(ps_money_format(1, "USD", buf, 3), -1, "too small a buffer is an error");
}

Test(money, parse_and_format_round_trip)
{
    static const char *const texts[] = {"0.00", "0.01", "12.34", "999999.99", "1000000.00"};
    char buf[32];
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        ps_money_format(parse_ok(texts[i], "USD"), "USD", buf, sizeof(buf));
        cr_assert_str_eq(buf, texts[i]);
    }
}

/* A JSON number's text as an amount: exact, by its digits. */
static int64_t number_ok(const char *num, const char *currency)
{
    int64_t minor = -1;
    char err[160] = "";
    cr_assert_eq(ps_money_parse_json_number(num, strlen(num), currency, &minor, err, sizeof(err)), 0,
                 "%s %s: %s", num, currency, err);
    return minor;
}

Test(money, a_json_number_is_taken_by_its_digits)
{
    cr_assert_eq(number_ok("29.99", "USD"), 2999);
    cr_assert_eq(number_ok("59.98", "usd"), 5998);
    cr_assert_eq(number_ok("350.00", "USD"), 35000);
    cr_assert_eq(number_ok("350", "USD"), 35000);
    cr_assert_eq(number_ok("0", "USD"), 0);
    cr_assert_eq(number_ok("0.10", "USD"), 10);
    cr_assert_eq(number_ok("29.990", "USD"), 2999, "trailing zeros are still whole cents");
    cr_assert_eq(number_ok("2999e-2", "USD"), 2999);
    cr_assert_eq(number_ok("2.5E1", "USD"), 2500);
    cr_assert_eq(number_ok("1e2", "JPY"), 100);
    cr_assert_eq(number_ok("1.234", "KWD"), 1234);
    /* A double would read 0.1 + 0.2 style values off by a little; digits do not. */
    cr_assert_eq(number_ok("1234567.89", "USD"), 123456789);
    cr_assert_eq(number_ok("90071992547409.92", "USD"), INT64_C(1) << 53);
}

Test(money, a_json_number_that_is_not_whole_minor_units_is_refused)
{
    static const struct { const char *num, *currency, *why; } bad[] = {
        {"1.001", "USD", "decimals"},   {"1e-7", "USD", "decimals"},
        {"0.5", "JPY", "decimals"},     {"29.995", "USD", "decimals"},
        {"-1", "USD", "negative"},      {"-0.01", "USD", "negative"},
        {"1e400", "USD", "too large"},  {"90071992547409.93", "USD", "2^53"},
        {"1e20", "USD", "too large"},   {"1.0000000000000001", "USD", "decimals"},
        {"12", "XXQ", "unknown"},       {"1e-1000000", "USD", "too"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t minor = -1;
        char err[160] = "";
        cr_assert_eq(ps_money_parse_json_number(bad[i].num, strlen(bad[i].num), bad[i].currency,
                                                &minor, err, sizeof(err)), -1,
                     "%s %s accepted as %lld", bad[i].num, bad[i].currency, (long long)minor);
        cr_assert(strstr(err, bad[i].why), "%s: %s", bad[i].num, err);
    }
}
