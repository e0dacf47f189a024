#include "paystream/hmac.h"

#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>

#include "paystream/util.h"

static EVP_MAC *hmac_impl;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

/* Fetching an algorithm takes locks and a lookup: do it once per process. */
static void hmac_fetch(void)
{
    hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

int ps_hmac_sha256(const void *key, size_t keylen, const ps_hmac_piece_t *pieces,
                   size_t npieces, unsigned char out[PS_HMAC_SHA256_LEN])
{
    pthread_once(&hmac_once, hmac_fetch);
    if (hmac_impl == NULL)
        return -1;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_impl);
    int ok = ctx != NULL && EVP_MAC_init(ctx, key, keylen, params);
    for (size_t i = 0; ok && i < npieces; i++)
        ok = EVP_MAC_update(ctx, pieces[i].data, pieces[i].len);
    size_t outlen = 0;
    ok = ok && EVP_MAC_final(ctx, out, &outlen, PS_HMAC_SHA256_LEN) && outlen == PS_HMAC_SHA256_LEN;
    EVP_MAC_CTX_free(ctx);
    return ok ? 0 : -1;
}

int ps_sha256_hex(const ps_hmac_piece_t *pieces, size_t npieces, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < npieces; i++)
        ok = EVP_DigestUpdate(ctx, pieces[i].data, pieces[i].len);
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == sizeof(md);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    ps_hex_encode(md, sizeof(md), out);
    return 0;
}
