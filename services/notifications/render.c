/* Email templates: loading, the values of an event, and rendering. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifications.h"
#include "paystream/money.h"
#include "paystream/util.h"

#define TEMPLATE_BYTES_MAX (256 * 1024)

static const char *const names[] = {"order_confirmation", "payment_failed", "refund_issued",
                                    "oxxo_voucher", "out_of_stock", "account_deauthorized",
                                    "account_no_external_accounts"};
#define NNAMES (sizeof(names) / sizeof(names[0]))

struct templates {
    char *subject[NNAMES], *text[NNAMES], *html[NNAMES];
};

/* A growing string. */
typedef struct {
    char *s;
    size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = ps_xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_str(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

static char *buf_take(buf_t *b)
{
    if (b->s == NULL)
        buf_add(b, "", 0);
    return b->s;
}

static char *read_file(const char *dir, const char *name, const char *ext, char *err,
                       size_t errlen)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read the template %s", path);
        return NULL;
    }
    buf_t b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len <= TEMPLATE_BYTES_MAX)
        buf_add(&b, chunk, n);
    fclose(f);
    if (b.len > TEMPLATE_BYTES_MAX) {
        snprintf(err, errlen, "the template %s is larger than %d bytes", path, TEMPLATE_BYTES_MAX);
        free(b.s);
        return NULL;
    }
    return buf_take(&b);
}

/* Splits a .txt template into its subject line and its body. */
static int split_subject(char *text, char **subject, char **body)
{
    static const char prefix[] = "Subject: ";
    char *eol = strchr(text, '\n');
    if (strncmp(text, prefix, sizeof(prefix) - 1) != 0 || eol == NULL || eol[1] != '\n')
        return -1;
    *subject = ps_xstrndup(text + sizeof(prefix) - 1,
                           (size_t)(eol - text) - (sizeof(prefix) - 1));
    *body = ps_xstrdup(eol + 2);
    return 0;
}

templates_t *templates_load(const char *dir, char *err, size_t errlen)
{
    templates_t *t = ps_xcalloc(1, sizeof(*t));
    for (size_t i = 0; i < NNAMES; i++) {
        char *text = read_file(dir, names[i], "txt", err, errlen);
        t->html[i] = text ? read_file(dir, names[i], "html", err, errlen) : NULL;
        if (t->html[i] && split_subject(text, &t->subject[i], &t->text[i]) < 0)
            snprintf(err, errlen, "%s/%s.txt must begin with a \"Subject: \" line and a blank line",
                     dir, names[i]);
        free(text);
        if (t->text[i] == NULL) {
            templates_free(t);
            return NULL;
        }
    }
    return t;
}

void templates_free(templates_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < NNAMES; i++) {
        free(t->subject[i]);
        free(t->text[i]);
        free(t->html[i]);
    }
    free(t);
}

char *html_escape(const char *s)
{
    buf_t b = {0};
    for (; *s; s++) {
        switch (*s) {
        case '&': buf_str(&b, "&amp;"); break;
        case '<': buf_str(&b, "&lt;"); break;
        case '>': buf_str(&b, "&gt;"); break;
        case '"': buf_str(&b, "&quot;"); break;
        case '\'': buf_str(&b, "&#39;"); break;
        default: buf_add(&b, s, 1);
        }
    }
    return buf_take(&b);
}

/* s with every run of CR and LF made one space: a value of an event must
 * not start a new line in the text part, where a line could open a MIME
 * part or header of its own. Free it. */
static char *one_line(const char *s)
{
    buf_t b = {0};
    while (*s) {
        size_t n = strcspn(s, "\r\n");
        buf_add(&b, s, n);
        s += n;
        if (*s) {
            buf_add(&b, " ", 1);
            s += strspn(s, "\r\n");
        }
    }
    return buf_take(&b);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* "12.34 USD", or NULL for an unknown currency. */
static char *money_text(json_int_t minor, const char *currency)
{
    char amount[48], out[64];
    if (currency == NULL || ps_money_format(minor, currency, amount, sizeof(amount)) < 0)
        return NULL;
    snprintf(out, sizeof(out), "%s %s", amount, currency);
    return ps_xstrdup(out);
}

/* Adds value v of key (prefixed) to values; see render_values. */
static void add_value(json_t *values, const char *prefix, const char *key, json_t *v,
                      const char *currency)
{
    char name[128], text[64];
    snprintf(name, sizeof(name), "%s%s", prefix, key);
    if (json_is_string(v)) {
        char *s = one_line(json_string_value(v));
        /* A link goes in an href: only http(s). */
        if (!ends_with(name, "_url") || strncmp(s, "https://", 8) == 0 ||
            strncmp(s, "http://", 7) == 0)
            json_object_set_new(values, name, json_string(s));
        free(s);
    } else if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        snprintf(text, sizeof(text), "%lld", (long long)n);
        json_object_set_new(values, name, json_string(text));
        char *money = ends_with(name, "_minor") ? money_text(n, currency) : NULL;
        if (money) {
            name[strlen(name) - 6] = '\0';
            json_object_set_new(values, name, json_string(money));
            free(money);
        } else if (ends_with(name, "_at")) {
            time_t t = (time_t)n;
            struct tm tm;
            if (gmtime_r(&t, &tm) && strftime(text, sizeof(text), "%Y-%m-%d %H:%M UTC", &tm))
                json_object_set_new(values, name, json_string(text));
        }
    } else if (json_is_boolean(v)) {
        json_object_set_new(values, name, json_string(json_is_true(v) ? "yes" : "no"));
    } else if (json_is_object(v) && *prefix == '\0') {
        char inner[64];
        const char *k;
        json_t *x;
        snprintf(inner, sizeof(inner), "%s_", key);
        json_object_foreach(v, k, x)
            add_value(values, inner, k, x, currency);
    }
}

