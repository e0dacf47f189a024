#include "paystream/jwt.h"

#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "paystream/hmac.h"
#include "paystream/util.h"

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(char c)
{
    const char *p = c ? strchr(b64url, c) : NULL;
    return p ? (int)(p - b64url) : -1;
}

/* Decodes unpadded base64url; refuses any other character and encodings
 * whose unused low bits are not zero, so each value has one spelling.
 * Returns the decoded length, or -1. out holds at least len * 3 / 4 bytes. */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return acc == 0 ? (long)n : -1;
}

static size_t b64url_encode(const unsigned char *in, size_t len, char *out)
{
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[n++] = b64url[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[n++] = b64url[(acc << (6 - bits)) & 63];
    out[n] = '\0';
    return n;
}

/* A base64url part decoded and parsed as a JSON object (duplicate keys
 * refused: two "alg" would mean what each reader chooses), or NULL. */
static json_t *decode_object(const char *part, size_t len)
{
    unsigned char *raw = ps_xmalloc(len * 3 / 4 + 1);
    long n = b64url_decode(part, len, raw);
    json_t *obj = n < 0 ? NULL : json_loadb((const char *)raw, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (obj != NULL && !json_is_object(obj)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static ps_jwt_result_t check_header(const char *part, size_t len)
{
    json_t *h = decode_object(part, len);
    if (h == NULL)
        return PS_JWT_MALFORMED;
    const char *alg = json_string_value(json_object_get(h, "alg"));
    ps_jwt_result_t r = alg != NULL && strcmp(alg, "HS256") == 0 &&
                                json_object_get(h, "crit") == NULL
                            ? PS_JWT_OK
                            : PS_JWT_ALGORITHM;
    json_decref(h);
    return r;
}

static ps_jwt_result_t check_signature(const char *token, size_t signed_len, const char *sig,
                                       size_t sig_len, const char *secret)
{
    unsigned char given[PS_HMAC_SHA256_LEN + 3], expect[PS_HMAC_SHA256_LEN];
    /* 32 bytes are 43 characters; anything else cannot be an HS256 signature. */
    if (sig_len != 43 || b64url_decode(sig, sig_len, given) != PS_HMAC_SHA256_LEN)
        return PS_JWT_SIGNATURE;
    ps_hmac_piece_t piece = {token, signed_len};
    if (ps_hmac_sha256(secret, strlen(secret), &piece, 1, expect) < 0)
        return PS_JWT_SIGNATURE;
    return CRYPTO_memcmp(given, expect, PS_HMAC_SHA256_LEN) == 0 ? PS_JWT_OK : PS_JWT_SIGNATURE;
}

/* A NumericDate claim (RFC 7519 §2: seconds, possibly fractional) as whole
 * seconds; 0 when absent, -1 when not a usable number. */
static int numeric_date(json_t *v, int64_t *out)
{
    if (v == NULL)
        return 0;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 1;
    }
    double d = json_is_real(v) ? json_real_value(v) : NAN;
    if (!isfinite(d) || d < -9.2e18 || d > 9.2e18)
        return -1;
    *out = (int64_t)floor(d);
    return 1;
}

static int valid_sub(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > PS_JWT_SUB_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= ' ' || s[i] > '~')
            return 0;
    }
    return 1;
}

/* a + b, held at INT64_MIN or INT64_MAX instead of overflowing: a claim
 * may be any 64-bit number, and one near the ends must still compare as the
 * far past or the far future. */
static int64_t add_saturating(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

static ps_jwt_result_t check_claims(const char *part, size_t len, int64_t now, int64_t leeway,
                                    ps_jwt_claims_t *claims)
{
    json_t *c = decode_object(part, len);
    if (c == NULL)
        return PS_JWT_MALFORMED;
    int64_t exp = 0, nbf = 0;
    int has_exp = numeric_date(json_object_get(c, "exp"), &exp);
    int has_nbf = numeric_date(json_object_get(c, "nbf"), &nbf);
    json_t *sub = json_object_get(c, "sub"), *scope = json_object_get(c, "scope");
    ps_jwt_result_t r = PS_JWT_OK;
    if (has_exp != 1 || has_nbf < 0 || !valid_sub(json_string_value(sub)) ||
        (scope != NULL && !json_is_string(scope)))
        r = PS_JWT_CLAIMS;
    else if (now >= add_saturating(exp, leeway))
        r = PS_JWT_EXPIRED;
    else if (has_nbf && nbf > add_saturating(now, leeway))
        r = PS_JWT_NOT_YET_VALID;
    if (r == PS_JWT_OK) {
        memset(claims, 0, sizeof(*claims));
        strcpy(claims->sub, json_string_value(sub));
        claims->admin = scope != NULL && ps_has_word(json_string_value(scope), "admin");
        claims->exp = exp;
    }
    json_decref(c);
    return r;
}

/* Whether every character is of base64url or a dot. */
static int token_chars(const char *token, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (token[i] != '.' && b64url_value(token[i]) < 0)
            return 0;
    }
    return 1;
}

ps_jwt_result_t ps_jwt_verify(const char *token, size_t len, const char *secret, int64_t now,
                              int64_t leeway, ps_jwt_claims_t *claims)
{
    if (token == NULL || len == 0 || len > PS_JWT_MAX || !token_chars(token, len))
        return PS_JWT_MALFORMED;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    const char *end = token + len;
    if (dot2 == NULL || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)) != NULL)
        return PS_JWT_MALFORMED;
    ps_jwt_result_t r = check_header(token, (size_t)(dot1 - token));
    if (r == PS_JWT_OK)
        r = check_signature(token, (size_t)(dot2 - token), dot2 + 1, (size_t)(end - dot2 - 1),
                            secret);
    if (r == PS_JWT_OK)
        r = check_claims(dot1 + 1, (size_t)(dot2 - dot1 - 1), now, leeway, claims);
    return r;
}

const char *ps_jwt_result_code(ps_jwt_result_t r)
{
    switch (r) {
    case PS_JWT_OK: return "ok";
    case PS_JWT_MALFORMED: return "malformed_token";
    case PS_JWT_ALGORITHM: return "unsupported_algorithm";
    case PS_JWT_SIGNATURE: return "bad_signature";
    case PS_JWT_EXPIRED: return "token_expired";
    case PS_JWT_NOT_YET_VALID: return "token_not_yet_valid";
    case PS_JWT_CLAIMS: return "bad_claims";
    }
    return "unknown";
}

int ps_jwt_sign(const char *payload, const char *secret, char *out, size_t outlen)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    size_t plen = strlen(payload);
    size_t need = (sizeof(header) * 4 / 3 + 4) + 1 + (plen * 4 / 3 + 4) + 1 + 44;
    if (outlen < need)
        return -1;
    size_t n = b64url_encode((const unsigned char *)header, sizeof(header) - 1, out);
    out[n++] = '.';
    n += b64url_encode((const unsigned char *)payload, plen, out + n);
    unsigned char mac[PS_HMAC_SHA256_LEN];
    ps_hmac_piece_t piece = {out, n};
    if (ps_hmac_sha256(secret, strlen(secret), &piece, 1, mac) < 0)
        return -1;
    out[n++] = '.';
    b64url_encode(mac, sizeof(mac), out + n);
    return 0;
}
