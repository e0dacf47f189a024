/* HMAC-SHA256 over a message given in pieces, for the signature schemes
 * paystream checks (Stripe webhooks, JWT HS256), and plain SHA-256 for
 * fingerprints (API keys, request bodies). */
#ifndef PAYSTREAM_HMAC_H
#define PAYSTREAM_HMAC_H

#include <stddef.h>

#define PS_HMAC_SHA256_LEN 32

/* One piece of the signed message. */
typedef struct {
    const void *data;
    size_t len;
} ps_hmac_piece_t;

/* Writes HMAC-SHA256(key, pieces concatenated) to out. Returns 0, or -1 when
 * the crypto library fails. */
int ps_hmac_sha256(const void *key, size_t keylen, const ps_hmac_piece_t *pieces,
                   size_t npieces, unsigned char out[PS_HMAC_SHA256_LEN]);

/* Writes the lowercase hex SHA-256 of the pieces concatenated to out (65
 * bytes). Returns 0, or -1 when the crypto library fails. */
int ps_sha256_hex(const ps_hmac_piece_t *pieces, size_t npieces, char out[65]);

#endif
