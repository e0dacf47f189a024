/* GET /metrics for the workers (metrics.h): a small libmicrohttpd server
 * with one thread, on an IPv4 or IPv6 address. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paystream/metrics.h"
#include "paystream/util.h"

static struct MHD_Daemon *daemon_;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    (void)cls, (void)version, (void)data, (void)size, (void)con_cls;
    int ok = strcmp(method, "GET") == 0 && strcmp(url, "/metrics") == 0;
    char *text = ok ? ps_metrics_render() : strdup("only GET /metrics is served here\n");
    if (text == NULL)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ok ? "text/plain; version=0.0.4" : "text/plain");
    enum MHD_Result ret = MHD_queue_response(conn, ok ? 200 : 404, r);
    MHD_destroy_response(r);
    return ret;
}

int ps_metrics_serve(const char *addr, int port, char *err, size_t errlen)
{
    struct sockaddr_storage sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    int family = ps_sockaddr(addr, port, &sa);
    if (family < 0) {
        snprintf(err, errlen, "%s is not an IPv4 or IPv6 address", addr);
        return -1;
    }
    if (family == AF_INET6)
        flags |= MHD_USE_DUAL_STACK; /* "::" takes IPv4 too */
    daemon_ = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, NULL,
                               MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, 16u,
                               MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (daemon_ == NULL) {
        snprintf(err, errlen, "cannot serve metrics on %s port %d", addr, port);
        return -1;
    }
    return 0;
}

void ps_metrics_serve_stop(void)
{
    if (daemon_)
        MHD_stop_daemon(daemon_);
    daemon_ = NULL;
}
