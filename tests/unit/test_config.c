#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "paystream/config.h"

static const ps_cfg_var_t vars[] = {
    {"T_PORT", PS_CFG_INT, "8080", 1, 65535, "port"},
    {"T_FLAG", PS_CFG_BOOL, "false", 0, 0, "flag"},
    {"T_KEY", PS_CFG_SECRET, "", 0, 0, "a secret"},
    {"T_NAME", PS_CFG_STRING, "paystream", 0, 0, "name"},
    {"T_LEVEL", PS_CFG_LOGLEVEL, "info", 0, 0, "log level"},
};
#define N (sizeof(vars) / sizeof(vars[0]))

static void clear(void)
{
    for (size_t i = 0; i < N; i++)
        unsetenv(vars[i].name);
}

TestSuite(config, .init = clear);

Test(config, defaults_apply_when_unset)
{
    char err[256];
    cr_assert_eq(ps_config_load(vars, N, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ps_config_int("T_PORT"), 8080);
    cr_assert_eq(ps_config_bool("T_FLAG"), 0);
    cr_assert_str_eq(ps_config_str("T_NAME"), "paystream");
}

Test(config, environment_overrides_defaults)
{
    char err[256];
    setenv("T_PORT", "9090", 1);
    setenv("T_FLAG", "yes", 1);
    cr_assert_eq(ps_config_load(vars, N, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(ps_config_int("T_PORT"), 9090);
    cr_assert_eq(ps_config_bool("T_FLAG"), 1);
}

Test(config, out_of_range_integer_names_variable_and_bounds)
{
    char err[256];
    setenv("T_PORT", "70000", 1);
    cr_assert_eq(ps_config_load(vars, N, err, sizeof(err)), -1);
    cr_assert(strstr(err, "T_PORT") && strstr(err, "70000") && strstr(err, "1 to 65535"), "%s", err);
    setenv("T_PORT", "80x", 1);
    cr_assert_eq(ps_config_load(vars, N, err, sizeof(err)), -1);
}

Test(config, bad_boolean_and_level_are_refused)
{
    char err[256];
    setenv("T_FLAG", "maybe", 1);
    cr_assert_eq(ps_config_load(vars, N, err, sizeof(err)), -1);
    cr_assert(strstr(err, "T_FLAG"), "%s", err);
    unsetenv("T_FLAG");
    setenv("T_LEVEL", "loud", 1);
    cr_assert_eq(ps_config_load(vars, N, err, sizeof(err)), -1);
    cr_assert(strstr(err, "T_LEVEL"), "%s", err);
}

Test(config, required_variable_must_be_set)
{
    static const ps_cfg_var_t req[] = {{"T_REQUIRED", PS_CFG_STRING, NULL, 0, 0, "must be set"}};
    char err[256];
    unsetenv("T_REQUIRED");
    cr_assert_eq(ps_config_load(req, 1, err, sizeof(err)), -1);
    cr_assert(strstr(err, "T_REQUIRED is required"), "%s", err);
}

Test(config, usage_never_prints_secrets)
{
    char *text = NULL;
    size_t len = 0;
    setenv("T_KEY", "whsec_do_not_print", 1);
    FILE *f = open_memstream(&text, &len);
    ps_config_usage(f, "prog", "summary", vars, N);
    fclose(f);
    cr_assert(strstr(text, "T_PORT") && strstr(text, "8080"));
    cr_assert(strstr(text, "(secret)"));
    cr_assert_null(strstr(text, "whsec_do_not_print"));
    free(text);
}
