/* Usage records: from a message of paystream.commands.usage to its element
 * of the batch that ps_apply_usage applies, priced here with the configured
 * meter prices. A message is either a record straight from an upstream
 * producer, {customer, meter, quantity, timestamp, identifier}, or an API
 * command (usage.record) whose params are that record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/config.h"
#include "paystream/jwt.h"
#include "paystream/util.h"

#define QUANTITY_MAX 1000000000LL
#define IDENTIFIER_MAX 100

static ps_billing_t billing;
static int64_t threshold_minor;

int usage_init(char *err, size_t errlen)
{
    char why[256];
    if (ps_billing_parse(ps_config_str("PAYSTREAM_BILLING_CURRENCY"),
                         ps_config_str("PAYSTREAM_METER_PRICES"), &billing, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "PAYSTREAM_BILLING_CURRENCY or PAYSTREAM_METER_PRICES: %s", why);
        return -1;
    }
    if (ps_money_parse(ps_config_str("PAYSTREAM_INVOICE_THRESHOLD"), billing.currency,
                       &threshold_minor, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "PAYSTREAM_INVOICE_THRESHOLD: %s", why);
        return -1;
    }
    return 0;
}

const ps_billing_t *usage_billing(void)
{
    return &billing;
}

/* Checks record and adds its price; returns NULL, or what is wrong. */
static const char *price_record(json_t *record, const ps_envelope_t *env, char *why, size_t len)
{
    const char *customer = json_string_value(json_object_get(record, "customer"));
    const char *meter = json_string_value(json_object_get(record, "meter"));
    const char *identifier = json_string_value(json_object_get(record, "identifier"));
    json_t *quantity = json_object_get(record, "quantity");
    json_t *timestamp = json_object_get(record, "timestamp");
    if (customer == NULL || *customer == '\0' || strlen(customer) > PS_JWT_SUB_MAX)
        return "customer must be a customer id";
    if (identifier == NULL || !ps_is_token(identifier, IDENTIFIER_MAX))
        return "identifier must be 1 to 100 printable characters";
    if (!json_is_integer(quantity) || json_integer_value(quantity) < 1 ||
        json_integer_value(quantity) > QUANTITY_MAX)
        return "quantity must be a whole number from 1 to 1000000000";
    if (timestamp && !json_is_integer(timestamp))
        return "timestamp must be unix seconds";
    const ps_meter_price_t *price = meter ? ps_billing_meter(&billing, meter) : NULL;
    if (price == NULL) {
        char names[256];
        ps_billing_meter_names(&billing, names, sizeof(names));
        snprintf(why, len, "meter %.100s is not priced here (PAYSTREAM_METER_PRICES has %.200s)",
                 meter ? meter : "(missing)", names);
        return why;
    }
    if (price->unit_minor > 0 && json_integer_value(quantity) > INT64_MAX / 4 / price->unit_minor)
        return "quantity times the unit price is too large";
    json_object_set_new(record, "unit_price_minor", json_integer((json_int_t)price->unit_minor));
    json_object_set_new(record, "currency", json_string(billing.currency));
    json_object_set_new(record, "occurred_at",
                        json_integer(timestamp ? json_integer_value(timestamp)
                                               : (json_int_t)(env->received_at_ms / 1000)));
    json_object_set_new(record, "threshold_minor", json_integer((json_int_t)threshold_minor));
    json_object_set_new(record, "message_id", json_string(env->message_id));
    return NULL;
}

void usage_prepare(ps_batch_msg_t *ec)
{
    json_error_t jerr;
    json_t *root = json_loadb(ec->msg->payload ? ec->msg->payload : "", ec->msg->len,
                              JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        ps_batch_msg_bad(ec, "not a usage record", root ? "the value is not an object" : jerr.text);
        json_decref(root);
        return;
    }
    json_t *record = root;
    if (json_object_get(root, "command_id")) {
        const char *bad = command_shape_error(root);
        if (bad || ec->env.actor[0] == '\0') {
            ps_batch_msg_bad(ec, "not a usage command", bad ? bad : "no actor header");
            json_decref(root);
            return;
        }
        /* The command's fields go with the record, for its result. */
        record = json_deep_copy(json_object_get(root, "params"));
        const char *keys[] = {"command_id", "type", "resource_id", "request_sha256"};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            json_object_set(record, keys[i], json_object_get(root, keys[i]));
        json_object_set_new(record, "actor", json_string(ec->env.actor));
        json_decref(root);
    }
    char why[512];
    const char *bad = price_record(record, &ec->env, why, sizeof(why));
    if (bad)
        ps_batch_msg_bad(ec, "cannot apply", bad);
    else if ((ec->json = json_dumps(record, JSON_COMPACT)) == NULL)
        abort(); /* only for want of memory */
    json_decref(record);
}
