/* API keys: psk_live_<16 hex>_<40 hex>, or psk_dev_... for keys whose
 * payments go to the sandbox gateway. The part before the last "_" is the
 * key's id; PostgreSQL keeps the id and the SHA-256 of the whole key. The
 * key itself is printed once, at creation, and never stored. */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "paystream/config.h"
#include "paystream/hmac.h"
#include "paystream/util.h"

int cmd_apikey_create(int argc, char **argv)
{
    const char *user = NULL;
    int sandbox = 0, admin = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
            user = argv[++i];
        else if (strcmp(argv[i], "--sandbox") == 0)
            sandbox = 1;
        else if (strcmp(argv[i], "--admin") == 0)
            admin = 1;
        else {
            fprintf(stderr, "paystream-admin: apikey create --user USER [--sandbox] [--admin]\n");
            return 2;
        }
    }
    if (user == NULL || *user == '\0' || strlen(user) > 128) {
        fprintf(stderr, "paystream-admin: --user USER (1 to 128 characters) is required\n");
        return 2;
    }
    unsigned char id_bytes[8], secret_bytes[20];
    char id_hex[17], secret_hex[41], id[32], key[80], sha256[65];
    ps_random_bytes(id_bytes, sizeof(id_bytes));
    ps_random_bytes(secret_bytes, sizeof(secret_bytes));
    ps_hex_encode(id_bytes, sizeof(id_bytes), id_hex);
    ps_hex_encode(secret_bytes, sizeof(secret_bytes), secret_hex);
    snprintf(id, sizeof(id), "psk_%s_%s", sandbox ? "dev" : "live", id_hex);
    snprintf(key, sizeof(key), "%s_%s", id, secret_hex);
    ps_hmac_piece_t piece = {key, strlen(key)};
    if (ps_sha256_hex(&piece, 1, sha256) < 0) {
        fprintf(stderr, "paystream-admin: cannot hash the key\n");
        return 1;
    }
    const char *params[] = {id, sha256, user, sandbox ? "true" : "false", admin ? "true" : "false"};
    if (admin_sql("INSERT INTO api_keys (id, secret_sha256, actor, sandbox, admin) "
            "VALUES ($1, $2, $3, $4::boolean, $5::boolean)", 5, params, 0) < 0)
        return 1;
    /* The only time the key is shown. */
    printf("%s\n", key);
    return 0;
}

int cmd_apikey_revoke(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "paystream-admin: apikey revoke KEY_ID\n");
        return 2;
    }
    const char *params[] = {argv[0]};
    int n = admin_sql("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL "
                "RETURNING id", 1, params, 0);
    if (n < 0)
        return 1;
    if (n == 0) {
        fprintf(stderr, "paystream-admin: no active key %s\n", argv[0]);
        return 1;
    }
    return 0;
}

int cmd_apikey_list(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        fprintf(stderr, "paystream-admin: apikey list\n");
        return 2;
    }
    return admin_sql("SELECT id, actor, CASE WHEN admin THEN 'admin' ELSE '-' END, created_at, revoked_at "
               "FROM api_keys ORDER BY created_at", 0, NULL, 1) < 0 ? 1 : 0;
}
