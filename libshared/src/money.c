#include "paystream/money.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char code[4];
    int exponent;
} currency_t;

/* Active ISO 4217 codes with their minor-unit exponents, sorted for
 * bsearch. Funds codes (BOV, CHE, ...) are included because they appear in
 * ISO's list; precious metals (XAU, ...) have no minor unit and are not. */
static const currency_t currencies[] = {
    {"AED", 2}, {"AFN", 2}, {"ALL", 2}, {"AMD", 2}, {"ANG", 2}, {"AOA", 2},
    {"ARS", 2}, {"AUD", 2}, {"AWG", 2}, {"AZN", 2}, {"BAM", 2}, {"BBD", 2},
    {"BDT", 2}, {"BGN", 2}, {"BHD", 3}, {"BIF", 0}, {"BMD", 2}, {"BND", 2},
    {"BOB", 2}, {"BOV", 2}, {"BRL", 2}, {"BSD", 2}, {"BTN", 2}, {"BWP", 2},
    {"BYN", 2}, {"BZD", 2}, {"CAD", 2}, {"CDF", 2}, {"CHE", 2}, {"CHF", 2},
    {"CHW", 2}, {"CLF", 4}, {"CLP", 0}, {"CNY", 2}, {"COP", 2}, {"COU", 2},
    {"CRC", 2}, {"CUC", 2}, {"CUP", 2}, {"CVE", 2}, {"CZK", 2}, {"DJF", 0},
    {"DKK", 2}, {"DOP", 2}, {"DZD", 2}, {"EGP", 2}, {"ERN", 2}, {"ETB", 2},
    {"EUR", 2}, {"FJD", 2}, {"FKP", 2}, {"GBP", 2}, {"GEL", 2}, {"GHS", 2},
    {"GIP", 2}, {"GMD", 2}, {"GNF", 0}, {"GTQ", 2}, {"GYD", 2}, {"HKD", 2},
    {"HNL", 2}, {"HTG", 2}, {"HUF", 2}, {"IDR", 2}, {"ILS", 2}, {"INR", 2},
    {"IQD", 3}, {"IRR", 2}, {"ISK", 0}, {"JMD", 2}, {"JOD", 3}, {"JPY", 0},
    {"KES", 2}, {"KGS", 2}, {"KHR", 2}, {"KMF", 0}, {"KPW", 2}, {"KRW", 0},
    {"KWD", 3}, {"KYD", 2}, {"KZT", 2}, {"LAK", 2}, {"LBP", 2}, {"LKR", 2},
    {"LRD", 2}, {"LSL", 2}, {"LYD", 3}, {"MAD", 2}, {"MDL", 2}, {"MGA", 2},
    {"MKD", 2}, {"MMK", 2}, {"MNT", 2}, {"MOP", 2}, {"MRU", 2}, {"MUR", 2},
    {"MVR", 2}, {"MWK", 2}, {"MXN", 2}, {"MXV", 2}, {"MYR", 2}, {"MZN", 2},
    {"NAD", 2}, {"NGN", 2}, {"NIO", 2}, {"NOK", 2}, {"NPR", 2}, {"NZD", 2},
    {"OMR", 3}, {"PAB", 2}, {"PEN", 2}, {"PGK", 2}, {"PHP", 2}, {"PKR", 2},
    {"PLN", 2}, {"PYG", 0}, {"QAR", 2}, {"RON", 2}, {"RSD", 2}, {"RUB", 2},
    {"RWF", 0}, {"SAR", 2}, {"SBD", 2}, {"SCR", 2}, {"SDG", 2}, {"SEK", 2},
    {"SGD", 2}, {"SHP", 2}, {"SLE", 2}, {"SLL", 2}, {"SOS", 2}, {"SRD", 2},
    {"SSP", 2}, {"STN", 2}, {"SVC", 2}, {"SYP", 2}, {"SZL", 2}, {"THB", 2},
    {"TJS", 2}, {"TMT", 2}, {"TND", 3}, {"TOP", 2}, {"TRY", 2}, {"TTD", 2},
    {"TWD", 2}, {"TZS", 2}, {"UAH", 2}, {"UGX", 0}, {"USD", 2}, {"USN", 2},
    {"UYI", 0}, {"UYU", 2}, {"UYW", 4}, {"UZS", 2}, {"VED", 2}, {"VES", 2},
    {"VND", 0}, {"VUV", 0}, {"WST", 2}, {"XAF", 0}, {"XCD", 2}, {"XCG", 2},
    {"XOF", 0}, {"XPF", 0}, {"YER", 2}, {"ZAR", 2}, {"ZMW", 2}, {"ZWG", 2},
    {"ZWL", 2},
};

static int compare_code(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const currency_t *)elem)->code);
}

static const currency_t *currency_find(const char *code)
{
    char upper[4];
    if (code == NULL || strlen(code) != PS_CURRENCY_LEN)
        return NULL;
    for (int i = 0; i < PS_CURRENCY_LEN; i++)
        upper[i] = (char)toupper((unsigned char)code[i]);
    upper[3] = '\0';
    return bsearch(upper, currencies, sizeof(currencies) / sizeof(currencies[0]),
                   sizeof(currencies[0]), compare_code);
}

int ps_currency_exponent(const char *code)
{
    const currency_t *c = currency_find(code);
    return c ? c->exponent : -1;
}

int ps_currency_normalize(const char *code, char out[PS_CURRENCY_LEN + 1])
{
    const currency_t *c = currency_find(code);
    if (c == NULL)
        return -1;
    memcpy(out, c->code, PS_CURRENCY_LEN + 1);
    return 0;
}

