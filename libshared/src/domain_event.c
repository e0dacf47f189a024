/* Reading a domain event off paystream.domain.events; see
 * paystream/domain_event.h. */
#include <jansson.h>
#include <stdlib.h>

#include "paystream/domain_event.h"

void ps_domain_event_prepare(ps_batch_msg_t *m)
{
    if (ps_batch_msg_envelope(m) < 0)
        return;
    json_error_t jerr;
    json_t *root = json_loadb(m->msg->payload ? m->msg->payload : "", m->msg->len, 0, &jerr);
    const char *type = json_string_value(json_object_get(root, "type"));
    const char *aggregate = json_string_value(json_object_get(root, "aggregate"));
    json_t *data = json_object_get(root, "data");
    if (type == NULL || *type == '\0' || aggregate == NULL || *aggregate == '\0' ||
        !json_is_object(data)) {
        ps_batch_msg_bad(m, "not a domain event",
                         root ? "type, aggregate or data missing" : jerr.text);
        json_decref(root);
        return;
    }
    json_t *e = json_pack("{s:s, s:I, s:s, s:s, s:O?, s:O}", "message_id", m->env.message_id,
                          "at_ms", (json_int_t)m->env.received_at_ms, "type", type, "aggregate",
                          aggregate, "occurred_at", json_object_get(root, "occurred_at"), "data",
                          data);
    m->json = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    json_decref(root);
    if (m->json == NULL)
        abort(); /* only for want of memory */
}

void *ps_domain_events_prepare(rd_kafka_message_t **msgs, size_t n)
{
    return ps_alike_prepare(msgs, n, ps_domain_event_prepare);
}
