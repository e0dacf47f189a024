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

/* Stripe key prefixes whose whole token is a secret. */
static size_t secret_prefix_len(const char *p)
{
    static const char *const prefixes[] = {"sk_live_", "sk_test_", "rk_live_", "rk_test_",
                                           "whsec_", "Bearer ", NULL};
    for (int i = 0; prefixes[i]; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(p, prefixes[i], n) == 0)
            return n;
    }
    return 0;
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

void ps_log_redact(const char *key, const char *value, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    if (key && key_is_secret(key)) {
        snprintf(out, outlen, "[redacted]");
        return;
    }
    size_t o = 0;
    const char *p = value;
    while (*p && o + 1 < outlen) {
        size_t plen = secret_prefix_len(p);
        if (plen) {
            /* Keep the prefix so a reader knows what kind of key leaked. */
            int n = snprintf(out + o, outlen - o, "%.*s[redacted]", (int)plen, p);
            o += (size_t)n < outlen - o ? (size_t)n : outlen - o - 1;
            p += plen;
            while (*p && !isspace((unsigned char)*p) && *p != '"' && *p != ',')
                p++;
            continue;
        }
        if (isdigit((unsigned char)*p) && (p == value || !isalnum((unsigned char)p[-1]))) {
            size_t n = 0;
            while (isdigit((unsigned char)p[n]))
                n++;
            if (n >= 13 && n <= 19 && !isalnum((unsigned char)p[n]) && luhn_ok(p, n)) {
                /* Keep the last four digits, as receipts do. */
                int w = snprintf(out + o, outlen - o, "[card ...%.4s]", p + n - 4);
                o += (size_t)w < outlen - o ? (size_t)w : outlen - o - 1;
                p += n;
                continue;
            }
            size_t copy = n < outlen - 1 - o ? n : outlen - 1 - o;
            memcpy(out + o, p, copy);
            o += copy;
            p += n;
            continue;
        }
        out[o++] = *p++;
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
