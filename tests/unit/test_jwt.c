/* Bearer-token verification against vectors made and judged by the
 * jsonwebtoken library (tests/vectors/jwt.js), and signing round trips. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "paystream/jwt.h"

static json_t *load_vectors(void)
{
    json_error_t err;
    json_t *root = json_load_file(PS_VECTORS_DIR "/jwt_vectors.json", 0, &err);
    cr_assert_not_null(root, "cannot read the vectors: %s", err.text);
    return root;
}

Test(jwt, agrees_with_the_reference_library)
{
    json_t *root = load_vectors(), *c;
    const char *secret = json_string_value(json_object_get(root, "secret"));
    int64_t now = json_integer_value(json_object_get(root, "now"));
    int64_t leeway = json_integer_value(json_object_get(root, "leeway"));
    size_t i, ok = 0;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        const char *token = json_string_value(json_object_get(c, "token"));
        const char *expect = json_string_value(json_object_get(c, "expect"));
        ps_jwt_claims_t claims;
        ps_jwt_result_t r = ps_jwt_verify(token, strlen(token), secret, now, leeway, &claims);
        cr_expect_str_eq(ps_jwt_result_code(r), expect, "case %s",
                         json_string_value(json_object_get(c, "name")));
        ok += r == PS_JWT_OK;
    }
    cr_assert(ok >= 5 && ok < i, "the vectors hold both good and bad tokens (%zu of %zu good)", ok, i);
    json_decref(root);
}

static ps_jwt_result_t verify_signed(const char *payload, const char *secret, ps_jwt_claims_t *c)
{
    char token[1024];
    cr_assert_eq(ps_jwt_sign(payload, "s3cret-for-tests", token, sizeof(token)), 0);
    return ps_jwt_verify(token, strlen(token), secret, 1000, 0, c);
}

Test(jwt, a_signed_token_carries_its_claims)
{
    ps_jwt_claims_t c;
    cr_assert_eq(verify_signed("{\"sub\":\"alice@example.com\",\"exp\":2000,\"scope\":\"admin\"}",
                               "s3cret-for-tests", &c), PS_JWT_OK);
    cr_assert_str_eq(c.sub, "alice@example.com");
    cr_assert_eq(c.admin, 1);
    cr_assert_eq(c.exp, 2000);
    cr_assert_eq(verify_signed("{\"sub\":\"bob\",\"exp\":2000}", "s3cret-for-tests", &c), PS_JWT_OK);
    cr_assert_eq(c.admin, 0);
    cr_assert_eq(verify_signed("{\"sub\":\"bob\",\"exp\":2000}", "another", &c), PS_JWT_SIGNATURE);
    cr_assert_eq(verify_signed("{\"sub\":\"bob\",\"exp\":1000}", "s3cret-for-tests", &c), PS_JWT_EXPIRED);
}

Test(jwt, refuses_what_is_not_a_token)
{
    ps_jwt_claims_t c;
    static const char *const bad[] = {"", ".", "..", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "\xff\xfe.x.y"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_neq(ps_jwt_verify(bad[i], strlen(bad[i]), "k", 0, 0, &c), PS_JWT_OK, "%zu", i);
    char big[PS_JWT_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(ps_jwt_verify(big, strlen(big), "k", 0, 0, &c), PS_JWT_MALFORMED);
    char small[16];
    cr_assert_eq(ps_jwt_sign("{\"sub\":\"x\",\"exp\":1}", "k", small, sizeof(small)), -1);
}

/* Claims at the ends of the 64-bit range, with a leeway that would carry
 * them over (a sanitizer run turns any overflow into a failure). */
Test(jwt, dates_at_the_ends_of_the_range_compare_without_overflow)
{
    ps_jwt_claims_t c;
    char token[1024];
    static const struct {
        const char *payload;
        int64_t now, leeway;
        ps_jwt_result_t expect;
    } cases[] = {
        {"{\"sub\":\"x\",\"exp\":9223372036854775807}", 1000, 30, PS_JWT_OK},
        {"{\"sub\":\"x\",\"exp\":9223372036854775807}", INT64_MAX - 1, INT64_MAX, PS_JWT_OK},
        {"{\"sub\":\"x\",\"exp\":-9223372036854775808}", 1000, -30, PS_JWT_EXPIRED},
        {"{\"sub\":\"x\",\"exp\":2000,\"nbf\":9223372036854775807}", 1000, 30,
         PS_JWT_NOT_YET_VALID},
        {"{\"sub\":\"x\",\"exp\":2000,\"nbf\":-9223372036854775808}", INT64_MIN, 30,
         PS_JWT_OK},
        {"{\"sub\":\"x\",\"exp\":2000,\"nbf\":1500}", INT64_MAX - 10, 30, PS_JWT_EXPIRED},
        {"{\"sub\":\"x\",\"exp\":9.3e18}", 1000, 30, PS_JWT_CLAIMS},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_assert_eq(ps_jwt_sign(cases[i].payload, "k", token, sizeof(token)), 0);
        ps_jwt_result_t r = ps_jwt_verify(token, strlen(token), "k", cases[i].now, cases[i].leeway, &c);
        cr_expect_eq(r, cases[i].expect, "case %zu: %s", i, ps_jwt_result_code(r));
    }
}
