#include "paystream/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "paystream/log.h"

static const ps_cfg_var_t *cfg_vars;
static size_t cfg_count;

static const ps_cfg_var_t *find_var(const char *name)
{
    for (size_t i = 0; i < cfg_count; i++) {
        if (strcmp(cfg_vars[i].name, name) == 0)
            return &cfg_vars[i];
    }
    return NULL;
}

static int parse_int(const char *text, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* 1 or 0 for a recognised boolean word, -1 otherwise. */
static int parse_bool(const char *text)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return 1;
        if (strcasecmp(text, no[i]) == 0)
            return 0;
    }
    return -1;
}

static int check_value(const ps_cfg_var_t *v, const char *value, char *err, size_t errlen)
{
    int64_t n;
    ps_log_level_t level;
    const char *shown = v->kind == PS_CFG_SECRET ? "(hidden)" : value;
    switch (v->kind) {
    case PS_CFG_INT:
        if (parse_int(value, &n) < 0 || n < v->min || n > v->max) {
            snprintf(err, errlen, "%s=\"%s\" is invalid: expected an integer from %" PRId64
                     " to %" PRId64, v->name, shown, v->min, v->max);
            return -1;
        }
        return 0;
    case PS_CFG_BOOL:
        if (parse_bool(value) < 0) {
            snprintf(err, errlen, "%s=\"%s\" is invalid: expected true or false", v->name, shown);
            return -1;
        }
        return 0;
    case PS_CFG_LOGLEVEL:
        if (ps_log_level_parse(value, &level) < 0) {
            snprintf(err, errlen, "%s=\"%s\" is invalid: expected debug, info, warn or error",
                     v->name, shown);
            return -1;
        }
        return 0;
    case PS_CFG_STRING:
    case PS_CFG_SECRET:
        return 0;
    }
    return 0;
}

int ps_config_load(const ps_cfg_var_t *vars, size_t count, char *err, size_t errlen)
{
    cfg_vars = vars;
    cfg_count = count;
    for (size_t i = 0; i < count; i++) {
        const char *value = getenv(vars[i].name);
        if (value == NULL || *value == '\0') {
            if (vars[i].def == NULL) {
                snprintf(err, errlen, "%s is required: %s", vars[i].name, vars[i].help);
                return -1;
            }
            continue;
        }
        if (check_value(&vars[i], value, err, errlen) < 0)
            return -1;
    }
    return 0;
}

int ps_config_start(const char *service, const ps_cfg_var_t *vars, size_t count)
{
    char err[512];
    ps_log_level_t level = PS_LOG_INFO;
    if (ps_config_load(vars, count, err, sizeof(err)) < 0) {
        fprintf(stderr, "paystream-%s: %s\n", service, err);
        return -1;
    }
    ps_log_level_parse(ps_config_str("PAYSTREAM_LOG_LEVEL"), &level);
    ps_log_init(service, level);
    return 0;
}

const char *ps_config_str(const char *name)
{
    const char *value = getenv(name);
    if (value && *value)
        return value;
    const ps_cfg_var_t *v = find_var(name);
    return v && v->def ? v->def : "";
}

int64_t ps_config_int(const char *name)
{
    int64_t n = 0;
    parse_int(ps_config_str(name), &n);
    return n;
}

int ps_config_bool(const char *name)
{
    return parse_bool(ps_config_str(name)) == 1;
}

void ps_config_usage(FILE *out, const char *prog, const char *summary,
                     const ps_cfg_var_t *vars, size_t count)
{
    fprintf(out, "usage: %s [options]\n\n%s\n\nenvironment:\n", prog, summary);
    for (size_t i = 0; i < count; i++) {
        const char *def = vars[i].def == NULL ? "(required)"
                          : vars[i].kind == PS_CFG_SECRET ? "(secret)"
                          : *vars[i].def ? vars[i].def : "(empty)";
        fprintf(out, "  %-34s %s\n  %-34s default: %s\n", vars[i].name, vars[i].help, "", def);
    }
}

/* The mode a Stripe secret key belongs to: 1 live, 0 test, -1 unknown. */
static int key_livemode(const char *key)
{
    if (strncmp(key, "sk_live_", 8) == 0 || strncmp(key, "rk_live_", 8) == 0)
        return 1;
    if (strncmp(key, "sk_test_", 8) == 0 || strncmp(key, "rk_test_", 8) == 0)
        return 0;
    return -1;
}

int ps_config_stripe_livemode(char *err, size_t errlen)
{
    const char *mode = ps_config_str("PAYSTREAM_STRIPE_MODE");
    const char *key = getenv("STRIPE_SECRET_KEY");
    int from_key = key && *key ? key_livemode(key) : -1;
    int set = strcmp(mode, "live") == 0 ? 1 : strcmp(mode, "test") == 0 ? 0 : -1;
    if (*mode && set < 0) {
        snprintf(err, errlen, "PAYSTREAM_STRIPE_MODE=\"%.16s\" is invalid: expected test or live",
                 mode);
        return -1;
    }
    if (set >= 0 && from_key >= 0 && set != from_key) {
        snprintf(err, errlen, "PAYSTREAM_STRIPE_MODE=%s contradicts STRIPE_SECRET_KEY, a %s key",
                 mode, from_key ? "live" : "test");
        return -1;
    }
    return set >= 0 ? set : from_key > 0;
}
