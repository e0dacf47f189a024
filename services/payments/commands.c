/* API commands: from a consumed message of paystream.commands.payments to
 * its element of the batch that ps_apply_commands applies. The actor comes
 * from the headers the intake stamped, never from the value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payments.h"
#include "paystream/jwt.h"
#include "paystream/util.h"

static int hex_string(const char *s, size_t len)
{
    if (s == NULL || strlen(s) != len)
        return 0;
    for (; *s; s++) {
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    }
    return 1;
}

const char *command_shape_error(json_t *root)
{
    const char *id = json_string_value(json_object_get(root, "command_id"));
    const char *type = json_string_value(json_object_get(root, "type"));
    const char *rid = json_string_value(json_object_get(root, "resource_id"));
    if (!json_is_object(root))
        return "(value)";
    if (id == NULL || strncmp(id, "cmd_", 4) != 0 || !hex_string(id + 4, PS_ORDERED_HEX_LEN))
        return "command_id";
    if (type == NULL || strlen(type) > 40)
        return "type";
    if (rid == NULL || *rid == '\0' || strlen(rid) > PS_JWT_SUB_MAX)
        return "resource_id";
    if (!hex_string(json_string_value(json_object_get(root, "request_sha256")), 64))
        return "request_sha256";
    if (!json_is_object(json_object_get(root, "params")))
        return "params";
    return NULL;
}

/* The gateway of a new payment: this worker's own for the actor (Stripe
 * when it has the key, the sandbox for a sandbox key or without it), or
 * PayPal when the API's payment_method (gateway_asked) says so and this
 * worker has PayPal's credentials (never for a sandbox key, which pays
 * nothing real). payment_method may name no other: a shopper who could
 * pick the sandbox on a Stripe server would pay nothing. A refusal is said
 * in gateway_refused, which ps_payment_create answers with 409
 * gateway_unavailable. */
static void payment_gateway(json_t *params, int sandbox)
{
    const char *own = gateway_for(sandbox);
    const char *asked = json_string_value(json_object_get(params, "gateway_asked"));
    const char *refused = NULL;
    if (asked && strcmp(asked, "paypal") == 0) {
        if (sandbox)
            refused = "a sandbox key pays on the sandbox only";
        else if (!gateway_paypal_enabled())
            refused = "this server has no PayPal credentials";
        else
            own = "paypal";
    } else if (asked && strcmp(asked, own) != 0) {
        refused = strcmp(own, "stripe") == 0 ? "this server's payments go to Stripe"
                  : sandbox                  ? "a sandbox key pays on the sandbox only"
                                             : "this server has no Stripe key; its payments "
                                               "go to the sandbox";
    }
    if (refused)
        json_object_set_new(params, "gateway_refused", json_string(refused));
    json_object_set_new(params, "gateway", json_string(own));
}

void command_prepare(ps_batch_msg_t *ec)
{
    if (ec->env.actor[0] == '\0') {
        ps_batch_msg_bad(ec, "bad envelope", "a command without an actor header");
        return;
    }
    json_error_t jerr;
    json_t *root = json_loadb(ec->msg->payload ? ec->msg->payload : "", ec->msg->len,
                              JSON_REJECT_DUPLICATES, &jerr);
    const char *bad = root ? command_shape_error(root) : NULL;
    if (root == NULL || bad) {
        ps_batch_msg_bad(ec, "not a command", root ? bad : jerr.text);
        json_decref(root);
        return;
    }
    const char *type = json_string_value(json_object_get(root, "type"));
    json_t *params = json_object_get(root, "params");
    int sandbox = ps_has_word(ec->env.actor_roles, "sandbox");
    if (strcmp(type, "payment.process") == 0 || strcmp(type, "payment.refund") == 0)
        gateway_command_mark(ec, json_string_value(json_object_get(root, "command_id")),
                             "gateway_begin", "gateway_finish");
    else if (strcmp(type, "customer.create") == 0 || strcmp(type, "checkout.create") == 0)
        gateway_command_mark(ec, json_string_value(json_object_get(root, "command_id")),
                             "billing_begin", "billing_finish");
    if (strcmp(type, "payment.create") == 0)
        payment_gateway(params, sandbox);
    if (strcmp(type, "customer.create") == 0) {
        json_object_set_new(params, "gateway", json_string(gateway_for(sandbox)));
        json_object_set_new(params, "currency", json_string(usage_billing()->currency));
    }
    if (strcmp(type, "checkout.create") == 0)
        json_object_set_new(params, "sandbox", json_boolean(sandbox));
    json_object_set_new(root, "actor", json_string(ec->env.actor));
    json_object_set_new(root, "admin", json_boolean(ps_has_word(ec->env.actor_roles, "admin")));
    json_object_set_new(root, "message_id", json_string(ec->env.message_id));
    ec->json = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (ec->json == NULL)
        abort(); /* only for want of memory */
}
