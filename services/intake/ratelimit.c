/* The per-actor limit on API writes: a token bucket per actor, refilled at
 * PAYSTREAM_RATE_LIMIT_PER_S up to PAYSTREAM_RATE_LIMIT_BURST. Buckets live
 * in a fixed open-addressed table; when it is full, the least recently used
 * of a few neighbours is given to the new actor (a full bucket, so nobody is
 * limited more than the rules say). The limit is per intake process. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "api.h"

#define SLOTS 4096
#define PROBES 8

static struct {
    char actor[PS_JWT_SUB_MAX + 1];
    double tokens;
    int64_t at_us; /* when tokens was computed */
} buckets[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static double rate, burst;

void ratelimit_init(double per_second, double size)
{
    rate = per_second;
    burst = size;
}

static size_t hash(const char *s)
{
    size_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* The slot of actor's bucket: its own, else an empty one, else the least
 * recently used of the probed ones (reset to a full bucket). */
static size_t slot_for(const char *actor, int64_t now)
{
    size_t start = hash(actor) % SLOTS, oldest = start;
    for (size_t i = 0; i < PROBES; i++) {
        size_t s = (start + i) % SLOTS;
        if (strcmp(buckets[s].actor, actor) == 0)
            return s;
        if (buckets[s].actor[0] == '\0' || buckets[s].at_us < buckets[oldest].at_us) {
            oldest = s;
            if (buckets[s].actor[0] == '\0')
                break;
        }
    }
    ps_strlcpy(buckets[oldest].actor, actor, sizeof(buckets[oldest].actor));
    buckets[oldest].tokens = burst;
    buckets[oldest].at_us = now;
    return oldest;
}

int ratelimit_take(const char *actor)
{
    if (rate <= 0)
        return 0;
    int64_t now = ps_mono_us();
    int wait_s = 0;
    pthread_mutex_lock(&lock);
    size_t s = slot_for(actor, now);
    double tokens = buckets[s].tokens + rate * (double)(now - buckets[s].at_us) / 1e6;
    if (tokens > burst)
        tokens = burst;
    if (tokens >= 1) {
        tokens -= 1;
    } else {
        wait_s = (int)ceil((1 - tokens) / rate);
        if (wait_s < 1)
            wait_s = 1;
    }
    buckets[s].tokens = tokens;
    buckets[s].at_us = now;
    pthread_mutex_unlock(&lock);
    return wait_s;
}
