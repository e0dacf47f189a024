#include "paystream/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t ps_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ps_mono_ms(void)
{
    return ps_mono_us() / 1000;
}

int64_t ps_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void ps_random_bytes(void *out, size_t len)
{
    unsigned char *buf = out;
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* getrandom cannot fail on Linux >= 3.17 once the pool is seeded. */
            perror("getrandom");
            return;
        }
        got += (size_t)n;
    }
}

void ps_uuid_v4(char *out)
{
    unsigned char b[16];
    ps_random_bytes(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, PS_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
}

void ps_ordered_hex(char *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    unsigned char r[9];
    ps_random_bytes(r, sizeof(r));
    snprintf(out, 15, "%014" PRIx64, us);
    ps_hex_encode(r, sizeof(r), out + 14);
}

void ps_hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ps_hex_decode(const char *in, size_t inlen, unsigned char *out, size_t outlen)
{
    if (inlen != 2 * outlen)
        return -1;
    for (size_t i = 0; i < outlen; i++) {
        int hi = hex_value(in[2 * i]), lo = hex_value(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

size_t ps_strlcpy(char *dst, const char *src, size_t dstlen)
{
    size_t len = strlen(src);
    if (dstlen > 0) {
        size_t n = len < dstlen - 1 ? len : dstlen - 1;
        memcpy(dst, src, n);
        dst[n] = '\0';
    }
    return len;
}

int ps_has_word(const char *list, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = list; wl > 0 && *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == wl && strncmp(p, word, n) == 0)
            return 1;
        p += n;
    }
    return 0;
}

int ps_is_token(const char *s, size_t maxlen)
{
    size_t n = strlen(s);
    if (n == 0 || n > maxlen)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    }
    return 1;
}

void ps_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

int64_t ps_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms)
{
    int64_t delay = base_ms;
    for (int i = 0; i < attempt && delay < cap_ms; i++)
        delay *= 2;
    if (delay > cap_ms)
        delay = cap_ms;
    unsigned char r;
    ps_random_bytes(&r, 1);
    return delay - (delay / 5) * r / 255;
}

void ps_malloc_tune(ps_malloc_kind_t kind)
{
    int worker = kind == PS_MALLOC_WORKER;
    mallopt(M_ARENA_MAX, worker ? 1 : 2);
    mallopt(M_MMAP_THRESHOLD, worker ? 64 * 1024 : 256 * 1024);
}

static void *or_abort(void *p, size_t size)
{
    if (p == NULL && size > 0) {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"out of memory\",\"bytes\":%zu}\n", size);
        abort();
    }
    return p;
}

void ps_printable(char *dst, const char *src, size_t dstlen)
{
    size_t i = 0;
    for (; src[i] && i + 1 < dstlen; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
    dst[i] = '\0';
}

void *ps_xmalloc(size_t size)
{
    return or_abort(malloc(size), size);
}

void *ps_xcalloc(size_t n, size_t size)
{
    return or_abort(calloc(n, size), n * size);
}

void *ps_xrealloc(void *p, size_t size)
{
    return or_abort(realloc(p, size), size);
}

char *ps_xstrdup(const char *s)
{
    return or_abort(strdup(s), strlen(s) + 1);
}

char *ps_xstrndup(const char *s, size_t n)
{
    return or_abort(strndup(s, n), n + 1);
}

int ps_sockaddr(const char *addr, int port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return AF_INET;
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return AF_INET6;
    }
    return -1;
}

size_t ps_buf_write(char *data, size_t size, size_t n, void *buf)
{
    ps_buf_t *b = buf;
    size_t add = size * n;
    if (add > b->max - b->len)
        return 0;
    b->data = ps_xrealloc(b->data, b->len + add + 1);
    memcpy(b->data + b->len, data, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}
