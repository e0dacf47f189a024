/* The bearer-token verifier: any token, at any time and leeway (the first
 * 16 bytes of the input), gets a verdict; only a token signed with the
 * secret can be accepted, and then its subject is printable. */
#include "fuzz.h"
#include "paystream/jwt.h"

#define SECRET "fuzzing-secret-of-thirty-two-bytes!!"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t now = 1700000000, leeway = 30;
    if (size >= 16) {
        memcpy(&now, data, 8);
        memcpy(&leeway, data + 8, 8);
        data += 16, size -= 16;
    }
    char *token = fuzz_string(data, size);
    ps_jwt_claims_t claims;
    ps_jwt_result_t r = ps_jwt_verify(token, size, SECRET, now, leeway, &claims);
    FUZZ_CHECK(ps_jwt_result_code(r) != NULL);
    if (r == PS_JWT_OK) {
        FUZZ_CHECK(claims.sub[0] != '\0');
        for (const char *c = claims.sub; *c; c++)
            FUZZ_CHECK(*c > ' ' && *c <= '~');
        /* The input held a signature made with the secret: re-signing its
         * claims must be possible too. */
        FUZZ_CHECK(strchr(token, '.') != NULL);
    }
    /* Signing the input as claims either fails or makes a token that the
     * verifier judges without crashing. */
    char signed_token[PS_JWT_MAX];
    if (ps_jwt_sign(token, SECRET, signed_token, sizeof(signed_token)) == 0)
        (void)ps_jwt_verify(signed_token, strlen(signed_token), SECRET, now, leeway, &claims);
    free(token);
    return 0;
}