/* Appends digit d to *acc, failing on int64 overflow. */
static int push_digit(int64_t *acc, int d)
{
    if (*acc > (INT64_MAX - d) / 10)
        return -1;
    *acc = *acc * 10 + d;
    return 0;
}

int ps_money_parse(const char *text, const char *currency, int64_t *minor,
                   char *err, size_t errlen)
{
    int exponent = ps_currency_exponent(currency);
    if (exponent < 0) {
        snprintf(err, errlen, "unknown currency \"%s\"", currency ? currency : "");
        return -1;
    }
    if (text == NULL || *text == '\0') {
        snprintf(err, errlen, "amount is empty");
        return -1;
    }
    int64_t acc = 0;
    int int_digits = 0, frac_digits = 0;
    const char *p = text;
    for (; isdigit((unsigned char)*p); p++, int_digits++) {
        if (push_digit(&acc, *p - '0') < 0)
            goto overflow;
    }
    if (int_digits == 0) {
        snprintf(err, errlen, "amount must start with a digit");
        return -1;
    }
    if (*p == '.') {
        for (p++; isdigit((unsigned char)*p); p++, frac_digits++) {
            if (frac_digits >= exponent) {
                snprintf(err, errlen, "%s takes at most %d decimal%s", currency,
                         exponent, exponent == 1 ? "" : "s");
                return -1;
            }
            if (push_digit(&acc, *p - '0') < 0)
                goto overflow;
        }
        if (frac_digits == 0) {
            snprintf(err, errlen, "amount has a decimal point but no decimals");
            return -1;
        }
    }
    if (*p != '\0') {
        snprintf(err, errlen, "amount must be a plain decimal such as 29.99");
        return -1;
    }
    for (; frac_digits < exponent; frac_digits++) {
        if (push_digit(&acc, 0) < 0)
            goto overflow;
    }
    *minor = acc;
    return 0;
overflow:
    snprintf(err, errlen, "amount is too large");
    return -1;
}

int ps_money_format(int64_t minor, const char *currency, char *buf, size_t len)
{
    int exponent = ps_currency_exponent(currency);
    if (exponent < 0)
        return -1;
    /* Work on the magnitude as unsigned so that INT64_MIN does not overflow. */
    uint64_t mag = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
    uint64_t scale = 1;
    for (int i = 0; i < exponent; i++)
        scale *= 10;
    int n;
    if (exponent == 0)
        n = snprintf(buf, len, "%s%llu", minor < 0 ? "-" : "", (unsigned long long)mag);
    else
        n = snprintf(buf, len, "%s%llu.%0*llu", minor < 0 ? "-" : "",
                     (unsigned long long)(mag / scale), exponent,
                     (unsigned long long)(mag % scale));
    return (n < 0 || (size_t)n >= len) ? -1 : n;
}

/* The JSON number num as a plain decimal ("2999e-2" -> "29.99", "1.50" ->
 * "1.5"): its digits with the point moved by the exponent, no leading zeros
 * before the point nor trailing ones after it. Returns 0, or -1 when it is
 * negative, not a JSON number, or has more than max_digits digits before
 * the point. */
static int json_number_plain(const char *num, size_t len, char *out, size_t outlen,
                             int max_digits)
{
    char digits[64];
    size_t nd = 0, i = 0;
    long point = -1, exp = 0;
    if (len == 0 || num[0] == '-')
        return -1;
    for (; i < len && (isdigit((unsigned char)num[i]) || num[i] == '.'); i++) {
        if (num[i] == '.') {
            point = (long)nd;
            continue;
        }
        if (nd == sizeof(digits))
            return -1;
        digits[nd++] = num[i];
    }
    if (nd == 0)
        return -1;
    if (point < 0)
        point = (long)nd;
    if (i < len && (num[i] == 'e' || num[i] == 'E')) {
        int neg = 0;
        i++;
        if (i < len && (num[i] == '+' || num[i] == '-'))
            neg = num[i++] == '-';
        if (i == len)
            return -1;
        for (; i < len && isdigit((unsigned char)num[i]); i++) {
            if (exp > 1000)
                return -1; /* far beyond any amount either way */
            exp = exp * 10 + (num[i] - '0');
        }
        exp = neg ? -exp : exp;
    }
    if (i != len)
        return -1;
    point += exp;
    /* Digits [0, point) before the point, [point, nd) after it. */
    size_t first = 0, last = nd;
    while (first < nd && (long)first < point && digits[first] == '0')
        first++;
    while (last > 0 && (long)last > point && digits[last - 1] == '0')
        last--;
    if (point - (long)first > max_digits)
        return -1;
    size_t o = 0;
    if ((long)first >= point)
        out[o++] = '0';
    for (long d = (long)first; d < point; d++)
        out[o++] = d < (long)nd ? digits[d] : '0';
    if ((long)last > point) {
        out[o++] = '.';
        for (long d = point; d < (long)last; d++) {
            if (o + 2 > outlen)
                return -1;
            out[o++] = d < 0 ? '0' : digits[d];
        }
    }
    out[o] = '\0';
    return 0;
}

int ps_money_parse_json_number(const char *num, size_t len, const char *currency, int64_t *minor,
                               char *err, size_t errlen)
{
    char plain[96];
    /* 2^53 minor units have 16 digits. */
    if (json_number_plain(num, len, plain, sizeof(plain), 17) < 0) {
        snprintf(err, errlen, "%s", len > 0 && num[0] == '-' ? "amount must not be negative"
                                                             : "amount is too large or too precise");
        return -1;
    }
    if (ps_money_parse(plain, currency, minor, err, errlen) < 0)
        return -1;
    if (*minor > (INT64_C(1) << 53)) {
        snprintf(err, errlen, "amount is beyond 2^53 minor units");
        return -1;
    }
    return 0;
}
