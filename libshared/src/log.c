#include "paystream/log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192
#define VALUE_MAX_BYTES 2048

static const char *log_service = "paystream";
static ps_log_level_t log_min = PS_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ps_log_init(const char *service, ps_log_level_t min_level)
{
    log_service = service;
    log_min = min_level;
}

int ps_log_level_parse(const char *text, ps_log_level_t *level)
{
    for (int i = 0; i < 4; i++) {
        if (text && strcasecmp(text, level_names[i]) == 0) {
            *level = (ps_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

static int key_is_secret(const char *key)
{
    static const char *const words[] = {"secret", "password", "passwd", "token",
                                        "authorization", "api_key", "apikey",
                                        "card", "signature", "cvc", "pan", NULL};
    char lower[64];
    size_t i = 0;
    for (; key[i] && i < sizeof(lower) - 1; i++)
        lower[i] = (char)tolower((unsigned char)key[i]);
    lower[i] = '\0';
    for (int w = 0; words[w]; w++) {
        if (strstr(lower, words[w]))
            return 1;
    }
    return 0;
}

/* Prefixes whose whole token is a secret: Stripe's secret and restricted
 * keys and webhook secrets, paystream's API keys (psk_) and subscribers'
 * signing secrets (pswh_), and a bearer token in any case. Returns the
 * prefix's length, or 0. */
static size_t secret_prefix_len(const char *p)
{
    static const char *const prefixes[] = {"sk_live_", "sk_test_", "rk_live_", "rk_test_",
                                           "whsec_", "psk_", "pswh_", NULL};
    for (int i = 0; prefixes[i]; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(p, prefixes[i], n) == 0)
            return n;
    }
    return strncasecmp(p, "bearer ", 7) == 0 ? 7 : 0;
}

static int b64url_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

/* A character of an id or a word: digits in one (ch_4242...) are no card. */
static int word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* The length of a JWT-shaped token at p (a base64url JSON header "eyJ...",
 * then two more dot-separated base64url parts), or 0. */
static size_t jwt_len(const char *value, const char *p)
{
    if (strncmp(p, "eyJ", 3) != 0 || (p > value && b64url_char(p[-1])))
        return 0;
    size_t n = 0;
    for (int part = 0; part < 3; part++) {
        size_t start = n;
        while (b64url_char(p[n]))
            n++;
        if (n == start && part < 2)
            return 0;
        if (part < 2) {
            if (p[n] != '.')
                return 0;
            n++;
        }
    }
    return n;
}

static int luhn_ok(const char *digits, size_t n)
{
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int d = digits[n - 1 - i] - '0';
        if (i % 2 == 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return sum % 10 == 0;
}

#define CARD_GROUPS_MAX 19

/* The length of a card number at p: 13 to 19 digits passing the Luhn check,
 * written together or in groups separated by one space or dash ("4242 4242
 * 4242 4242"), not inside a longer word or number. Its digits go to
 * digits (NUL-terminated). Returns 0 when there is none. Of a longer run of
 * groups, the first whole groups that make a card number count. */
static size_t card_len(const char *value, const char *p, char digits[20])
{
    if (!isdigit((unsigned char)*p) || (p > value && word_char(p[-1])))
        return 0;
    size_t ends[CARD_GROUPS_MAX], ngroups = 0, ndigits = 0, n = 0;
    char all[CARD_GROUPS_MAX + 1];
    for (;;) {
        while (isdigit((unsigned char)p[n])) {
            if (ndigits < CARD_GROUPS_MAX)
                all[ndigits] = p[n];
            ndigits++, n++;
        }
        if (ndigits > CARD_GROUPS_MAX || word_char(p[n]))
            break;
        ends[ngroups++] = n;
        if (ngroups == CARD_GROUPS_MAX || (p[n] != ' ' && p[n] != '-') ||
            !isdigit((unsigned char)p[n + 1]))
            break;
        n++;
    }
    /* The longest run of whole groups from the start that is a card number. */
    for (size_t g = ngroups; g-- > 0;) {
        size_t d = 0;
        for (size_t i = 0; i < ends[g]; i++)
            d += isdigit((unsigned char)p[i]) != 0;
        if (d >= 13 && d <= 19 && (g + 1 < ngroups || !word_char(p[ends[g]])) &&
            luhn_ok(all, d)) {
            memcpy(digits, all, d);
            digits[d] = '\0';
            return ends[g];
        }
    }
    return 0;
}

/* Appends text to out at *o (out of outlen bytes, NUL kept room for). */
static void put(char *out, size_t outlen, size_t *o, const char *text, size_t n)
{
    size_t room = outlen - 1 - *o;
    n = n < room ? n : room;
    memcpy(out + *o, text, n);
    *o += n;
}

void ps_log_redact(const char *key, const char *value, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    if (key && key_is_secret(key)) {
        snprintf(out, outlen, "[redacted]");
        return;
    }
    size_t o = 0, n;
    char digits[20], shown[32];
    const char *p = value;
    while (*p && o + 1 < outlen) {
        if ((n = secret_prefix_len(p)) > 0) {
            /* Keep the prefix so a reader knows what kind of secret leaked. */
            put(out, outlen, &o, p, n);
            put(out, outlen, &o, "[redacted]", 10);
            p += n;
            while (*p && !isspace((unsigned char)*p) && *p != '"' && *p != ',')
                p++;
        } else if ((n = jwt_len(value, p)) > 0) {
            put(out, outlen, &o, "[jwt redacted]", 14);
            p += n;
        } else if ((n = card_len(value, p, digits)) > 0) {
            /* Keep the last four digits, as receipts do. */
            int w = snprintf(shown, sizeof(shown), "[card ...%s]", digits + strlen(digits) - 4);
            put(out, outlen, &o, shown, (size_t)w);
            p += n;
        } else if (word_char(*p)) {
            /* A whole word at once: a digit run inside it is no card. */
            const char *w = p;
            while (word_char(*p) && o + 1 < outlen && secret_prefix_len(p) == 0)
                out[o++] = *p++;
            if (p == w)
                out[o++] = *p++;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

/* Appends s as a JSON string (with quotes) to buf at *pos, escaping it. */
static void append_json_string(char *buf, size_t *pos, size_t cap, const char *s)
{
    size_t o = *pos;
    if (o + 2 >= cap)
        return;
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 7 < cap; p++) {
        switch (*p) {
        case '"': buf[o++] = '\\'; buf[o++] = '"'; break;
        case '\\': buf[o++] = '\\'; buf[o++] = '\\'; break;
        case '\n': buf[o++] = '\\'; buf[o++] = 'n'; break;
        case '\r': buf[o++] = '\\'; buf[o++] = 'r'; break;
        case '\t': buf[o++] = '\\'; buf[o++] = 't'; break;
        default:
            if (*p < 0x20)
                o += (size_t)snprintf(buf + o, cap - o, "\\u%04x", *p);
            else
                buf[o++] = (char)*p;
        }
    }
    buf[o++] = '"';
    *pos = o;
}

static void append_raw(char *buf, size_t *pos, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (*pos + n < cap) {
        memcpy(buf + *pos, s, n);
        *pos += n;
    }
}

void ps_log_kv(ps_log_level_t level, const char *msg, const char *const *kv)
{
    if (level < log_min)
        return;
    char line[LINE_MAX_BYTES], ts[40], clean[VALUE_MAX_BYTES];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03ldZ", now.tv_nsec / 1000000);

    size_t pos = 0, cap = sizeof(line) - 2; /* room for "}\n" */
    append_raw(line, &pos, cap, "{\"ts\":");
    append_json_string(line, &pos, cap, ts);
    append_raw(line, &pos, cap, ",\"level\":");
    append_json_string(line, &pos, cap, level_names[level]);
    append_raw(line, &pos, cap, ",\"service\":");
    append_json_string(line, &pos, cap, log_service);
    append_raw(line, &pos, cap, ",\"msg\":");
    ps_log_redact("msg", msg, clean, sizeof(clean));
    append_json_string(line, &pos, cap, clean);

    for (size_t i = 0; kv[i]; i += 2) {
        const char *key = kv[i], *value = kv[i + 1];
        append_raw(line, &pos, cap, ",");
        append_json_string(line, &pos, cap, key);
        append_raw(line, &pos, cap, ":");
        if (value == NULL) {
            append_raw(line, &pos, cap, "null");
            continue;
        }
        ps_log_redact(key, value, clean, sizeof(clean));
        append_json_string(line, &pos, cap, clean);
    }
    line[pos++] = '}';
    line[pos++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, pos);
    (void)ignored;
}

void ps_log(ps_log_level_t level, const char *msg, ...)
{
    if (level < log_min)
        return;
    const char *kv[2 * PS_LOG_MAX_FIELDS + 1];
    size_t n = 0;
    va_list ap;
    va_start(ap, msg);
    for (const char *key = va_arg(ap, const char *); key; key = va_arg(ap, const char *)) {
        const char *value = va_arg(ap, const char *);
        if (n < 2 * PS_LOG_MAX_FIELDS) {
            kv[n++] = key;
            kv[n++] = value;
        }
    }
    va_end(ap);
    kv[n] = NULL;
    ps_log_kv(level, msg, kv);
}
