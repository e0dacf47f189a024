/* Money: integer minor units plus an ISO 4217 currency, parsed exactly from
 * decimal text. No floating point ever touches an amount. */
#ifndef PAYSTREAM_MONEY_H
#define PAYSTREAM_MONEY_H

#include <stddef.h>
#include <stdint.h>

#define PS_CURRENCY_LEN 3

/* The ISO 4217 minor-unit exponent of an active currency code (case-
 * insensitive: "usd" and "USD" are the same), or -1 for an unknown code.
 * JPY has 0, USD 2, KWD 3, CLF 4. */
int ps_currency_exponent(const char *code);

/* Uppercases a known currency code into out (4 bytes); returns 0, or -1 for
 * an unknown code. */
int ps_currency_normalize(const char *code, char out[PS_CURRENCY_LEN + 1]);

/* Parses a non-negative decimal amount such as "29.99" in currency into
 * minor units (2999). Accepts digits with at most the currency's exponent
 * of fractional digits; rejects signs, exponents ("1e3"), spaces, a bare
 * or trailing point, too many decimals and values beyond INT64_MAX.
 * Returns 0, or -1 with the reason in err. */
int ps_money_parse(const char *text, const char *currency, int64_t *minor,
                   char *err, size_t errlen);

/* Parses a JSON number's text (RFC 8259: "29.99", "2999e-2", "-1") as an
 * amount in currency, exactly, by its decimal digits and never through a
 * double: it must be non-negative and a whole count of the currency's minor
 * units (29.99 USD and 29.990 are; 29.999 and 1e-7 are not), and at most
 * 2^53 minor units. Returns 0, or -1 with the reason in err. */
int ps_money_parse_json_number(const char *num, size_t len, const char *currency, int64_t *minor,
                               char *err, size_t errlen);

/* Formats minor units of currency as a plain decimal ("29.99", "-0.05",
 * "500" for JPY). Returns the length written, or -1 for an unknown currency
 * or a too small buffer. */
int ps_money_format(int64_t minor, const char *currency, char *buf, size_t len);

#endif
