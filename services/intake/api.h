/* The API's threads (api.c): each with a PostgreSQL connection of its own,
 * so that a query never holds an HTTP thread that webhooks need. An API
 * route's request is queued for them; they authenticate it, apply the write
 * limit and run the route's handler. */
#ifndef PAYSTREAM_INTAKE_API_H
#define PAYSTREAM_INTAKE_API_H

#include <stddef.h>

#include "intake.h"

/* Starts threads API threads on dsn; returns 0, or -1 with err. */
int api_start(const char *dsn, int threads, char *err, size_t errlen);
/* Serves what is queued, then stops the threads. */
void api_stop(void);

/* On the HTTP thread: queues req (of an API route) for an API thread; the
 * answer comes from there (the request is deferred). */
void api_dispatch(request_t *req);

#endif
