/* paystream-loadgen: posts signed Stripe payment events (or API order
 * creates) to the intake over keep-alive connections and reports throughput
 * and answer latency.
 *
 *   paystream-loadgen --url http://127.0.0.1:8080 --secret whsec_... \
 *                     --events N --connections K [--rate R] [--prefix P] [--mix stripe]
 *   paystream-loadgen --url ... --orders --token BEARER [--skus K] [--sku-prefix S]
 *                     --events N ...
 *   paystream-loadgen --url ... --payments FILE --token BEARER ...
 *
 * With --mix stripe the events are Stripe's mix (stripe_mix.h): the events
 * of payment intent pi_<P>_<k>, k = 0, 1, ..., in Stripe's order, each posted
 * as soon as a connection is free (so, as Stripe does, the events of one
 * intent may overlap). With --mix minimal (the default) each event is
 * payment_intent.succeeded of its own payment intent pi_<P>_<n>, so the
 * payments worker applies every one; with --pay FILE
 * (lines "ORDER_ID PAYMENT_ID TOTAL_MINOR") event n is the intent of the
 * payment of line n, made through the API for that order: it names the
 * payment in metadata.payment_id, as the gateway does, and pays it in full.
 * With --payments FILE (lines "ORDER_ID TOTAL_MINOR") request n is POST
 * /api/v1/payments for the order of line n (USD). With --orders each request is POST /api/v1/orders
 * (a line of one of K products sku_<n mod K>, and one of sku_gift; S instead
 * of sku_ with --sku-prefix) with
 * Prefer: wait, answered 201 once the worker has applied it. Without --rate every
 * connection posts its next event as soon as the last one is answered. With
 * --rate event n is due at start + n/R; it goes out on the first idle
 * connection, and its latency is measured from when it was due, so a stall is
 * not hidden by sending less.
 *
 * One thread drives all connections with epoll: the generator must take as
 * little of the machine as it can, since it shares it with what it measures. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "paystream/stripe_sig.h"
#include "paystream/util.h"
#include "stripe_mix.h"

enum { RESPONSE_MAX = 8192, REQUEST_MAX = MIX_EVENT_MAX + 1024 };

typedef struct {
    const char *host, *secret, *prefix, *token, *sku_prefix;
    int port, connections, orders, payments, stripe_mix;
    long events, skus;
    double rate;
    char **pay;     /* --pay or --payments FILE: a line per request */
} options_t;

typedef struct {
    int fd;
    int busy;
    int64_t due_us; /* when the event in flight was due */
    size_t len;
    char buf[RESPONSE_MAX];
} conn_t;

typedef struct {
    options_t o;
    int epfd;
    conn_t *conns;
    int *idle; /* stack of idle connection indexes */
    int nidle, nbusy;
    long next, ok, failed;
    mix_intent_t intent; /* --mix stripe: the intent of event next, and its place in it */
    long intents;
    int in_intent;
    int64_t start_us, *latencies_us;
    size_t nlat;
} run_t;

static int connect_to(const options_t *o)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
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

