/* Connect events: each message becomes an element of the array that
 * ps_apply_connect_events takes, with what the database needs and nothing
 * of the event's envelope beyond it. A message that is not a Stripe event
 * is dead-lettered. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "connect.h"
#include "paystream/util.h"

const ps_pg_stmt_t connect_statements[] = {
    {"apply_connect_events",
     "SELECT ord, event_id, outcome, note::text FROM ps_apply_connect_events($1::jsonb)", 1},
    PS_WORKER_STATEMENTS,
};
const size_t connect_nstatements = sizeof(connect_statements) / sizeof(connect_statements[0]);

static int system_livemode; /* the mode of the platform's Stripe account */

void connect_events_init(int livemode)
{
    system_livemode = livemode;
}

static const char *str_field(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : NULL;
}

/* The account an event is about: the event's own account field, which
 * Stripe sets on every Connect event, else an account object's id. */
static const char *event_account(json_t *root, json_t *object)
{
    const char *account = str_field(root, "account");
    if (account == NULL && strcmp(str_field(object, "object") ? str_field(object, "object") : "",
                                  "account") == 0)
        account = str_field(object, "id");
    return account;
}

static void prepare(ps_batch_msg_t *m)
{
    if (ps_batch_msg_envelope(m) < 0)
        return;
    json_error_t jerr;
    json_t *root = json_loadb(m->msg->payload ? m->msg->payload : "", m->msg->len, 0, &jerr);
    json_t *object = json_object_get(json_object_get(root, "data"), "object");
    const char *id = str_field(root, "id"), *type = str_field(root, "type");
    json_int_t created = json_integer_value(json_object_get(root, "created"));
    if (!json_is_object(object) || id == NULL || strncmp(id, "evt_", 4) != 0 || type == NULL ||
        created <= 0) {
        ps_batch_msg_bad(m, "not a Stripe event",
                         root ? "id, type, created or data.object missing" : jerr.text);
        json_decref(root);
        return;
    }
    const char *account = event_account(root, object);
    if (account && strncmp(account, "acct_", 5) != 0) {
        ps_batch_msg_bad(m, "not a Connect event", "account is not an acct_ id");
        json_decref(root);
        return;
    }
    json_t *e = json_pack("{s:s, s:s, s:s?, s:I, s:s, s:O}", "event_id", id, "type", type,
                          "account", account, "created", created, "message_id",
                          m->env.message_id, "object", object);
    /* An event of the other mode (Stripe sends a live Connect endpoint its
     * accounts' test events too) is audited and changes nothing. */
    if (json_is_true(json_object_get(root, "livemode")) != system_livemode)
        json_object_set_new(e, "refusal", json_string("livemode_mismatch"));
    json_t *prev = json_object_get(json_object_get(root, "data"), "previous_attributes");
    if (json_is_object(prev))
        json_object_set(e, "previous_attributes", prev);
    m->json = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    json_decref(root);
    if (m->json == NULL)
        abort(); /* only for want of memory */
}

void *connect_prepare_batch(rd_kafka_message_t **msgs, size_t n)
{
    return ps_alike_prepare(msgs, n, prepare);
}

int connect_apply_batch(ps_pg_t *pg, rd_kafka_t *dlq, rd_kafka_message_t **msgs, size_t n,
                        void *prepared, ps_apply_stats_t *stats, volatile sig_atomic_t *run)
{
    (void)msgs;
    (void)n;
    return ps_alike_apply(pg, dlq, prepared, "apply_connect_events", stats, run);
}
