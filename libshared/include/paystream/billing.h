/* Usage billing settings shared by the intake (which checks usage records)
 * and the payments worker (which prices them): the billing currency, the
 * unit price of each meter and the balance at which an invoice is made. */
#ifndef PAYSTREAM_BILLING_H
#define PAYSTREAM_BILLING_H

#include <stddef.h>
#include <stdint.h>

#include "paystream/money.h"

#define PS_METER_NAME_MAX 100 /* Stripe's longest meter event name */
#define PS_METERS_MAX 64

/* The configuration variables of billing, for a service's table. */
#define PS_CFG_BILLING                                                                 \
    {"PAYSTREAM_BILLING_CURRENCY", PS_CFG_STRING, "USD", 0, 0,                        \
     "ISO 4217 currency of customer balances, meter prices and the invoice threshold"}, \
    {"PAYSTREAM_METER_PRICES", PS_CFG_STRING, "", 0, 0,                               \
     "usage meters and their unit prices in the billing currency: name=0.35[,name=...]"}

typedef struct {
    char name[PS_METER_NAME_MAX + 1];
    int64_t unit_minor; /* price of one unit, in minor units */
} ps_meter_price_t;

typedef struct {
    char currency[PS_CURRENCY_LEN + 1];
    ps_meter_price_t meters[PS_METERS_MAX];
    size_t n;
} ps_billing_t;

/* Reads "name=decimal[,name=decimal...]" (spaces around items allowed) into
 * out, prices in currency. A meter name is 1 to 100 of [a-z0-9_-]; a price
 * is a non-negative decimal with no more decimals than the currency has
 * (prices are exact minor units: "0.35" of USD is 35). An empty text is no
 * meters. Returns 0, or -1 with the reason in err. */
int ps_billing_parse(const char *currency, const char *prices, ps_billing_t *out, char *err,
                     size_t errlen);

/* The price of meter, or NULL when it is not configured. */
const ps_meter_price_t *ps_billing_meter(const ps_billing_t *b, const char *meter);

/* Writes the configured meter names, comma-separated, into out (for error
 * messages); "(none)" when there are none. */
void ps_billing_meter_names(const ps_billing_t *b, char *out, size_t outlen);

#endif
