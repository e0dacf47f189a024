/* Configuration from environment variables, declared once in a table per
 * service: name, kind, default, bounds and a help line. The same table
 * validates the environment at start-up and prints --help. */
#ifndef PAYSTREAM_CONFIG_H
#define PAYSTREAM_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    PS_CFG_STRING,  /* any text */
    PS_CFG_INT,     /* decimal integer within [min, max] */
    PS_CFG_BOOL,    /* true/false, 1/0, yes/no, on/off */
    PS_CFG_SECRET,  /* text never printed, not even by --help */
    PS_CFG_LOGLEVEL /* debug, info, warn, error */
} ps_cfg_kind_t;

typedef struct {
    const char *name;   /* environment variable */
    ps_cfg_kind_t kind;
    const char *def;    /* default, or NULL when the variable is required */
    int64_t min, max;   /* bounds for PS_CFG_INT */
    const char *help;   /* one line for --help and the README */
} ps_cfg_var_t;

/* The variables every service reads. */
#define PS_CFG_COMMON                                                                  \
    {"PAYSTREAM_KAFKA_BROKERS", PS_CFG_STRING, "127.0.0.1:9092", 0, 0,                \
     "Kafka bootstrap servers, host:port[,host:port]"},                                \
    {"PAYSTREAM_PG_DSN", PS_CFG_STRING, "postgresql:///paystream", 0, 0,              \
     "PostgreSQL connection string (libpq DSN or URI)"},                              \
    {"PAYSTREAM_LOG_LEVEL", PS_CFG_LOGLEVEL, "info", 0, 0,                            \
     "lowest log level written: debug, info, warn or error"},                         \
    {"PAYSTREAM_SCHEMA_DIR", PS_CFG_STRING, PS_DEFAULT_SCHEMA_DIR, 0, 0,              \
     "the schemas/ folder whose migrations/ and functions/ --migrate applies"}

/* The mode of the platform's Stripe account, for the workers that apply
 * Stripe's events: an event of the other mode is recorded and changes
 * nothing. Its variable goes in their tables; ps_config_stripe_livemode
 * reads it. */
#define PS_CFG_STRIPE_MODE                                                             \
    {"PAYSTREAM_STRIPE_MODE", PS_CFG_STRING, "", 0, 0,                                \
     "test or live: the mode of the Stripe account; unset, live for an sk_live_ or "   \
     "rk_live_ STRIPE_SECRET_KEY, else test (the sandbox is test mode)"}

/* Whether the system runs in Stripe's live mode: PAYSTREAM_STRIPE_MODE, else
 * the prefix of STRIPE_SECRET_KEY (when the service sees one), else test.
 * Returns 1 (live) or 0 (test), or -1 with err when the variable is not test
 * or live or contradicts the key's prefix. */
int ps_config_stripe_livemode(char *err, size_t errlen);

/* Validates every variable of the table that is set, and that every required
 * one is. Returns 0, or -1 with a message naming the variable, the bad value
 * (never for secrets) and what is expected in err. Keeps the table for the
 * getters below, so it must outlive them (a static table). */
int ps_config_load(const ps_cfg_var_t *vars, size_t count, char *err, size_t errlen);

/* What every service does first: ps_config_load, then logging started under
 * service at PAYSTREAM_LOG_LEVEL (so the table must include PS_CFG_COMMON).
 * On a bad value prints "paystream-<service>: <reason>" on standard error
 * and returns -1; a service then exits with status 2. */
int ps_config_start(const char *service, const ps_cfg_var_t *vars, size_t count);

/* The value of a loaded variable: the environment's, else the default. The
 * returned string is owned by the environment or the table; do not free. */
const char *ps_config_str(const char *name);
int64_t ps_config_int(const char *name);
int ps_config_bool(const char *name);

/* Prints usage: the summary, then each variable with its default and help. */
void ps_config_usage(FILE *out, const char *prog, const char *summary,
                     const ps_cfg_var_t *vars, size_t count);

#endif
