/* Where a Stripe event goes in Kafka: the intake publishes what Stripe
 * sends, and paystream-admin reconcile what Stripe lists, by one rule. */
#ifndef PAYSTREAM_STRIPE_EVENT_H
#define PAYSTREAM_STRIPE_EVENT_H

/* The members of an event that decide its key (NULL when absent or empty). */
typedef struct {
    const char *id, *type, *account;                    /* the event's */
    const char *object_id, *payment_intent, *customer;  /* its data.object's */
} ps_stripe_key_t;

/* The aggregate the event changes, its Kafka key, so that one partition
 * orders all of that aggregate's events: the connected account for a
 * Connect event (connect set); the payment intent for payment_intent,
 * charge and refund events; else the customer, else the object itself,
 * else the event. */
const char *ps_stripe_event_key(const ps_stripe_key_t *k, int connect);

/* The topic of an event: Connect's (it names an account) or the platform's. */
const char *ps_stripe_event_topic(const ps_stripe_key_t *k);

#endif
