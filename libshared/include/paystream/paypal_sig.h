/* PayPal webhook signatures, checked as PayPal documents for verifying
 * them without calling PayPal: the message
 *
 *   <PAYPAL-TRANSMISSION-ID>|<PAYPAL-TRANSMISSION-TIME>|<webhook id>|<CRC32 of the raw body, decimal>
 *
 * is signed SHA256withRSA (PAYPAL-AUTH-ALGO) with the key of the
 * certificate PAYPAL-CERT-URL points at. That URL comes with the request,
 * so whoever sends one could name their own certificate: the URL must be
 * one of PayPal's, and the certificate must chain to a trusted CA and be
 * issued to PayPal's signing name. */
#ifndef PAYSTREAM_PAYPAL_SIG_H
#define PAYSTREAM_PAYPAL_SIG_H

#include <openssl/evp.h>
#include <openssl/x509_vfy.h>
#include <stddef.h>
#include <stdint.h>

#define PS_PAYPAL_CERT_NAME "messageverificationcerts.paypal.com"

/* CRC-32 (IEEE 802.3, as zlib's crc32) of buf. */
uint32_t ps_crc32(const unsigned char *buf, size_t len);

/* The public key of the first certificate of pem (len bytes, the chain
 * PayPal serves: the signer, then its intermediates), once that one is
 * checked: it chains through the rest to a CA of store, is valid now and
 * is issued to name. Returns the key (EVP_PKEY_free it), or NULL with
 * why in err. */
EVP_PKEY *ps_paypal_cert_key(const char *pem, size_t len, X509_STORE *store, const char *name,
                             char *err, size_t errlen);

/* Whether sig_b64 (PAYPAL-TRANSMISSION-SIG) is key's SHA256withRSA
 * signature of the message above for webhook_id and body. */
int ps_paypal_sig_ok(EVP_PKEY *key, const char *transmission_id, const char *transmission_time,
                     const char *webhook_id, const char *body, size_t len, const char *sig_b64);

#endif
