/* PayPal webhook signatures (paypal_sig.h). */
#include "paystream/paypal_sig.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_MAX 1024 /* bytes of an RSA signature: up to 8192-bit keys */

uint32_t ps_crc32(const unsigned char *buf, size_t len)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= buf[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void openssl_why(const char *what, char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    snprintf(err, errlen, "%s%s%s", what, e ? ": " : "", e ? ERR_reason_error_string(e) : "");
    ERR_clear_error();
}

EVP_PKEY *ps_paypal_cert_key(const char *pem, size_t len, X509_STORE *store, const char *name,
                             char *err, size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *leaf = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    STACK_OF(X509) *rest = sk_X509_new_null();
    X509 *more;
    EVP_PKEY *key = NULL;
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (leaf == NULL) {
        openssl_why("no PEM certificate at the cert URL", err, errlen);
        goto done;
    }
    while (bio && (more = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        sk_X509_push(rest, more);
    ERR_clear_error(); /* the end of the PEM data */
    if (ctx == NULL || X509_STORE_CTX_init(ctx, store, leaf, rest) != 1) {
        openssl_why("cannot check the certificate", err, errlen);
        goto done;
    }
    if (X509_verify_cert(ctx) != 1) {
        snprintf(err, errlen, "the certificate is not trusted: %s",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        goto done;
    }
    if (X509_check_host(leaf, name, 0, 0, NULL) != 1) {
        snprintf(err, errlen, "the certificate is not issued to %s", name);
        goto done;
    }
    if ((key = X509_get_pubkey(leaf)) == NULL)
        openssl_why("the certificate has no usable key", err, errlen);
done:
    X509_STORE_CTX_free(ctx);
    sk_X509_pop_free(rest, X509_free);
    X509_free(leaf);
    BIO_free(bio);
    return key;
}

int ps_paypal_sig_ok(EVP_PKEY *key, const char *transmission_id, const char *transmission_time,
                     const char *webhook_id, const char *body, size_t len, const char *sig_b64)
{
    unsigned char sig[SIG_MAX + 3];
    size_t b64 = strlen(sig_b64);
    if (b64 == 0 || b64 % 4 != 0 || b64 / 4 * 3 > sizeof(sig))
        return 0;
    int n = EVP_DecodeBlock(sig, (const unsigned char *)sig_b64, (int)b64);
    if (n < 0)
        return 0;
    /* EVP_DecodeBlock counts the padding's bytes as data. */
    n -= (b64 >= 1 && sig_b64[b64 - 1] == '=') + (b64 >= 2 && sig_b64[b64 - 2] == '=');
    char crc[16];
    snprintf(crc, sizeof(crc), "%u", (unsigned)ps_crc32((const unsigned char *)body, len));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = 0;
    if (md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1) {
        char head[512];
        int hl = snprintf(head, sizeof(head), "%s|%s|%s|%s", transmission_id, transmission_time,
                          webhook_id, crc);
        ok = hl > 0 && (size_t)hl < sizeof(head) &&
             EVP_DigestVerifyUpdate(md, head, (size_t)hl) == 1 &&
             EVP_DigestVerifyFinal(md, sig, (size_t)n) == 1;
    }
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}
