#include "paystream/stripe_sig.h"

#include <ctype.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paystream/hmac.h"
#include "paystream/util.h"

#define DIGEST_LEN PS_HMAC_SHA256_LEN
#define MAX_V1 8

int ps_sig_keys_parse(const char *csv, ps_sig_keys_t *keys, char *err, size_t errlen)
{
    memset(keys, 0, sizeof(*keys));
    const char *p = csv ? csv : "";
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && end[-1] == ' ')
            end--;
        if (end == start)
            continue;
        if (keys->count == PS_SIG_MAX_SECRETS) {
            snprintf(err, errlen, "more than %d secrets in the list", PS_SIG_MAX_SECRETS);
            ps_sig_keys_free(keys);
            return -1;
        }
        keys->secrets[keys->count++] = ps_xstrndup(start, (size_t)(end - start));
    }
    if (keys->count == 0) {
        snprintf(err, errlen, "no secret given");
        return -1;
    }
    return 0;
}

void ps_sig_keys_free(ps_sig_keys_t *keys)
{
    for (size_t i = 0; i < keys->count; i++) {
        OPENSSL_cleanse(keys->secrets[i], strlen(keys->secrets[i]));
        free(keys->secrets[i]);
    }
    keys->count = 0;
}

/* HMAC-SHA256 over "<t>.<body>" without copying the body. */
static int sig_digest(const char *secret, int64_t t, const char *body, size_t len,
                      unsigned char out[DIGEST_LEN])
{
    char prefix[32];
    int plen = snprintf(prefix, sizeof(prefix), "%" PRId64 ".", t);
    ps_hmac_piece_t pieces[] = {{prefix, (size_t)plen}, {body, len}};
    return ps_hmac_sha256(secret, strlen(secret), pieces, 2, out);
}

typedef struct {
    int64_t t;
    int have_t;
    unsigned char v1[MAX_V1][DIGEST_LEN];
    size_t v1_count;
    size_t v1_seen; /* including ones that are not 64 hex digits */
} parsed_header_t;

static int is_lower_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]) && (s[i] < 'a' || s[i] > 'f'))
            return 0;
    }
    return 1;
}

/* Parses the header's comma-separated k=v items. Unknown schemes (v0) are
 * ignored as Stripe's libraries do; a v1 that is not 64 hex digits can never
 * match and is dropped. */
static void parse_header(const char *header, parsed_header_t *ph)
{
    memset(ph, 0, sizeof(*ph));
    const char *p = header;
    while (*p) {
        const char *item = p;
        while (*p && *p != ',')
            p++;
        size_t n = (size_t)(p - item);
        if (*p == ',')
            p++;
        const char *eq = memchr(item, '=', n);
        if (eq == NULL)
            continue;
        size_t klen = (size_t)(eq - item), vlen = n - klen - 1;
        const char *v = eq + 1;
        if (klen == 1 && item[0] == 't' && vlen > 0 && vlen < 19) {
            int64_t t = 0;
            size_t i = 0;
            for (; i < vlen && isdigit((unsigned char)v[i]); i++)
                t = t * 10 + (v[i] - '0');
            if (i == vlen) {
                ph->t = t;
                ph->have_t = 1;
            }
        } else if (klen == 2 && item[0] == 'v' && item[1] == '1' && ph->v1_count < MAX_V1) {
            ph->v1_seen++;
            /* Stripe compares lowercase hex strings: uppercase never matches. */
            if (is_lower_hex(v, vlen) &&
                ps_hex_decode(v, vlen, ph->v1[ph->v1_count], DIGEST_LEN) == 0)
                ph->v1_count++;
        }
    }
}

ps_sig_result_t ps_sig_verify(const char *header, const char *body, size_t len,
                              const ps_sig_keys_t *keys, int64_t now,
                              int64_t tolerance)
{
    if (header == NULL || *header == '\0')
        return PS_SIG_MISSING;
    parsed_header_t ph;
    parse_header(header, &ph);
    if (!ph.have_t || ph.v1_seen == 0)
        return PS_SIG_MALFORMED;
    int matched = 0;
    for (size_t k = 0; k < keys->count; k++) {
        unsigned char expect[DIGEST_LEN];
        if (sig_digest(keys->secrets[k], ph.t, body, len, expect) < 0)
            continue;
        /* Compare against every candidate without an early exit. */
        for (size_t i = 0; i < ph.v1_count; i++)
            matched |= CRYPTO_memcmp(expect, ph.v1[i], DIGEST_LEN) == 0;
    }
    if (!matched)
        return PS_SIG_MISMATCH;
    if (ph.t < now - tolerance)
        return PS_SIG_STALE;
    if (ph.t > now + tolerance)
        return PS_SIG_FUTURE;
    return PS_SIG_OK;
}

const char *ps_sig_result_code(ps_sig_result_t r)
{
    switch (r) {
    case PS_SIG_OK: return "ok";
    case PS_SIG_MISSING: return "missing_signature";
    case PS_SIG_MALFORMED: return "malformed_signature";
    case PS_SIG_MISMATCH: return "signature_mismatch";
    case PS_SIG_STALE: return "timestamp_too_old";
    case PS_SIG_FUTURE: return "timestamp_in_future";
    }
    return "unknown";
}

int ps_sig_sign(const char *secret, const char *body, size_t len, int64_t t,
                char *out, size_t outlen)
{
    unsigned char digest[DIGEST_LEN];
    char hex[2 * DIGEST_LEN + 1];
    if (sig_digest(secret, t, body, len, digest) < 0)
        return -1;
    ps_hex_encode(digest, DIGEST_LEN, hex);
    int n = snprintf(out, outlen, "t=%" PRId64 ",v1=%s", t, hex);
    return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}
