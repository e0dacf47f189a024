#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paystream/metrics.h"

Test(metrics, renders_counters_and_histograms_in_prometheus_text)
{
    static const double bounds[] = {0.01, 0.1};
    ps_metric_t *c = ps_metric_counter("t_requests_total", "requests");
    ps_metric_t *h = ps_metric_histogram("t_latency_seconds", "latency", bounds, 2);
    ps_metric_add(c, "route=\"/a\",status=\"200\"", 2);
    ps_metric_add(c, "route=\"/a\",status=\"200\"", 1);
    ps_metric_add(c, "route=\"/a\",status=\"400\"", 1);
    ps_metric_observe(h, "", 0.005);
    ps_metric_observe(h, "", 0.05);
    ps_metric_observe(h, "", 5);
    char *text = ps_metrics_render();
    cr_assert_not_null(text);
    cr_assert(strstr(text, "# TYPE t_requests_total counter\n"), "%s", text);
    cr_assert(strstr(text, "t_requests_total{route=\"/a\",status=\"200\"} 3\n"), "%s", text);
    cr_assert(strstr(text, "t_requests_total{route=\"/a\",status=\"400\"} 1\n"), "%s", text);
    cr_assert(strstr(text, "t_latency_seconds_bucket{le=\"0.01\"} 1\n"), "%s", text);
    cr_assert(strstr(text, "t_latency_seconds_bucket{le=\"0.1\"} 2\n"), "%s", text);
    cr_assert(strstr(text, "t_latency_seconds_bucket{le=\"+Inf\"} 3\n"), "%s", text);
    cr_assert(strstr(text, "t_latency_seconds_count 3\n"), "%s", text);
    free(text);
}

Test(metrics, too_many_label_sets_fold_into_overflow)
{
    ps_metric_t *c = ps_metric_counter("t_many_total", "many");
    char labels[32];
    /* 511 label sets have series of their own, the rest share one. */
    for (int i = 0; i < 600; i++) {
        snprintf(labels, sizeof(labels), "n=\"%d\"", i);
        ps_metric_add(c, labels, 1);
    }
    char *text = ps_metrics_render();
    cr_assert(strstr(text, "t_many_total{n=\"510\"} 1\n"), "%s", text);
    cr_assert_null(strstr(text, "t_many_total{n=\"511\"}"), "%s", text);
    cr_assert(strstr(text, "t_many_total{overflow=\"true\"} 89\n"), "%s", text);
    free(text);
}
