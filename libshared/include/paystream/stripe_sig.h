/* Stripe webhook signatures: header "t=<unix>,v1=<hex>[,v1=<hex>...]",
 * HMAC-SHA256 keyed with the whole endpoint secret over "<t>.<raw body>".
 * The same scheme signs paystream's own outbound webhooks. */
#ifndef PAYSTREAM_STRIPE_SIG_H
#define PAYSTREAM_STRIPE_SIG_H

#include <stddef.h>
#include <stdint.h>

#define PS_SIG_DEFAULT_TOLERANCE 300 /* seconds, as Stripe's libraries */
#define PS_SIG_MAX_SECRETS 8
#define PS_SIG_HEADER_MAX 640 /* room for t= and a few v1= values */

typedef enum {
    PS_SIG_OK = 0,
    PS_SIG_MISSING,   /* no header at all */
    PS_SIG_MALFORMED, /* no t= or no v1= in the header */
    PS_SIG_MISMATCH,  /* no v1 matches any secret */
    PS_SIG_STALE,     /* signature good but t older than the tolerance */
    PS_SIG_FUTURE,    /* signature good but t ahead of now by more than it */
} ps_sig_result_t;

/* A set of secrets accepted at once, so that a secret can be rolled. */
typedef struct {
    char *secrets[PS_SIG_MAX_SECRETS];
    size_t count;
} ps_sig_keys_t;

/* Splits a comma-separated list of secrets (spaces around commas are
 * ignored) into keys. Returns 0, or -1 with the reason in err when the list
 * is empty or has more than PS_SIG_MAX_SECRETS entries. Free with
 * ps_sig_keys_free. */
int ps_sig_keys_parse(const char *csv, ps_sig_keys_t *keys, char *err, size_t errlen);
void ps_sig_keys_free(ps_sig_keys_t *keys);

/* Verifies header against body with every key; now is the current Unix
 * time in seconds. The signature is checked before the timestamp, and all
 * comparisons of digests are constant-time. */
ps_sig_result_t ps_sig_verify(const char *header, const char *body, size_t len,
                              const ps_sig_keys_t *keys, int64_t now,
                              int64_t tolerance);

/* A short lowercase reason for a result, fit for an error code. */
const char *ps_sig_result_code(ps_sig_result_t r);

/* Writes "t=<t>,v1=<hex>" for body signed with secret into out (at least
 * PS_SIG_HEADER_MAX bytes). Returns 0, or -1 on a crypto failure. */
int ps_sig_sign(const char *secret, const char *body, size_t len, int64_t t,
                char *out, size_t outlen);

#endif
