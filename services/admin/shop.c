/* The shop's catalogue and the receivers of its outbound webhooks. */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "paystream/util.h"

#define SECRET_BYTES 24

/* The value of option name in argv (--name VALUE), or NULL. */
static const char *option(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

int cmd_products_put(int argc, char **argv)
{
    const char *name = option(argc, argv, "--name"), *stock = option(argc, argv, "--stock");
    if (argc < 3 || argv[0][0] == '-' || stock == NULL || stock[strspn(stock, "0123456789")] ||
        *stock == '\0') {
        fprintf(stderr, "paystream-admin: products put SKU --stock N [--name NAME]\n");
        return 2;
    }
    const char *params[] = {argv[0], name ? name : argv[0], stock};
    /* A new product without --name is named after its sku; an existing one
     * keeps its name. */
    if (name == NULL)
        params[1] = NULL;
    return admin_sql("SELECT sku, name, stock, reserved FROM ps_product_put($1, "
                     "coalesce($2, (SELECT name FROM products WHERE sku = $1), $1), $3::bigint)",
                     3, params, 1) < 0 ? 1 : 0;
}

int cmd_products_list(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        fprintf(stderr, "paystream-admin: products list\n");
        return 2;
    }
    return admin_sql("SELECT sku, name, stock, reserved, available FROM dash_stock ORDER BY sku",
                     0, NULL, 1) < 0 ? 1 : 0;
}

int cmd_subscribers_add(int argc, char **argv)
{
    const char *url = option(argc, argv, "--url"), *events = option(argc, argv, "--events");
    if (argc < 3 || argv[0][0] == '-' || url == NULL) {
        fprintf(stderr, "paystream-admin: subscribers add ID --url URL [--events TYPE,...]\n");
        return 2;
    }
    unsigned char bytes[SECRET_BYTES];
    char hex[2 * SECRET_BYTES + 1], secret[2 * SECRET_BYTES + 8];
    ps_random_bytes(bytes, sizeof(bytes));
    ps_hex_encode(bytes, sizeof(bytes), hex);
    snprintf(secret, sizeof(secret), "pswh_%s", hex);
    const char *params[] = {argv[0], url, secret, events ? events : "*"};
    if (admin_sql("INSERT INTO webhook_subscribers (id, url, secret, event_types) "
                  "VALUES ($1, $2, $3, string_to_array($4, ',')) "
                  "ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret, "
                  "event_types = EXCLUDED.event_types, active = true",
                  4, params, 0) < 0)
        return 1;
    /* The receiver checks signatures with it; shown this once. */
    printf("%s\n", secret);
    return 0;
}

int cmd_subscribers_list(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        fprintf(stderr, "paystream-admin: subscribers list\n");
        return 2;
    }
    return admin_sql("SELECT id, url, array_to_string(event_types, ','), "
                     "CASE WHEN active THEN 'active' ELSE 'removed' END, created_at "
                     "FROM webhook_subscribers ORDER BY id", 0, NULL, 1) < 0 ? 1 : 0;
}

int cmd_subscribers_remove(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "paystream-admin: subscribers remove ID\n");
        return 2;
    }
    const char *params[] = {argv[0]};
    int n = admin_sql("UPDATE webhook_subscribers SET active = false WHERE id = $1 RETURNING id",
                      1, params, 0);
    if (n == 0)
        fprintf(stderr, "paystream-admin: no subscriber %s\n", argv[0]);
    return n > 0 ? 0 : 1;
}
