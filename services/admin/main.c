/* paystream-admin: operator commands. Reads the same environment as the
 * services (PAYSTREAM_KAFKA_BROKERS, ...). */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "paystream/config.h"
#include "paystream/log.h"

static const ps_cfg_var_t config[] = {
    PS_CFG_COMMON,
    {"STRIPE_SECRET_KEY", PS_CFG_SECRET, "", 0, 0, "sk_ key of Stripe's API, for reconcile"},
    {"STRIPE_API_BASE", PS_CFG_STRING, "https://api.stripe.com", 0, 0,
     "base URL of Stripe's API (a local stand-in in tests)"},
};

static const struct {
    const char *group, *name; /* name NULL: the group is the whole command */
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"topics", "create", cmd_topics_create,
     "[--partitions N] [--replication R] [--min-insync M]\n"
     "      create paystream's topics and their .dlq twins (existing ones are kept);\n"
     "      partitions default to 2: at most one worker of a group per partition works"},
    {"topics", "config", cmd_topics_config,
     "TOPIC NAME=VALUE...\n      set configuration of one topic (e.g. retention.bytes)"},
    {"topics", "dump", cmd_topics_dump,
     "TOPIC\n      print every message TOPIC holds, one JSON line each: partition, offset, key,\n"
     "      headers, value"},
    {"kafka", "wait", cmd_kafka_wait,
     "[--brokers N] [--timeout SECONDS]\n      wait until N brokers answer metadata requests"},
    {"kafka", "watermarks", cmd_kafka_watermarks,
     "TOPIC\n      print each partition's first and next offset: PARTITION LOW HIGH"},
    {"apikey", "create", cmd_apikey_create,
     "--user USER [--sandbox] [--admin]\n"
     "      issue an API key acting for USER and print it (shown this once only);\n"
     "      --sandbox: its payments go to the sandbox gateway; --admin: sees all data"},
    {"apikey", "revoke", cmd_apikey_revoke, "KEY_ID\n      revoke a key (the psk_..._<id> part)"},
    {"apikey", "list", cmd_apikey_list, "\n      print every key: ID USER ADMIN CREATED REVOKED"},
    {"accounts", "link", cmd_accounts_link,
     "ACCT --user USER\n"
     "      let USER take payments on behalf of connected account ACCT (admins always may)"},
    {"accounts", "unlink", cmd_accounts_unlink, "ACCT --user USER\n      take that back"},
    {"accounts", "links", cmd_accounts_links, "\n      print every link: ACCOUNT USER STATE CREATED"},
    {"dlq", "list", cmd_dlq_list,
     "[--all]\n      print the dead letters not redriven yet (every one with --all): ID TOPIC "
     "PARTITION OFFSET MESSAGE_ID REASON CREATED REDRIVEN"},
    {"dlq", "show", cmd_dlq_show, "ID\n      print a dead letter whole: headers, key, payload"},
    {"dlq", "redrive", cmd_dlq_redrive,
     "ID... [--again]\n      send dead letters back to their topic with their key and headers, "
     "once each\n      (--again: also those sent back before); the worker applies each once"},
    {"reconcile", NULL, cmd_reconcile,
     "--since TIME [--page N]\n      list Stripe's events since TIME (GET /v1/events; Stripe "
     "keeps 30 days) and feed the ones\n      paystream has not recorded through the pipeline, "
     "oldest first; a summary at the end"},
    {"replay", NULL, cmd_replay,
     "TOPIC --from TIME|OFFSET [--to TIME|OFFSET] [--force]\n      publish a range of TOPIC again "
     "(keys, headers, message ids kept) for its workers to\n      re-apply; what they applied "
     "before is a duplicate. TIME: 2026-12-01T10:00:00Z"},
    {"products", "put", cmd_products_put,
     "SKU --stock N [--name NAME]\n"
     "      add a product or set its units on hand (never below what is reserved)"},
    {"products", "list", cmd_products_list, "\n      print every product: SKU NAME STOCK RESERVED AVAILABLE"},
    {"subscribers", "add", cmd_subscribers_add,
     "ID --url URL [--events TYPE,...]\n"
     "      post domain events (all, or these types) to URL, signed; prints the signing secret"},
    {"subscribers", "list", cmd_subscribers_list, "\n      print every subscriber: ID URL EVENTS STATE CREATED"},
    {"subscribers", "remove", cmd_subscribers_remove, "ID\n      stop posting to a subscriber"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static int usage(FILE *out)
{
    fprintf(out, "usage: paystream-admin GROUP COMMAND [options]\n\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %s%s%s %s\n", commands[i].group, commands[i].name ? " " : "",
                commands[i].name ? commands[i].name : "", commands[i].help);
    ps_config_usage(out, "paystream-admin", "", config, sizeof(config) / sizeof(config[0]));
    return out == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage(argc == 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
    if (ps_config_start("admin", config, sizeof(config) / sizeof(config[0])) < 0)
        return 2;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(argv[1], commands[i].group) != 0)
            continue;
        if (commands[i].name == NULL) /* a command of one word: the rest are its arguments */
            return commands[i].run(argc - 2, argv + 2);
        if (strcmp(argv[2], commands[i].name) == 0)
            return commands[i].run(argc - 3, argv + 3);
    }
    return usage(stderr);
}
