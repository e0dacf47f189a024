/* The Stripe-Signature check: a header (the input's first line) against a
 * body (the rest). Whatever the input, the verdict is one of the results,
 * and only a header made with the secret verifies. */
#include "fuzz.h"
#include "paystream/stripe_sig.h"

#define SECRET "whsec_fuzzing_secret_0123456789"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ps_sig_keys_t keys;
    char err[128];
    if (keys.count == 0 && ps_sig_keys_parse(SECRET ", whsec_second", &keys, err, sizeof(err)) < 0)
        abort();
    char *text = fuzz_string(data, size);
    char *nl = memchr(text, '\n', size);
    const char *body = nl ? nl + 1 : "";
    size_t blen = nl ? size - (size_t)(nl + 1 - text) : 0;
    if (nl)
        *nl = '\0';
    ps_sig_result_t r = ps_sig_verify(text, body, blen, &keys, 1700000000, 300);
    FUZZ_CHECK(r >= PS_SIG_OK && r <= PS_SIG_FUTURE);
    FUZZ_CHECK(ps_sig_result_code(r) != NULL);

    /* The same body signed properly verifies, and one byte off does not. */
    char header[PS_SIG_HEADER_MAX];
    FUZZ_CHECK(ps_sig_sign(SECRET, body, blen, 1700000000, header, sizeof(header)) == 0);
    FUZZ_CHECK(ps_sig_verify(header, body, blen, &keys, 1700000000, 300) == PS_SIG_OK);
    if (blen > 0) {
        char *other = fuzz_string((const uint8_t *)body, blen);
        other[0] ^= 1;
        FUZZ_CHECK(ps_sig_verify(header, other, blen, &keys, 1700000000, 300) == PS_SIG_MISMATCH);
        free(other);
    }
    /* The secret list parser takes any text without harm. */
    ps_sig_keys_t parsed;
    if (ps_sig_keys_parse(text, &parsed, err, sizeof(err)) == 0) {
        FUZZ_CHECK(parsed.count >= 1 && parsed.count <= PS_SIG_MAX_SECRETS);
        ps_sig_keys_free(&parsed);
    }
    free(text);
    return 0;
}
