#include "paystream/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paystream/util.h"

/* Room for every route of the intake with every status it answers (23
 * routes, a dozen statuses) before anything goes to overflow="true". A
 * metric's series are one allocation whose pages are touched as they fill. */
#define MAX_SERIES 512
#define MAX_BOUNDS 16
#define LABELS_MAX 128

typedef enum { KIND_COUNTER, KIND_HISTOGRAM, KIND_GAUGE } kind_t;

typedef struct {
    char labels[LABELS_MAX];
    int64_t value;                   /* counter */
    double gauge;                    /* gauge */
    uint64_t buckets[MAX_BOUNDS + 1]; /* histogram: per bucket, last is +Inf */
    double sum;
    uint64_t count;
} series_t;

struct ps_metric {
    const char *name, *help;
    kind_t kind;
    double bounds[MAX_BOUNDS];
    size_t nbounds;
    series_t series[MAX_SERIES];
    size_t nseries;
    pthread_mutex_t lock;
};

static ps_metric_t *registry[PS_METRICS_MAX];
static size_t registry_count;

static ps_metric_t *metric_new(const char *name, const char *help, kind_t kind)
{
    if (registry_count == PS_METRICS_MAX)
        return NULL;
    ps_metric_t *m = ps_xcalloc(1, sizeof(*m));
    m->name = name;
    m->help = help;
    m->kind = kind;
    pthread_mutex_init(&m->lock, NULL);
    registry[registry_count++] = m;
    return m;
}

ps_metric_t *ps_metric_counter(const char *name, const char *help)
{
    return metric_new(name, help, KIND_COUNTER);
}

ps_metric_t *ps_metric_gauge(const char *name, const char *help)
{
    return metric_new(name, help, KIND_GAUGE);
}

ps_metric_t *ps_metric_histogram(const char *name, const char *help,
                                 const double *bounds, size_t nbounds)
{
    ps_metric_t *m = metric_new(name, help, KIND_HISTOGRAM);
    if (m == NULL)
        return NULL;
    m->nbounds = nbounds < MAX_BOUNDS ? nbounds : MAX_BOUNDS;
    memcpy(m->bounds, bounds, m->nbounds * sizeof(double));
    return m;
}

/* Finds or adds the series for labels; call with m->lock held. */
static series_t *series_get(ps_metric_t *m, const char *labels)
{
    for (size_t i = 0; i < m->nseries; i++) {
        if (strcmp(m->series[i].labels, labels) == 0)
            return &m->series[i];
    }
    if (m->nseries >= MAX_SERIES - 1 || strlen(labels) >= LABELS_MAX)
        labels = "overflow=\"true\"";
    for (size_t i = 0; i < m->nseries; i++) {
        if (strcmp(m->series[i].labels, labels) == 0)
            return &m->series[i];
    }
    series_t *s = &m->series[m->nseries++];
    snprintf(s->labels, sizeof(s->labels), "%s", labels);
    return s;
}

void ps_metric_add(ps_metric_t *m, const char *labels, uint64_t n)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    series_get(m, labels)->value += (int64_t)n;
    pthread_mutex_unlock(&m->lock);
}

void ps_metric_set(ps_metric_t *m, const char *labels, double value)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    series_get(m, labels)->gauge = value;
    pthread_mutex_unlock(&m->lock);
}

void ps_metric_observe(ps_metric_t *m, const char *labels, double value)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    series_t *s = series_get(m, labels);
    size_t b = 0;
    while (b < m->nbounds && value > m->bounds[b])
        b++;
    s->buckets[b]++;
    s->sum += value;
    s->count++;
    pthread_mutex_unlock(&m->lock);
}

typedef struct {
    char *buf;
    size_t len, cap;
} strbuf_t;

static void sb_printf(strbuf_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf_t *sb, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < sb->cap - sb->len) {
            sb->len += (size_t)n;
            return;
        }
        sb->buf = ps_xrealloc(sb->buf, sb->cap * 2);
        sb->cap *= 2;
    }
}

/* Writes `name{labels,extra}` with the braces only when there are labels. */
static void sb_series(strbuf_t *sb, const char *name, const char *suffix,
                      const char *labels, const char *extra)
{
    int has = labels[0] != '\0', hasx = extra[0] != '\0';
    sb_printf(sb, "%s%s%s%s%s%s%s ", name, suffix, has || hasx ? "{" : "", labels,
              has && hasx ? "," : "", extra, has || hasx ? "}" : "");
}

static void render_histogram(strbuf_t *sb, const ps_metric_t *m, const series_t *s)
{
    uint64_t cumulative = 0;
    char le[48];
    for (size_t b = 0; b <= m->nbounds; b++) {
        cumulative += s->buckets[b];
        if (b < m->nbounds)
            snprintf(le, sizeof(le), "le=\"%g\"", m->bounds[b]);
        else
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        sb_series(sb, m->name, "_bucket", s->labels, le);
        sb_printf(sb, "%llu\n", (unsigned long long)cumulative);
    }
    sb_series(sb, m->name, "_sum", s->labels, "");
    sb_printf(sb, "%.6f\n", s->sum);
    sb_series(sb, m->name, "_count", s->labels, "");
    sb_printf(sb, "%llu\n", (unsigned long long)s->count);
}

char *ps_metrics_render(void)
{
    static const char *const kinds[] = {"counter", "histogram", "gauge"};
    strbuf_t sb = {.buf = ps_xmalloc(4096), .cap = 4096};
    sb.buf[0] = '\0';
    for (size_t i = 0; i < registry_count; i++) {
        ps_metric_t *m = registry[i];
        pthread_mutex_lock(&m->lock);
        sb_printf(&sb, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, kinds[m->kind]);
        for (size_t s = 0; s < m->nseries; s++) {
            if (m->kind == KIND_HISTOGRAM) {
                render_histogram(&sb, m, &m->series[s]);
            } else if (m->kind == KIND_GAUGE) {
                sb_series(&sb, m->name, "", m->series[s].labels, "");
                sb_printf(&sb, "%.17g\n", m->series[s].gauge);
            } else {
                sb_series(&sb, m->name, "", m->series[s].labels, "");
                sb_printf(&sb, "%lld\n", (long long)m->series[s].value);
            }
        }
        pthread_mutex_unlock(&m->lock);
    }
    return sb.buf;
}
