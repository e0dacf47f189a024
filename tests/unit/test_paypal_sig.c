/* PayPal webhook signatures (paypal_sig.h): the CRC-32 of the body, the
 * SHA256withRSA check of the signed message, and the checks a
 * certificate must pass before its key is used. */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "paystream/paypal_sig.h"

static EVP_PKEY *key;

static void make_key(void)
{
    key = EVP_RSA_gen(2048);
    cr_assert_not_null(key);
}

static void free_key(void)
{
    EVP_PKEY_free(key);
}

/* PayPal's signature of body for webhook_id, base64. */
static void sign(const char *tid, const char *when, const char *webhook_id, const char *body,
                 char *b64)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s|%s|%s|%u", tid, when, webhook_id,
             (unsigned)ps_crc32((const unsigned char *)body, strlen(body)));
    unsigned char sig[512];
    size_t len = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    cr_assert(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
              EVP_DigestSign(md, sig, &len, (const unsigned char *)msg, strlen(msg)) == 1);
    EVP_MD_CTX_free(md);
    EVP_EncodeBlock((unsigned char *)b64, sig, (int)len);
}

/* A certificate of key for name, signed by itself, as PEM (malloc'd). */
static char *self_signed(const char *name)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(x, n);
    cr_assert(X509_sign(x, key, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *data;
    long len = BIO_get_mem_data(b, &data);
    char *pem = strndup(data, (size_t)len);
    BIO_free(b);
    X509_free(x);
    return pem;
}

TestSuite(paypal_sig, .init = make_key, .fini = free_key);

Test(paypal_sig, crc32_is_zlibs)
{
    cr_assert_eq(ps_crc32((const unsigned char *)"123456789", 9), 0xCBF43926u);
    cr_assert_eq(ps_crc32((const unsigned char *)"", 0), 0u);
}

Test(paypal_sig, the_signed_message_must_match_in_every_part)
{
    const char *body = "{\"id\":\"WH-1\",\"event_type\":\"PAYMENT.CAPTURE.COMPLETED\"}";
    char b64[800];
    sign("tx-1", "2026-12-02T19:00:00Z", "WH-ID", body, b64);
    cr_assert(ps_paypal_sig_ok(key, "tx-1", "2026-12-02T19:00:00Z", "WH-ID", body, strlen(body), b64));
    cr_assert_not(ps_paypal_sig_ok(key, "tx-2", "2026-12-02T19:00:00Z", "WH-ID", body,
                                   strlen(body), b64), "another transmission");
    cr_assert_not(ps_paypal_sig_ok(key, "tx-1", "2026-12-02T19:00:01Z", "WH-ID", body,
                                   strlen(body), b64), "another time");
    cr_assert_not(ps_paypal_sig_ok(key, "tx-1", "2026-12-02T19:00:00Z", "WH-OTHER", body,
                                   strlen(body), b64), "another webhook");
    cr_assert_not(ps_paypal_sig_ok(key, "tx-1", "2026-12-02T19:00:00Z", "WH-ID", body,
                                   strlen(body) - 1, b64), "another body");
    b64[10] = b64[10] == 'A' ? 'B' : 'A';
    cr_assert_not(ps_paypal_sig_ok(key, "tx-1", "2026-12-02T19:00:00Z", "WH-ID", body,
                                   strlen(body), b64), "another signature");
    cr_assert_not(ps_paypal_sig_ok(key, "tx-1", "2026-12-02T19:00:00Z", "WH-ID", body,
                                   strlen(body), ""), "none");
    cr_assert_not(ps_paypal_sig_ok(key, "tx-1", "2026-12-02T19:00:00Z", "WH-ID", body,
                                   strlen(body), "abc"), "not base64");
}

Test(paypal_sig, a_certificate_must_be_trusted_and_paypals)
{
    char err[256];
    char *pem = self_signed(PS_PAYPAL_CERT_NAME);
    X509_STORE *none = X509_STORE_new();
    cr_assert_null(ps_paypal_cert_key(pem, strlen(pem), none, PS_PAYPAL_CERT_NAME, err,
                                      sizeof(err)));
    cr_assert(strstr(err, "not trusted"), "%s", err);

    X509_STORE *trusting = X509_STORE_new();
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    X509_STORE_add_cert(trusting, x);
    X509_free(x);
    BIO_free(b);
    EVP_PKEY *got = ps_paypal_cert_key(pem, strlen(pem), trusting, PS_PAYPAL_CERT_NAME, err,
                                       sizeof(err));
    cr_assert_not_null(got, "%s", err);
    cr_assert(EVP_PKEY_eq(got, key) == 1, "the certificate's own key");
    EVP_PKEY_free(got);
    cr_assert_null(ps_paypal_cert_key(pem, strlen(pem), trusting, "other.example", err,
                                      sizeof(err)));
    cr_assert(strstr(err, "not issued"), "%s", err);
    cr_assert_null(ps_paypal_cert_key("not a certificate", 17, trusting, PS_PAYPAL_CERT_NAME, err,
                                      sizeof(err)));
    X509_STORE_free(none);
    X509_STORE_free(trusting);
    free(pem);
}
