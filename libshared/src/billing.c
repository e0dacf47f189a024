#include "paystream/billing.h"

#include <stdio.h>
#include <string.h>

static int meter_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > PS_METER_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Copies s[0..len) without surrounding spaces into out (outlen bytes). */
static void trimmed(const char *s, size_t len, char *out, size_t outlen)
{
    while (len > 0 && *s == ' ') {
        s++;
        len--;
    }
    while (len > 0 && s[len - 1] == ' ')
        len--;
    if (len >= outlen)
        len = outlen - 1;
    memcpy(out, s, len);
    out[len] = '\0';
}

static int parse_item(const char *item, size_t len, ps_billing_t *out, char *err, size_t errlen)
{
    char text[256];
    if (len >= sizeof(text)) {
        snprintf(err, errlen, "a meter price item is longer than %zu bytes", sizeof(text) - 1);
        return -1;
    }
    const char *eq = memchr(item, '=', len);
    if (eq == NULL) {
        trimmed(item, len, text, sizeof(text));
        snprintf(err, errlen, "\"%.60s\" is not name=price", text);
        return -1;
    }
    ps_meter_price_t *m = &out->meters[out->n];
    trimmed(item, (size_t)(eq - item), text, sizeof(text));
    if (!meter_name_valid(text, strlen(text))) {
        snprintf(err, errlen, "meter name \"%.60s\" must be 1 to %d of a-z, 0-9, _ and -", text,
                 PS_METER_NAME_MAX);
        return -1;
    }
    memcpy(m->name, text, strlen(text) + 1);
    if (ps_billing_meter(out, m->name) != NULL) {
        snprintf(err, errlen, "meter %s is priced twice", m->name);
        return -1;
    }
    trimmed(eq + 1, len - (size_t)(eq + 1 - item), text, sizeof(text));
    char why[128];
    if (ps_money_parse(text, out->currency, &m->unit_minor, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "price of meter %s: %s", m->name, why);
        return -1;
    }
    out->n++;
    return 0;
}

int ps_billing_parse(const char *currency, const char *prices, ps_billing_t *out, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (ps_currency_normalize(currency, out->currency) < 0) {
        snprintf(err, errlen, "\"%.8s\" is not an ISO 4217 currency code", currency);
        return -1;
    }
    const char *p = prices;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (out->n == PS_METERS_MAX) {
            snprintf(err, errlen, "more than %d meters", PS_METERS_MAX);
            return -1;
        }
        if (parse_item(p, len, out, err, errlen) < 0)
            return -1;
        p += len;
        if (*p == ',' && *++p == '\0') {
            snprintf(err, errlen, "a trailing comma");
            return -1;
        }
    }
    return 0;
}

const ps_meter_price_t *ps_billing_meter(const ps_billing_t *b, const char *meter)
{
    for (size_t i = 0; i < b->n; i++) {
        if (strcmp(b->meters[i].name, meter) == 0)
            return &b->meters[i];
    }
    return NULL;
}

void ps_billing_meter_names(const ps_billing_t *b, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < b->n && used < outlen; i++) {
        int n = snprintf(out + used, outlen - used, "%s%s", i ? ", " : "", b->meters[i].name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (b->n == 0)
        snprintf(out, outlen, "(none)");
}
