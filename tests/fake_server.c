/* The tests' stand-in servers' HTTP plumbing (fake_server.h). */
#include "fake_server.h"

#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *body;
    size_t len;
} upload_t;

static volatile sig_atomic_t run = 1;
static fake_handler_t handle;

static void stop(int sig)
{
    (void)sig;
    run = 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    (void)cls;
    (void)version;
    upload_t *up = *con_cls;
    if (up == NULL) {
        *con_cls = calloc(1, sizeof(upload_t));
        return MHD_YES;
    }
    if (*size > 0) {
        if (up->len + *size < FAKE_BODY_MAX) {
            up->body = realloc(up->body, up->len + *size + 1);
            memcpy(up->body + up->len, data, *size);
            up->len += *size;
            up->body[up->len] = '\0';
        }
        *size = 0;
        return MHD_YES;
    }
    return handle(conn, url, method, up->body ? up->body : "");
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    upload_t *up = *con_cls;
    if (up) {
        free(up->body);
        free(up);
    }
    *con_cls = NULL;
}

int fake_serve(const char *name, int port, fake_handler_t handler)
{
    handle = handler;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        (uint16_t)port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "%s: cannot listen on port %d\n", name, port);
        return 1;
    }
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    printf("%s listening on %d\n", name, port);
    fflush(stdout);
    while (run)
        pause();
    MHD_stop_daemon(d);
    return 0;
}
