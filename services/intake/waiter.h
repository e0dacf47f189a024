/* Requests waiting for a command's result, woken by PostgreSQL's NOTIFY
 * ps_commands (waiter.c). The waiter knows only that a command id has a row
 * in commands; what to answer from it is the caller's callback. */
#ifndef PAYSTREAM_INTAKE_WAITER_H
#define PAYSTREAM_INTAKE_WAITER_H

#include <stddef.h>

#include "command_row.h"
#include "intake.h"

typedef struct waiter waiter_t;

/* Answers req from the row of its command; called on the waiter's thread.
 * ctx is the one given to waiter_add. */
typedef void (*waiter_answer_fn)(request_t *req, const command_row_t *row, void *ctx);

int waiter_start(const char *dsn, char *err, size_t errlen);
void waiter_stop(void);

/* Makes req wait for command_id: answered by answer(req, row, ctx) as soon
 * as the command is applied and (for a command the caller publishes, when
 * published is 0) Kafka acknowledged it; or, when wait_ms runs out first,
 * with timeout_status and timeout_body (and a Location of timeout_location
 * when not ""). The waiter owns ctx from here on and frees it with free(). */
waiter_t *waiter_add(request_t *req, const char *command_id, waiter_answer_fn answer, void *ctx,
                     int wait_ms, int published, unsigned timeout_status,
                     const char *timeout_body, const char *timeout_location);

/* The publish_t to produce the waiter's command with: its delivery report
 * answers 202 at once when the request does not wait, 503 when Kafka did
 * not take the command. */
publish_t *waiter_publish(waiter_t *w);

#endif
