/* Prometheus metrics: counters, gauges and histograms with label sets,
 * rendered in the text exposition format for GET /metrics. */
#ifndef PAYSTREAM_METRICS_H
#define PAYSTREAM_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ps_metric ps_metric_t;

/* Registers a metric. name is a Prometheus name; help one line; bounds the
 * upper bounds of a histogram's buckets in ascending order (copied). The
 * metric lives until the process ends. Returns NULL only when out of memory
 * or registry slots (PS_METRICS_MAX). Not thread-safe: register at start-up. */
#define PS_METRICS_MAX 32
ps_metric_t *ps_metric_counter(const char *name, const char *help);
ps_metric_t *ps_metric_gauge(const char *name, const char *help);
ps_metric_t *ps_metric_histogram(const char *name, const char *help,
                                 const double *bounds, size_t nbounds);

/* labels is a rendered label set such as `route="/health",status="200"`, or
 * "" for none; at most 512 distinct sets per metric (further ones are counted
 * under `overflow="true"`). Thread-safe. add counts a counter up; set sets a
 * gauge; observe adds a value to a histogram. */
void ps_metric_add(ps_metric_t *m, const char *labels, uint64_t n);
void ps_metric_set(ps_metric_t *m, const char *labels, double value);
void ps_metric_observe(ps_metric_t *m, const char *labels, double value);

/* Renders every registered metric. Returns a NUL-terminated string the
 * caller frees with free(), or NULL when out of memory. */
char *ps_metrics_render(void);

/* Serves GET /metrics (ps_metrics_render) on addr:port from a thread of its
 * own, for the workers, which serve nothing else. Returns 0, or -1 with
 * why in err. ps_metrics_serve_stop stops it. */
int ps_metrics_serve(const char *addr, int port, char *err, size_t errlen);
void ps_metrics_serve_stop(void);

#endif