/* items_text and items_html of an order's lines. */
static void add_items(json_t *values, json_t *items, const char *currency)
{
    buf_t text = {0}, html = {0};
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item) {
        const char *sku = json_string_value(json_object_get(item, "sku"));
        const char *name = json_string_value(json_object_get(item, "name"));
        json_int_t qty = json_integer_value(json_object_get(item, "quantity"));
        json_int_t unit = json_integer_value(json_object_get(item, "unit_price_minor"));
        char *money = money_text(qty * unit, currency);
        char *label = one_line(name ? name : sku ? sku : "");
        char line[512];
        snprintf(line, sizeof(line), "- %lld x %s  %s\n", (long long)qty, label,
                 money ? money : "");
        buf_str(&text, line);
        char *shown = html_escape(label);
        free(label);
        snprintf(line, sizeof(line), "<tr><td>%lld</td><td>", (long long)qty);
        buf_str(&html, line);
        buf_str(&html, shown);
        buf_str(&html, "</td><td>");
        buf_str(&html, money ? money : "");
        buf_str(&html, "</td></tr>\n");
        free(shown);
        free(money);
    }
    json_object_set_new(values, "items_text", json_string(buf_take(&text)));
    json_object_set_new(values, "items_html", json_string(buf_take(&html)));
    free(text.s);
    free(html.s);
}

/* short_text and short_html of an order rejected out of stock. */
static void add_short(json_t *values, json_t *shortage)
{
    buf_t text = {0}, html = {0};
    size_t i;
    json_t *s;
    json_array_foreach(shortage, i, s) {
        char *sku = one_line(json_string_value(json_object_get(s, "sku")) ?
                             json_string_value(json_object_get(s, "sku")) : "");
        char line[256];
        snprintf(line, sizeof(line), "%s: %lld asked, %lld left", sku,
                 (long long)json_integer_value(json_object_get(s, "requested")),
                 (long long)json_integer_value(json_object_get(s, "available")));
        free(sku);
        buf_str(&text, "- ");
        buf_str(&text, line);
        buf_str(&text, "\n");
        char *shown = html_escape(line);
        buf_str(&html, "<li>");
        buf_str(&html, shown);
        buf_str(&html, "</li>\n");
        free(shown);
    }
    json_object_set_new(values, "short_text", json_string(buf_take(&text)));
    json_object_set_new(values, "short_html", json_string(buf_take(&html)));
    free(text.s);
    free(html.s);
}

json_t *render_values(json_t *event)
{
    json_t *values = json_object(), *data = json_object_get(event, "data");
    const char *currency = json_string_value(json_object_get(data, "currency"));
    char upper[8] = "";
    if (currency && ps_currency_normalize(currency, upper) == 0)
        currency = upper;
    json_object_set_new(values, "customer_name", json_string("customer"));
    json_object_set(values, "event_type", json_object_get(event, "type"));
    const char *key;
    json_t *v;
    json_object_foreach(data, key, v)
        add_value(values, "", key, v, currency);
    add_items(values, json_object_get(data, "items"), currency);
    add_short(values, json_object_get(data, "short"));
    return values;
}

/* template with every {{key}} replaced by its value (see templates_t). */
static char *fill(const char *template, json_t *values, int html)
{
    buf_t b = {0};
    const char *p = template, *open;
    while ((open = strstr(p, "{{")) != NULL) {
        const char *close = strstr(open + 2, "}}");
        if (close == NULL)
            break;
        buf_add(&b, p, (size_t)(open - p));
        char key[128] = "";
        size_t klen = (size_t)(close - open - 2);
        if (klen < sizeof(key)) {
            memcpy(key, open + 2, klen);
            key[klen] = '\0';
        }
        const char *value = json_string_value(json_object_get(values, key));
        if (value && html && !ends_with(key, "_html")) {
            char *escaped = html_escape(value);
            buf_str(&b, escaped);
            free(escaped);
        } else if (value) {
            buf_str(&b, value);
        }
        p = close + 2;
    }
    buf_str(&b, p);
    return buf_take(&b);
}

int render_email(const templates_t *t, const char *name, json_t *values, email_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < NNAMES; i++) {
        if (strcmp(names[i], name) != 0)
            continue;
        /* One header line, whatever the template holds. */
        char *subject = fill(t->subject[i], values, 0);
        out->subject = one_line(subject);
        free(subject);
        out->text = fill(t->text[i], values, 0);
        out->html = fill(t->html[i], values, 1);
        return 0;
    }
    return -1;
}

void email_free(email_t *e)
{
    free(e->subject);
    free(e->text);
    free(e->html);
    memset(e, 0, sizeof(*e));
}
