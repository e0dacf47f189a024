/* paystream-loadgen: posts signed Stripe payment events to the intake over
 * keep-alive connections and reports throughput and answer latency.
 *
 *   paystream-loadgen --url http://127.0.0.1:8080 --secret whsec_... \
 *                     --events N --connections K [--rate R] [--prefix P]
 *
 * Each event is payment_intent.succeeded of its own payment intent
 * pi_<P>_<n>, so the payments worker applies every one. With --rate the
 * connections together send R events per second on a fixed schedule, and
 * latency is measured from each event's scheduled time (so a stall is not
 * hidden by sending less). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "paystream/stripe_sig.h"
#include "paystream/util.h"

typedef struct {
    const char *host, *secret, *prefix;
    int port, connections;
    long events;
    double rate;
    int64_t start_us;
} options_t;

typedef struct {
    const options_t *o;
    int index;
    long sent, ok, failed;
    int64_t *latencies_us;
    size_t nlat;
} worker_t;

static int connect_to(const options_t *o)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    inet_pton(AF_INET, o->host, &sa.sin_addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads one HTTP response; returns its status or -1. */
static int read_response(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    char *end = NULL;
    while (end == NULL) {
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    const char *cl = strcasestr(buf, "Content-Length:");
    size_t body = cl ? strtoul(cl + 15, NULL, 10) : 0;
    size_t want = (size_t)(end + 4 - buf) + body;
    while (len < want) {
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
    return atoi(buf + 9);
}

static int send_event(int fd, const options_t *o, long n, char *buf, size_t cap)
{
    char body[512], sig[PS_SIG_HEADER_MAX];
    int64_t now = time(NULL);
    int blen = snprintf(body, sizeof(body),
                        "{\"id\":\"evt_%s_%ld\",\"object\":\"event\",\"type\":\"payment_intent.succeeded\","
                        "\"created\":%lld,\"livemode\":false,\"data\":{\"object\":{\"id\":\"pi_%s_%ld\","
                        "\"object\":\"payment_intent\",\"amount\":%ld,\"amount_received\":%ld,"
                        "\"currency\":\"usd\",\"status\":\"succeeded\",\"latest_charge\":\"ch_%s_%ld\"}}}",
                        o->prefix, n, (long long)now, o->prefix, n, 1000 + n % 9000,
                        1000 + n % 9000, o->prefix, n);
    ps_sig_sign(o->secret, body, (size_t)blen, now, sig, sizeof(sig));
    int hlen = snprintf(buf, cap,
                        "POST /webhooks/stripe HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                        "Stripe-Signature: %s\r\nContent-Length: %d\r\n\r\n%s",
                        o->host, sig, blen, body);
    return write(fd, buf, (size_t)hlen) == hlen ? 0 : -1;
}

static void *run_worker(void *arg)
{
    worker_t *w = arg;
    const options_t *o = w->o;
    char buf[8192];
    int fd = connect_to(o);
    for (long n = w->index; n < o->events; n += o->connections) {
        int64_t scheduled = ps_mono_us();
        if (o->rate > 0) {
            scheduled = o->start_us + (int64_t)((double)n * 1e6 / o->rate);
            int64_t wait = scheduled - ps_mono_us();
            if (wait > 0)
                usleep((useconds_t)wait);
        }
        if (fd < 0)
            fd = connect_to(o);
        int status = fd < 0 || send_event(fd, o, n, buf, sizeof(buf)) < 0
                         ? -1 : read_response(fd, buf, sizeof(buf));
        w->sent++;
        if (status == 200) {
            w->ok++;
            w->latencies_us[w->nlat++] = ps_mono_us() - scheduled;
        } else {
            w->failed++;
            if (fd >= 0)
                close(fd);
            fd = -1;
        }
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int parse_url(const char *url, options_t *o)
{
    static char host[64];
    if (sscanf(url, "http://%63[^:]:%d", host, &o->port) != 2)
        return -1;
    o->host = host;
    return 0;
}

int main(int argc, char **argv)
{
    options_t o = {.connections = 16, .events = 10000, .prefix = "bench"};
    const char *url = "http://127.0.0.1:8080";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--url") == 0) url = argv[i + 1];
        else if (strcmp(argv[i], "--secret") == 0) o.secret = argv[i + 1];
        else if (strcmp(argv[i], "--events") == 0) o.events = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--connections") == 0) o.connections = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rate") == 0) o.rate = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--prefix") == 0) o.prefix = argv[i + 1];
    }
    if (o.secret == NULL || parse_url(url, &o) < 0 || o.events < 1 || o.connections < 1) {
        fprintf(stderr, "usage: paystream-loadgen --url http://HOST:PORT --secret S "
                        "[--events N] [--connections K] [--rate R] [--prefix P]\n");
        return 2;
    }
    worker_t *ws = calloc((size_t)o.connections, sizeof(*ws));
    pthread_t *ts = calloc((size_t)o.connections, sizeof(*ts));
    o.start_us = ps_mono_us();
    for (int i = 0; i < o.connections; i++) {
        ws[i] = (worker_t){.o = &o, .index = i,
                           .latencies_us = calloc((size_t)(o.events / o.connections + 2), sizeof(int64_t))};
        pthread_create(&ts[i], NULL, run_worker, &ws[i]);
    }
    long ok = 0, failed = 0;
    size_t nlat = 0;
    for (int i = 0; i < o.connections; i++) {
        pthread_join(ts[i], NULL);
        ok += ws[i].ok;
        failed += ws[i].failed;
        nlat += ws[i].nlat;
    }
    double seconds = (double)(ps_mono_us() - o.start_us) / 1e6;
    int64_t *all = calloc(nlat + 1, sizeof(int64_t));
    size_t k = 0;
    for (int i = 0; i < o.connections; i++) {
        memcpy(all + k, ws[i].latencies_us, ws[i].nlat * sizeof(int64_t));
        k += ws[i].nlat;
        free(ws[i].latencies_us);
    }
    qsort(all, nlat, sizeof(int64_t), cmp_i64);
    double p50 = nlat ? all[nlat / 2] / 1000.0 : 0, p99 = nlat ? all[nlat * 99 / 100] / 1000.0 : 0;
    printf("{\"events\":%ld,\"ok\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"requests_per_s\":%.0f,"
           "\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f}\n",
           o.events, ok, failed, seconds, (double)ok / seconds, p50, p99,
           nlat ? all[nlat - 1] / 1000.0 : 0);
    free(all);
    free(ws);
    free(ts);
    return failed ? 1 : 0;
}
