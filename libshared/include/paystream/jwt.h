/* Bearer tokens of the API: compact JWS (RFC 7515/7519) signed with
 * HMAC-SHA256 under PAYSTREAM_JWT_SECRET. Only "alg":"HS256" is accepted:
 * "none", other HMACs and public-key algorithms are refused before any
 * signature is computed, so a token cannot choose how it is checked. */
#ifndef PAYSTREAM_JWT_H
#define PAYSTREAM_JWT_H

#include <stddef.h>
#include <stdint.h>

#define PS_JWT_MAX 8192   /* longest token looked at */
#define PS_JWT_SUB_MAX 128 /* longest subject (user id) */

typedef enum {
    PS_JWT_OK = 0,
    PS_JWT_MALFORMED,     /* not header.payload.signature of base64url JSON objects */
    PS_JWT_ALGORITHM,     /* alg is not HS256, or the header has crit */
    PS_JWT_SIGNATURE,     /* the signature is not the secret's */
    PS_JWT_EXPIRED,       /* now >= exp + leeway */
    PS_JWT_NOT_YET_VALID, /* nbf > now + leeway */
    PS_JWT_CLAIMS,        /* exp missing, or a claim of the wrong type or shape */
} ps_jwt_result_t;

/* What a valid token says about its bearer. */
typedef struct {
    char sub[PS_JWT_SUB_MAX + 1]; /* printable ASCII, no spaces */
    int admin;                    /* "admin" is one of the words of scope */
    int64_t exp;
} ps_jwt_claims_t;

/* Verifies token (len bytes) with secret at Unix time now, allowing leeway
 * seconds of clock difference. exp and sub are required; nbf and scope are
 * checked when present. The signature is compared in constant time and
 * checked before the payload is parsed. */
ps_jwt_result_t ps_jwt_verify(const char *token, size_t len, const char *secret, int64_t now,
                              int64_t leeway, ps_jwt_claims_t *claims);

/* A short lowercase reason for a result, fit for an error code. */
const char *ps_jwt_result_code(ps_jwt_result_t r);

/* Writes an HS256 token for payload (a JSON object's text) into out (outlen
 * bytes). Returns 0, or -1 when out is too small or crypto fails. For tests,
 * tools and the admin command. */
int ps_jwt_sign(const char *payload, const char *secret, char *out, size_t outlen);

#endif
