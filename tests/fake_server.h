/* What the tests' stand-ins for Stripe's and PayPal's APIs share: an HTTP
 * server on 127.0.0.1 (libmicrohttpd, a thread per connection, so a slow
 * caller holds up only itself) that hands each request, its body read
 * whole, to the stand-in's handler. */
#ifndef PAYSTREAM_FAKE_SERVER_H
#define PAYSTREAM_FAKE_SERVER_H

#include <microhttpd.h>

#define FAKE_BODY_MAX 65536 /* a longer body is cut here */

/* Answers one request; body is "" when there is none. */
typedef enum MHD_Result (*fake_handler_t)(struct MHD_Connection *conn, const char *url,
                                          const char *method, const char *body);

/* Serves handler on port until SIGINT or SIGTERM. Returns the exit code:
 * 0, or 1 when the port cannot be listened on. name is for messages. */
int fake_serve(const char *name, int port, fake_handler_t handler);

#endif
