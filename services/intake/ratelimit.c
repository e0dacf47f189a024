/* Token buckets by key: the per-actor limit on API writes and the
 * per-address limit on failed authentications. Buckets live in a fixed
 * open-addressed table per limit; when it is full, the least recently used
 * of a few neighbours is given to the new key (a full bucket, so nobody is
 * limited more than the rules say). The limits are per intake process. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

#define SLOTS 4096
#define PROBES 8
#define KEY_MAX PS_JWT_SUB_MAX /* an actor id, or a client address */

struct ratelimit {
    pthread_mutex_t lock;
    double rate, burst;
    struct {
        char key[KEY_MAX + 1];
        double tokens;
        int64_t at_us; /* when tokens was computed */
    } buckets[SLOTS];
};

ratelimit_t *ratelimit_new(double per_second, double burst)
{
    ratelimit_t *rl = ps_xcalloc(1, sizeof(*rl));
    pthread_mutex_init(&rl->lock, NULL);
    rl->rate = per_second;
    rl->burst = burst;
    return rl;
}

void ratelimit_free(ratelimit_t *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

static size_t hash(const char *s)
{
    size_t h = 14695981039346656037u; /* FNV-1a */
    for (size_t i = 0; s[i] && i < KEY_MAX; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211u;
    return h;
}

/* The slot of key's bucket, refilled up to now: its own, else an empty one,
 * else the least recently used of the probed ones (reset to a full bucket). */
static size_t slot_for(ratelimit_t *rl, const char *key, int64_t now)
{
    size_t start = hash(key) % SLOTS, slot = start;
    int found = 0;
    for (size_t i = 0; i < PROBES && !found; i++) {
        size_t s = (start + i) % SLOTS;
        if (strncmp(rl->buckets[s].key, key, KEY_MAX) == 0) {
            slot = s;
            found = 1;
        } else if (rl->buckets[s].key[0] == '\0' ||
                   rl->buckets[s].at_us < rl->buckets[slot].at_us) {
            slot = s;
            if (rl->buckets[s].key[0] == '\0')
                break;
        }
    }
    if (!found) {
        ps_strlcpy(rl->buckets[slot].key, key, sizeof(rl->buckets[slot].key));
        rl->buckets[slot].tokens = rl->burst;
        rl->buckets[slot].at_us = now;
    }
    double tokens = rl->buckets[slot].tokens +
                    rl->rate * (double)(now - rl->buckets[slot].at_us) / 1e6;
    rl->buckets[slot].tokens = tokens > rl->burst ? rl->burst : tokens;
    rl->buckets[slot].at_us = now;
    return slot;
}

/* Seconds until key's bucket has a token again, rounded up (0: it has one
 * now); takes it when take is set and there is one. */
static int bucket(ratelimit_t *rl, const char *key, int take)
{
    if (rl == NULL || rl->rate <= 0)
        return 0;
    int wait_s = 0;
    pthread_mutex_lock(&rl->lock);
    size_t s = slot_for(rl, key, ps_mono_us());
    double tokens = rl->buckets[s].tokens;
    if (tokens >= 1) {
        rl->buckets[s].tokens -= take ? 1 : 0;
    } else {
        wait_s = (int)ceil((1 - tokens) / rl->rate);
        if (wait_s < 1)
            wait_s = 1;
    }
    pthread_mutex_unlock(&rl->lock);
    return wait_s;
}

int ratelimit_take(ratelimit_t *rl, const char *key)
{
    return bucket(rl, key, 1);
}

int ratelimit_peek(ratelimit_t *rl, const char *key)
{
    return bucket(rl, key, 0);
}
