/* Who is calling the API and how much they may do: authentication
 * (auth.c) and the token buckets behind its limits (ratelimit.c). */
#ifndef PAYSTREAM_INTAKE_AUTH_H
#define PAYSTREAM_INTAKE_AUTH_H

#include <stddef.h>

#include "call.h"

/* The statements auth.c runs on an API thread's connection. */
extern const ps_pg_stmt_t auth_statements[];
extern const size_t auth_nstatements;

/* Reads PAYSTREAM_JWT_SECRET; returns 0, or -1 with err for a weak one. */
int auth_init(char *err, size_t errlen);

/* The limits on API writes per actor and on failed authentications per
 * client address (see ratelimit_new). */
void auth_limits(double writes_per_s, double writes_burst, double failures_per_s,
                 double failures_burst);
void auth_free(void);

/* Fills call->actor from the Authorization header; returns 0, or -1 after
 * answering 401 (or 429 for a client address with too many failures
 * lately: its keys are not even looked up). */
int auth_authenticate(api_call_t *call);

/* Takes a write token of the caller's; returns 0, or -1 after answering
 * 429. */
int auth_take_write(api_call_t *call);

/* ratelimit.c: token buckets by key (an actor id, a client address), each
 * refilled at per_second up to burst; per_second 0 limits nothing. Free
 * with ratelimit_free. Thread-safe. */
typedef struct ratelimit ratelimit_t;
ratelimit_t *ratelimit_new(double per_second, double burst);
void ratelimit_free(ratelimit_t *rl);
/* Takes one token of key's bucket. Returns 0, or the seconds until a token
 * is free (rounded up) when the bucket is empty. */
int ratelimit_take(ratelimit_t *rl, const char *key);
/* The same without taking the token. */
int ratelimit_peek(ratelimit_t *rl, const char *key);

#endif
