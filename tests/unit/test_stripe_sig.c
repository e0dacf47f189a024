/* Signature verification against vectors made and judged by Stripe's
 * official library (tests/vectors/generate.js). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "paystream/stripe_sig.h"

static json_t *load_vectors(void)
{
    json_error_t err;
    json_t *root = json_load_file(PS_VECTORS_DIR "/stripe_signatures.json", 0, &err);
    cr_assert_not_null(root, "cannot read the vectors: %s", err.text);
    return root;
}

static ps_sig_result_t verify_case(json_t *c)
{
    ps_sig_keys_t keys = {0};
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(c, "secrets"), i, s)
        keys.secrets[keys.count++] = strdup(json_string_value(s));
    const char *body = json_string_value(json_object_get(c, "body"));
    const char *header = json_string_value(json_object_get(c, "header"));
    ps_sig_result_t r = ps_sig_verify(header, body, strlen(body), &keys,
                                      json_integer_value(json_object_get(c, "now")),
                                      PS_SIG_DEFAULT_TOLERANCE);
    ps_sig_keys_free(&keys);
    return r;
}

Test(stripe_sig, agrees_with_stripes_library_on_every_vector)
{
    json_t *root = load_vectors();
    json_t *cases = json_object_get(root, "cases");
    cr_assert_geq(json_array_size(cases), 15, "the vector file looks truncated");
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *expect = json_string_value(json_object_get(c, "expect"));
        cr_expect_str_eq(ps_sig_result_code(verify_case(c)), expect, "vector %s", name);
    }
    json_decref(root);
}

Test(stripe_sig, signs_what_stripe_verifies)
{
    json_t *root = load_vectors();
    json_t *valid = json_array_get(json_object_get(root, "cases"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(valid, "name")), "valid");
    const char *body = json_string_value(json_object_get(valid, "body"));
    const char *secret = json_string_value(json_array_get(json_object_get(valid, "secrets"), 0));
    char header[PS_SIG_HEADER_MAX];
    cr_assert_eq(ps_sig_sign(secret, body, strlen(body),
                             json_integer_value(json_object_get(valid, "now")), header,
                             sizeof(header)), 0);
    cr_assert_str_eq(header, json_string_value(json_object_get(valid, "header")));
    json_decref(root);
}

Test(stripe_sig, parses_rolled_secret_lists)
{
    ps_sig_keys_t keys;
    char err[128];
    cr_assert_eq(ps_sig_keys_parse("whsec_new, whsec_old ,", &keys, err, sizeof(err)), 0);
    cr_assert_eq(keys.count, 2);
    cr_assert_str_eq(keys.secrets[0], "whsec_new");
    cr_assert_str_eq(keys.secrets[1], "whsec_old");
    ps_sig_keys_free(&keys);
    cr_assert_eq(ps_sig_keys_parse(" , ", &keys, err, sizeof(err)), -1);
    cr_assert_eq(ps_sig_keys_parse("a,b,c,d,e,f,g,h,i", &keys, err, sizeof(err)), -1);
}

Test(stripe_sig, null_header_is_missing)
{
    ps_sig_keys_t keys = {.secrets = {(char *)"whsec_x"}, .count = 1};
    cr_assert_eq(ps_sig_verify(NULL, "{}", 2, &keys, 0, 300), PS_SIG_MISSING);
}
