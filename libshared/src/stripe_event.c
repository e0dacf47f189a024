/* Where a Stripe event goes in Kafka (stripe_event.h). */
#include "paystream/stripe_event.h"

#include <string.h>

#include "paystream/kafka.h"

const char *ps_stripe_event_key(const ps_stripe_key_t *k, int connect)
{
    if (connect && k->account)
        return k->account;
    if (k->type && strncmp(k->type, "payment_intent.", 15) == 0 && k->object_id)
        return k->object_id;
    if (k->payment_intent && k->type &&
        (strncmp(k->type, "charge.", 7) == 0 || strncmp(k->type, "refund.", 7) == 0))
        return k->payment_intent;
    if (k->customer)
        return k->customer;
    return k->object_id ? k->object_id : k->id;
}

const char *ps_stripe_event_topic(const ps_stripe_key_t *k)
{
    return k->account ? PS_TOPIC_STRIPE_CONNECT_EVENTS : PS_TOPIC_STRIPE_EVENTS;
}
