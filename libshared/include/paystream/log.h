/* Structured logging: one JSON object per line on standard error, with
 * secrets, tokens and card numbers redacted before they are written. */
#ifndef PAYSTREAM_LOG_H
#define PAYSTREAM_LOG_H

#include <stddef.h>

typedef enum { PS_LOG_DEBUG, PS_LOG_INFO, PS_LOG_WARN, PS_LOG_ERROR } ps_log_level_t;

/* Sets the service name put on every line and the lowest level written. */
void ps_log_init(const char *service, ps_log_level_t min_level);

/* Parses "debug", "info", "warn" or "error"; returns 0, or -1. */
int ps_log_level_parse(const char *text, ps_log_level_t *level);

/* Writes {"ts":..,"level":..,"service":..,"msg":msg, key: value, ...}.
 * The variadic arguments are pairs of const char * key and value, ended by
 * a single NULL; a NULL value is written as JSON null. Each line is written
 * with one write(2), so lines of concurrent threads never interleave. */
void ps_log(ps_log_level_t level, const char *msg, ...) __attribute__((sentinel));

/* The same with the pairs in kv, ended by a NULL key. */
void ps_log_kv(ps_log_level_t level, const char *msg, const char *const *kv);

/* Fields of one line beyond which ps_log drops the rest. */
#define PS_LOG_MAX_FIELDS 24

#define ps_log_debug(...) ps_log(PS_LOG_DEBUG, __VA_ARGS__)
#define ps_log_info(...) ps_log(PS_LOG_INFO, __VA_ARGS__)
#define ps_log_warn(...) ps_log(PS_LOG_WARN, __VA_ARGS__)
#define ps_log_error(...) ps_log(PS_LOG_ERROR, __VA_ARGS__)

/* Writes into out (always NUL-terminated) what a log line may show of value
 * under key: "[redacted]" for keys that name secrets (secret, password,
 * token, authorization, api_key, card, signature, ...); otherwise value with
 * these masked: Stripe secret keys and webhook secrets (sk_, rk_, whsec_),
 * paystream's API keys (psk_) and subscribers' signing secrets (pswh_),
 * bearer tokens (in any case), JWT-shaped tokens, and card numbers (13-19
 * digits passing the Luhn check, together or in groups separated by spaces
 * or dashes). Exposed for the tests. */
void ps_log_redact(const char *key, const char *value, char *out, size_t outlen);

#endif