/* Opens connection i (blocking connect on loopback) and registers it. */
static int open_conn(run_t *r, int i)
{
    conn_t *c = &r->conns[i];
    c->fd = connect_to(&r->o);
    c->len = 0;
    if (c->fd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    return epoll_ctl(r->epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static int64_t due_at(const run_t *r, long n)
{
    return r->o.rate > 0 ? r->start_us + (int64_t)((double)n * 1e6 / r->o.rate) : ps_mono_us();
}

/* Writes order create n as one request (see send_event). */
static int send_order(const run_t *r, int fd, long n)
{
    const options_t *o = &r->o;
    char body[384], req[REQUEST_MAX];
    int blen = snprintf(body, sizeof(body),
                        "{\"currency\":\"usd\",\"items\":[{\"product_id\":\"%s%ld\",\"quantity\":%ld,"
                        "\"unit_price\":\"19.99\"},{\"product_id\":\"%sgift\",\"quantity\":1,"
                        "\"unit_price\":\"2.50\"}],\"metadata\":{\"run\":\"%s\"}}",
                        o->sku_prefix, n % o->skus, 1 + n % 5, o->sku_prefix, o->prefix);
    if (blen >= (int)sizeof(body))
        return -1;
    int hlen = snprintf(req, sizeof(req),
                        "POST /api/v1/orders HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                        "Authorization: Bearer %s\r\nPrefer: wait=10\r\nContent-Length: %d\r\n\r\n%s",
                        o->host, o->token, blen, body);
    if (hlen >= (int)sizeof(req))
        return -1;
    return write(fd, req, (size_t)hlen) == hlen ? 0 : -1;
}

/* Writes payment create n (for the order of line n) as one request. */
static int send_payment(const run_t *r, int fd, long n)
{
    const options_t *o = &r->o;
    char body[256], req[REQUEST_MAX], order[64];
    long total;
    if (sscanf(o->pay[n], "%63s %ld", order, &total) != 2)
        return -1;
    int blen = snprintf(body, sizeof(body),
                        "{\"order_id\":\"%s\",\"amount\":\"%ld.%02ld\",\"currency\":\"usd\"}",
                        order, total / 100, total % 100);
    int hlen = snprintf(req, sizeof(req),
                        "POST /api/v1/payments HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                        "Authorization: Bearer %s\r\nPrefer: wait=10\r\nContent-Length: %d\r\n\r\n%s",
                        o->host, o->token, blen, body);
    if (hlen >= (int)sizeof(req))
        return -1;
    return write(fd, req, (size_t)hlen) == hlen ? 0 : -1;
}

/* Writes the request of a signed event body. */
static int send_signed(const options_t *o, int fd, const char *body, size_t blen, int64_t now)
{
    char sig[PS_SIG_HEADER_MAX], req[REQUEST_MAX];
    ps_sig_sign(o->secret, body, blen, now, sig, sizeof(sig));
    int hlen = snprintf(req, sizeof(req),
                        "POST /webhooks/stripe HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                        "Stripe-Signature: %s\r\nContent-Length: %zu\r\n\r\n%s",
                        o->host, sig, blen, body);
    if (hlen >= (int)sizeof(req))
        return -1;
    return write(fd, req, (size_t)hlen) == hlen ? 0 : -1;
}

/* --mix stripe: the next event of Stripe's mix, intent after intent. */
static int send_mix_event(run_t *r, int fd)
{
    int64_t now = time(NULL);
    if (r->in_intent == r->intent.nevents) {
        mix_intent(&r->intent, r->o.prefix, r->intents++, 1, now);
        r->in_intent = 0;
    }
    char body[MIX_EVENT_MAX], id[64];
    size_t blen = mix_event(&r->intent, r->in_intent++, body, id);
    return send_signed(&r->o, fd, body, blen, now);
}

/* Writes event n as one request. A request is far below a socket buffer and
 * the connection has nothing else in flight, so one blocking write is whole. */
static int send_event(run_t *r, int fd, long n)
{
    const options_t *o = &r->o;
    if (o->orders)
        return send_order(r, fd, n);
    if (o->payments)
        return send_payment(r, fd, n);
    if (o->stripe_mix)
        return send_mix_event(r, fd);
    char body[640], metadata[192] = "";
    long amount = 1000 + n % 9000;
    /* With --pay, event n pays the payment of line n in full. */
    char order[64], payment[64];
    if (o->pay && sscanf(o->pay[n], "%63s %63s %ld", order, payment, &amount) == 3)
        snprintf(metadata, sizeof(metadata),
                 "\"metadata\":{\"payment_id\":\"%s\",\"order_id\":\"%s\"},", payment, order);
    int64_t now = time(NULL);
    int blen = snprintf(body, sizeof(body),
                        "{\"id\":\"evt_%s_%ld\",\"object\":\"event\",\"type\":\"payment_intent.succeeded\","
                        "\"created\":%lld,\"livemode\":false,\"data\":{\"object\":{\"id\":\"pi_%s_%ld\","
                        "\"object\":\"payment_intent\",\"amount\":%ld,\"amount_received\":%ld,%s"
                        "\"currency\":\"usd\",\"status\":\"succeeded\",\"latest_charge\":\"ch_%s_%ld\"}}}",
                        o->prefix, n, (long long)now, o->prefix, n, amount, amount, metadata,
                        o->prefix, n);
    return send_signed(o, fd, body, (size_t)blen, now);
}

/* Records the answer of connection i (status, or -1 for a broken connection)
 * and makes the connection idle again, reopening a broken one. */
static void finish(run_t *r, int i, int status)
{
    conn_t *c = &r->conns[i];
    c->busy = 0;
    r->nbusy--;
    c->len = 0;
    if (status == (r->o.orders || r->o.payments ? 201 : 200)) {
        r->ok++;
        r->latencies_us[r->nlat++] = ps_mono_us() - c->due_us;
    } else {
        r->failed++;
        close(c->fd); /* also takes it out of the epoll set */
        if (open_conn(r, i) < 0) {
            c->fd = -1;
            return; /* gone for good: the others carry on */
        }
    }
    r->idle[r->nidle++] = i;
}

/* Status of a whole response in buf, 0 while it is incomplete. */
static int response_status(const char *buf, size_t len)
{
    const char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL)
        return 0;
    const char *cl = strcasestr(buf, "Content-Length:");
    size_t body = cl != NULL && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
    if (len < (size_t)(end + 4 - buf) + body)
        return 0;
    int status = atoi(buf + 9);
    return status > 0 ? status : -1;
}

static void on_readable(run_t *r, int i)
{
    conn_t *c = &r->conns[i];
    ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len - 1);
    if (n <= 0 || !c->busy) {
        if (n < 0 && errno == EINTR)
            return;
        if (c->busy) {
            finish(r, i, -1);
        } else { /* the server closed an idle keep-alive connection */
            close(c->fd);
            c->fd = -1;
        }
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    int status = response_status(c->buf, c->len);
    if (status != 0 || c->len + 1 >= sizeof(c->buf))
        finish(r, i, status != 0 ? status : -1);
}

/* Sends every event that is due on the idle connections. */
static void send_due(run_t *r)
{
    while (r->next < r->o.events && r->nidle > 0) {
        int64_t due = due_at(r, r->next);
        if (due > ps_mono_us())
            return;
        int i = r->idle[--r->nidle];
        conn_t *c = &r->conns[i];
        if (c->fd < 0 && open_conn(r, i) < 0) {
            c->fd = -1;
            r->failed++;
            r->next++;
            r->idle[r->nidle++] = i;
            continue;
        }
        c->busy = 1;
        c->due_us = due;
        r->nbusy++;
        if (send_event(r, c->fd, r->next++) < 0)
            finish(r, i, -1);
    }
}

/* How long epoll may sleep: until the next event is due, or for an answer. */
static struct timespec next_wait(const run_t *r)
{
    int64_t wait = 1000000;
    if (r->o.rate > 0 && r->next < r->o.events && r->nidle > 0) {
        wait = due_at(r, r->next) - ps_mono_us();
        if (wait < 0)
            wait = 0;
    }
    return (struct timespec){.tv_sec = wait / 1000000, .tv_nsec = (long)(wait % 1000000) * 1000};
}

static void run(run_t *r)
{
    struct epoll_event evs[256];
    r->start_us = ps_mono_us();
    while (r->next < r->o.events || r->nbusy > 0) {
        send_due(r);
        struct timespec ts = next_wait(r);
        int n = epoll_pwait2(r->epfd, evs, 256, &ts, NULL);
        for (int k = 0; k < n; k++)
            on_readable(r, (int)evs[k].data.u32);
        if (r->nidle == 0 && r->nbusy == 0)
            break; /* every connection is gone */
    }
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

/* One JSON line: what was answered, how fast, and the CPU this generator
 * itself spent (cpu_s), which shares the machine with the system it loads. */
static void report(run_t *r)
{
    double seconds = (double)(ps_mono_us() - r->start_us) / 1e6;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_s = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                   (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    size_t n = r->nlat;
    qsort(r->latencies_us, n, sizeof(int64_t), cmp_i64);
    double p50 = n ? r->latencies_us[n / 2] / 1000.0 : 0;
    double p99 = n ? r->latencies_us[n * 99 / 100] / 1000.0 : 0;
    printf("{\"events\":%ld,\"ok\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"requests_per_s\":%.0f,"
           "\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,\"cpu_s\":%.3f}\n",
           r->o.events, r->ok, r->failed, seconds, (double)r->ok / seconds, p50, p99,
           n ? r->latencies_us[n - 1] / 1000.0 : 0, cpu_s);
}

/* The lines of path (newlines cut), their count in *n. */
static char **read_lines(const char *path, long *n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char **lines = NULL, *line = NULL;
    size_t cap = 0;
    *n = 0;
    while (getline(&line, &cap, f) > 0) {
        lines = realloc(lines, (size_t)(*n + 1) * sizeof(*lines));
        if (lines == NULL)
            abort(); /* only for want of memory */
        line[strcspn(line, "\n")] = '\0';
        lines[(*n)++] = strdup(line);
    }
    free(line);
    fclose(f);
    return lines;
}

int main(int argc, char **argv)
{
    run_t r = {.o = {.connections = 16, .events = 10000, .prefix = "bench", .skus = 500,
                     .sku_prefix = "sku_"}};
    const char *pay = NULL, *mix = "minimal";
    const char *url = "http://127.0.0.1:8080";
    for (int i = 1; i < argc; i += 2) {
        if (strcmp(argv[i], "--orders") == 0) {
            r.o.orders = 1;
            i--; /* takes no value */
            continue;
        }
        if (i + 1 >= argc) break;
        if (strcmp(argv[i], "--url") == 0) url = argv[i + 1];
        else if (strcmp(argv[i], "--token") == 0) r.o.token = argv[i + 1];
        else if (strcmp(argv[i], "--secret") == 0) r.o.secret = argv[i + 1];
        else if (strcmp(argv[i], "--events") == 0) r.o.events = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--connections") == 0) r.o.connections = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rate") == 0) r.o.rate = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--prefix") == 0) r.o.prefix = argv[i + 1];
        else if (strcmp(argv[i], "--skus") == 0) r.o.skus = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--sku-prefix") == 0) r.o.sku_prefix = argv[i + 1];
        else if (strcmp(argv[i], "--pay") == 0) pay = argv[i + 1];
        else if (strcmp(argv[i], "--payments") == 0) pay = argv[i + 1], r.o.payments = 1;
        else if (strcmp(argv[i], "--mix") == 0) mix = argv[i + 1];
    }
    if (pay && (r.o.pay = read_lines(pay, &r.o.events)) == NULL) {
        fprintf(stderr, "paystream-loadgen: cannot read %s\n", pay);
        return 1;
    }
    if ((r.o.orders || r.o.payments ? r.o.token == NULL : r.o.secret == NULL) ||
        parse_url(url, &r.o) < 0 ||
        r.o.events < 1 || r.o.connections < 1 || r.o.skus < 1 ||
        (strcmp(mix, "stripe") != 0 && strcmp(mix, "minimal") != 0)) {
        fprintf(stderr, "usage: paystream-loadgen --url http://HOST:PORT (--secret S [--pay FILE] | "
                        "--orders --token T [--skus K] [--sku-prefix S] | "
                        "--payments FILE --token T) [--mix stripe|minimal] [--events N] "
                        "[--connections K] [--rate R] [--prefix P]\n");
        return 2;
    }
    r.o.stripe_mix = strcmp(mix, "stripe") == 0;
    r.epfd = epoll_create1(0);
    r.conns = ps_xcalloc((size_t)r.o.connections, sizeof(*r.conns));
    r.idle = ps_xcalloc((size_t)r.o.connections, sizeof(*r.idle));
    r.latencies_us = ps_xcalloc((size_t)r.o.events, sizeof(int64_t));
    for (int i = 0; i < r.o.connections; i++) {
        if (open_conn(&r, i) < 0) {
            fprintf(stderr, "paystream-loadgen: cannot connect to %s\n", url);
            return 1;
        }
        r.idle[r.nidle++] = i;
    }
    run(&r);
    report(&r);
    for (int i = 0; i < r.o.connections; i++)
        if (r.conns[i].fd >= 0)
            close(r.conns[i].fd);
    free(r.conns);
    free(r.idle);
    free(r.latencies_us);
    return r.failed || r.ok + r.failed < r.o.events ? 1 : 0;
}
