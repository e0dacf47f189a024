/* Small helpers every module needs: time, ids, hex, bounded string copies. */
#ifndef PAYSTREAM_UTIL_H
#define PAYSTREAM_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PS_UUID_LEN 36 /* characters, without the terminating NUL */

/* Milliseconds since the Unix epoch (wall clock). */
int64_t ps_now_ms(void);

/* Milliseconds from a monotonic clock: for measuring durations only. */
int64_t ps_mono_ms(void);

/* Microseconds from a monotonic clock: for latency histograms. */
int64_t ps_mono_us(void);

/* Writes a random version-4 UUID into out (at least PS_UUID_LEN + 1 bytes). */
void ps_uuid_v4(char *out);

/* Fills buf with len bytes from the kernel's random source. */
void ps_random_bytes(void *buf, size_t len);

#define PS_ORDERED_HEX_LEN 32
/* Writes 32 lowercase hex digits: the wall-clock time in microseconds (14
 * digits), then 72 random bits. Later ids sort later, so an index keyed by
 * them takes new rows at its right end (the same shape as ps_new_id in
 * schemas/migrations/0001_baseline.sql). out holds at least PS_ORDERED_HEX_LEN + 1 bytes. */
void ps_ordered_hex(char *out);

/* Lowercase hex bytes into out (at least 2 * len + 1 bytes). */
void ps_hex_encode(const unsigned char *in, size_t len, char *out);

/* Decodes exactly 2 * outlen hex characters from in; returns 0, or -1 when
 * in is not that many hex digits. */
int ps_hex_decode(const char *in, size_t inlen, unsigned char *out, size_t outlen);

/* Copies src into dst of size dstlen, always NUL-terminated; returns the
 * length of src so callers can detect truncation (as BSD strlcpy). */
size_t ps_strlcpy(char *dst, const char *src, size_t dstlen);

/* Whether word (not empty) is one of the space-separated words of list. */
int ps_has_word(const char *list, const char *word);

/* Whether s is 1 to maxlen bytes of printable ASCII without spaces (an
 * idempotency key, a usage record's identifier). */
int ps_is_token(const char *s, size_t maxlen);

/* Bytes received, growing as they come: the write callback of a libcurl
 * transfer is ps_buf_write with a ps_buf_t as its data. data stays
 * NUL-terminated (NULL while empty); past max bytes the callback refuses,
 * which fails the transfer. Free data with free(). */
typedef struct {
    char *data;
    size_t len, max;
} ps_buf_t;
size_t ps_buf_write(char *data, size_t size, size_t n, void *buf);

/* addr, an IPv4 ("127.0.0.1", "0.0.0.0") or IPv6 ("::1", "::") address,
 * and port as a socket address in out. Returns its family (AF_INET or
 * AF_INET6), or -1 when addr is neither. */
int ps_sockaddr(const char *addr, int port, struct sockaddr_storage *out);

/* Sleeps for ms milliseconds, returning early only on shutdown signals. */
void ps_sleep_ms(int64_t ms);

/* The backoff before retry number attempt (0-based): base * 2^attempt,
 * capped at cap_ms, with up to 20% random jitter so that workers retrying the
 * same resource do not do it in lockstep. */
int64_t ps_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms);

/* How a process's malloc is set. By default glibc gives each thread that
 * allocates an arena of its own (librdkafka runs a thread per broker and
 * more), and a service's memory creeps up to half again as much; and it
 * raises the mmap threshold after the first large buffer freed, keeping
 * every later one in the heap. Both kinds cap the arenas and fix the
 * threshold:
 *   PS_MALLOC_SERVE   two arenas, buffers from 256 KB mapped: the intake,
 *                     whose threads allocate for every request (one arena
 *                     and 64 KB cost it 4 us per event more in a burst);
 *   PS_MALLOC_WORKER  one arena, buffers from 64 KB mapped: a worker that
 *                     holds a batch being applied and one polled ahead, and
 *                     librdkafka's message sets (tens to hundreds of KB,
 *                     each kept until its last message is destroyed), which
 *                     fragment the heap otherwise (two arenas and 256 KB let
 *                     the payments worker peak at 31.6 MiB in a burst).
 * Call first thing in main, before any thread starts. */
typedef enum { PS_MALLOC_SERVE, PS_MALLOC_WORKER } ps_malloc_kind_t;
void ps_malloc_tune(ps_malloc_kind_t kind);

/* Copies src into dst (dstlen bytes, NUL-terminated) with every byte that
 * is not printable ASCII replaced by '?': for text from a request (a field's
 * name, a parser's quote of the body) put into an answer or a log line. */
void ps_printable(char *dst, const char *src, size_t dstlen);

/* malloc, calloc, realloc and strdup that abort the process when memory
 * runs out: paystream's one policy for it. A worker that cannot allocate
 * restarts from its committed offsets, and the intake from nothing it
 * acknowledged, rather than carry on without the work it could not hold. */
void *ps_xmalloc(size_t size);
void *ps_xcalloc(size_t n, size_t size);
void *ps_xrealloc(void *p, size_t size);
char *ps_xstrdup(const char *s);
char *ps_xstrndup(const char *s, size_t n);

#endif
