/* Who is calling the API: Authorization: Bearer with either an HS256 JWT
 * signed with PAYSTREAM_JWT_SECRET (sub is the user, a scope word "admin"
 * sees everyone's data) or an API key issued by `paystream-admin apikey
 * create` and kept hashed in api_keys. Keys found valid are remembered for
 * a short while, so a revoked key stops working within KEY_CACHE_MS; keys
 * found invalid too, for less, so a client retrying a revoked key in a loop
 * costs no query. A client address whose authentications keep failing is
 * answered 429 without its keys being looked up at all: a flood of random
 * keys cannot keep the API threads and PostgreSQL busy. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "paystream/config.h"
#include "paystream/hmac.h"
#include "paystream/log.h"

#define JWT_LEEWAY_S 30
#define KEY_CACHE_SLOTS 1024
#define KEY_CACHE_MS 30000
#define KEY_NEGATIVE_MS 5000
#define KEY_ID_HEX 16
#define KEY_SECRET_HEX 40

/* Comparing hashes of 160-bit random keys: timing reveals nothing useful. */
const ps_pg_stmt_t auth_statements[] = {
    {"api_key", "SELECT actor, sandbox, admin FROM api_keys "
                "WHERE id = $1 AND secret_sha256 = $2 AND revoked_at IS NULL", 2},
};
const size_t auth_nstatements = sizeof(auth_statements) / sizeof(auth_statements[0]);

static const char *jwt_secret;
static ratelimit_t *writes, *failures; /* by actor, by client address */

/* Direct-mapped caches of keys by the SHA-256 of the whole key: the valid
 * ones with their actor, and apart (so that a flood of bad keys cannot
 * push the good ones out) the invalid ones. */
typedef struct {
    char sha256[65];
    actor_t actor;
    int64_t expires_ms;
} key_slot_t;
static key_slot_t key_cache[KEY_CACHE_SLOTS], bad_keys[KEY_CACHE_SLOTS];
static pthread_mutex_t key_cache_lock = PTHREAD_MUTEX_INITIALIZER;

void auth_limits(double writes_per_s, double writes_burst, double failures_per_s,
                 double failures_burst)
{
    writes = ratelimit_new(writes_per_s, writes_burst);
    failures = ratelimit_new(failures_per_s, failures_burst);
}

void auth_free(void)
{
    ratelimit_free(writes);
    ratelimit_free(failures);
}

int auth_init(char *err, size_t errlen)
{
    jwt_secret = ps_config_str("PAYSTREAM_JWT_SECRET");
    if (*jwt_secret != '\0' && strlen(jwt_secret) < 32) {
        snprintf(err, errlen, "PAYSTREAM_JWT_SECRET is shorter than 32 bytes; use a random one "
                              "(openssl rand -hex 32)");
        return -1;
    }
    if (*jwt_secret == '\0')
        ps_log_warn("PAYSTREAM_JWT_SECRET not set; the API accepts API keys only", NULL);
    return 0;
}

/* Answers 429 for a client with too many failed authentications lately. */
static int too_many(api_call_t *call, int retry_after)
{
    char secs[16];
    snprintf(secs, sizeof(secs), "%d", retry_after);
    http_add_header(call->req, "Retry-After", secs);
    api_errorf(call, 429, "too_many_failures", "Authorization",
               "too many failed authentications from this address; retry after %d second(s)",
               retry_after);
    return -1;
}

/* A failed authentication: counted against the client's address, and
 * answered 401, or 429 once the address has used up its failures. */
static int unauthorized(api_call_t *call, const char *code, const char *message)
{
    ps_metric_add(intake.auth_failures, "", 1);
    int wait_s = ratelimit_take(failures, call->client);
    if (wait_s > 0)
        return too_many(call, wait_s);
    http_add_header(call->req, "WWW-Authenticate", "Bearer realm=\"paystream\"");
    api_error(call, 401, code, message, "Authorization");
    return -1;
}

int auth_take_write(api_call_t *call)
{
    int wait_s = ratelimit_take(writes, call->actor.id);
    if (wait_s == 0)
        return 0;
    char secs[16];
    snprintf(secs, sizeof(secs), "%d", wait_s);
    http_add_header(call->req, "Retry-After", secs);
    api_errorf(call, 429, "rate_limited", NULL, "too many writes; retry after %d second(s)",
               wait_s);
    return -1;
}

static int hex_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return 1;
}

/* Splits psk_live_<16 hex>_<40 hex> (or psk_dev_...) into its public id
 * (everything before the last "_"); returns 0, or -1 when key has not that
 * shape. */
