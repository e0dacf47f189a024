/* Stripe's events as Stripe sends them, for the load tools (the chaos run,
 * the benchmarks): each payment intent gets the events of its fate, in
 * Stripe's order and with the fields of Stripe's API reference (API version
 * 2024-06-20), 0.7 KB (a refund) to 3 KB of compact JSON, 1.9 KB on average:
 *
 *   succeeded (80 %)         payment_intent.created, charge.succeeded,
 *                            payment_intent.succeeded, charge.updated
 *   partly refunded (8 %)    those, then charge.refunded and refund.created
 *   refunded in full (4 %)   the same with the whole amount
 *   failed (8 %)             payment_intent.created, charge.failed,
 *                            payment_intent.payment_failed
 *
 * charge.updated and charge.failed are types paystream only records. All of
 * it is a function of (prefix, n, seed): the same call makes the same
 * events, so a checker knows what each intent must end as. */
#ifndef PAYSTREAM_STRIPE_MIX_H
#define PAYSTREAM_STRIPE_MIX_H

#include <stddef.h>
#include <stdint.h>

#define MIX_EVENTS_MAX 6
#define MIX_EVENT_MAX 4096 /* bytes of the largest event */

typedef enum { MIX_SUCCEEDED, MIX_PARTLY_REFUNDED, MIX_REFUNDED, MIX_FAILED } mix_fate_t;

typedef struct {
    char pi[64];      /* pi_<prefix>_<n> */
    char tag[48];     /* <prefix>_<n>: the other objects' ids end with it */
    int64_t amount;   /* minor units */
    const char *currency;
    int64_t refunded; /* what its refund gives back */
    int64_t created;  /* its first event's time; the others follow within seconds */
    mix_fate_t fate;
    int nevents;
} mix_intent_t;

/* Payment intent n of prefix, whose first event happens at created. */
void mix_intent(mix_intent_t *it, const char *prefix, long n, uint64_t seed, int64_t created);

/* Writes event i (0 .. nevents - 1) of it into buf (MIX_EVENT_MAX bytes)
 * and its evt_ id into id (64 bytes); returns the length. */
size_t mix_event(const mix_intent_t *it, int i, char *buf, char *id);

/* What paystream must show for it: the payment's status, and the minor
 * units captured and refunded. */
const char *mix_status(const mix_intent_t *it);
int64_t mix_captured(const mix_intent_t *it);

#endif