static int key_id(const char *key, char *id, size_t idlen, int *sandbox)
{
    size_t prefix;
    if (strncmp(key, "psk_live_", 9) == 0)
        prefix = 9, *sandbox = 0;
    else if (strncmp(key, "psk_dev_", 8) == 0)
        prefix = 8, *sandbox = 1;
    else
        return -1;
    const char *p = key + prefix;
    if (strlen(p) != KEY_ID_HEX + 1 + KEY_SECRET_HEX || p[KEY_ID_HEX] != '_' ||
        !hex_run(p, KEY_ID_HEX) || !hex_run(p + KEY_ID_HEX + 1, KEY_SECRET_HEX))
        return -1;
    size_t n = prefix + KEY_ID_HEX;
    if (n >= idlen)
        return -1;
    memcpy(id, key, n);
    id[n] = '\0';
    return 0;
}

static size_t cache_slot(const char *sha256)
{
    unsigned char b[2];
    ps_hex_decode(sha256, 4, b, sizeof(b));
    return ((size_t)b[0] << 8 | b[1]) % KEY_CACHE_SLOTS;
}

/* Whether cache holds sha256 still; copies its actor to *actor (when not
 * NULL). */
static int cache_get(key_slot_t *cache, const char *sha256, actor_t *actor)
{
    size_t slot = cache_slot(sha256);
    int hit = 0;
    pthread_mutex_lock(&key_cache_lock);
    if (strcmp(cache[slot].sha256, sha256) == 0 && cache[slot].expires_ms > ps_mono_ms()) {
        if (actor)
            *actor = cache[slot].actor;
        hit = 1;
    }
    pthread_mutex_unlock(&key_cache_lock);
    return hit;
}

static void cache_put(key_slot_t *cache, const char *sha256, const actor_t *actor, int64_t ttl_ms)
{
    size_t slot = cache_slot(sha256);
    pthread_mutex_lock(&key_cache_lock);
    memcpy(cache[slot].sha256, sha256, 65);
    cache[slot].actor = *actor;
    cache[slot].expires_ms = ps_mono_ms() + ttl_ms;
    pthread_mutex_unlock(&key_cache_lock);
}

static int authenticate_key(api_call_t *call, const char *key)
{
    char id[32], sha256[65];
    int sandbox;
    if (key_id(key, id, sizeof(id), &sandbox) < 0)
        return unauthorized(call, "invalid_api_key", "the API key is malformed");
    ps_hmac_piece_t piece = {key, strlen(key)};
    if (ps_sha256_hex(&piece, 1, sha256) < 0)
        return unauthorized(call, "invalid_api_key", "the API key cannot be checked");
    if (cache_get(key_cache, sha256, &call->actor))
        return 0;
    if (cache_get(bad_keys, sha256, NULL))
        return unauthorized(call, "invalid_api_key", "the API key is unknown or revoked");
    int wait_s = ratelimit_peek(failures, call->client);
    if (wait_s > 0)
        return too_many(call, wait_s);
    ps_metric_add(intake.key_lookups, "", 1);
    ps_pg_err_t err;
    const char *params[] = {id, sha256};
    PGresult *res = ps_pg_exec_prepared(call->pg, "api_key", 2, params, &err);
    if (res == NULL) {
        api_db_error(call, &err);
        return -1;
    }
    int found = PQntuples(res) == 1;
    if (found) {
        ps_strlcpy(call->actor.id, PQgetvalue(res, 0, 0), sizeof(call->actor.id));
        call->actor.sandbox = PQgetvalue(res, 0, 1)[0] == 't';
        call->actor.admin = PQgetvalue(res, 0, 2)[0] == 't';
        cache_put(key_cache, sha256, &call->actor, KEY_CACHE_MS);
    }
    PQclear(res);
    if (!found) {
        cache_put(bad_keys, sha256, &(actor_t){{0}, 0, 0}, KEY_NEGATIVE_MS);
        ps_log_warn("unknown or revoked API key", "key_id", id, "client", call->client, NULL);
        return unauthorized(call, "invalid_api_key", "the API key is unknown or revoked");
    }
    return 0;
}

static int authenticate_jwt(api_call_t *call, const char *token)
{
    if (*jwt_secret == '\0')
        return unauthorized(call, "invalid_token", "this server accepts API keys only");
    ps_jwt_claims_t claims;
    ps_jwt_result_t r = ps_jwt_verify(token, strlen(token), jwt_secret, (int64_t)time(NULL),
                                      JWT_LEEWAY_S, &claims);
    if (r != PS_JWT_OK) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the bearer token is not valid (%s)", ps_jwt_result_code(r));
        return unauthorized(call, "invalid_token", msg);
    }
    ps_strlcpy(call->actor.id, claims.sub, sizeof(call->actor.id));
    call->actor.admin = claims.admin;
    call->actor.sandbox = 0;
    return 0;
}

int auth_authenticate(api_call_t *call)
{
    const char *h = call->authorization;
    if (h == NULL || *h == '\0')
        return unauthorized(call, "missing_credentials",
                            "send Authorization: Bearer with a token or an API key");
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return unauthorized(call, "missing_credentials", "the Authorization scheme must be Bearer");
    const char *cred = h + 7;
    while (*cred == ' ')
        cred++;
    if (strncmp(cred, "psk_", 4) == 0)
        return authenticate_key(call, cred);
    return authenticate_jwt(call, cred);
}
