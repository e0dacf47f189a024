/* Who may take payments on behalf of a connected account, besides admins:
 * the links between accounts and the platform's users. */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "paystream/util.h"

#define ACCOUNT_ID_MAX 64

/* Reads ACCT --user USER; returns 0, or -1 after printing usage. */
static int account_and_user(int argc, char **argv, const char *verb, const char **account,
                            const char **user)
{
    if (argc != 3 || strcmp(argv[1], "--user") != 0 || strncmp(argv[0], "acct_", 5) != 0 ||
        !ps_is_token(argv[0], ACCOUNT_ID_MAX) || *argv[2] == '\0') {
        fprintf(stderr, "paystream-admin: accounts %s acct_... --user USER\n", verb);
        return -1;
    }
    *account = argv[0];
    *user = argv[2];
    return 0;
}

int cmd_accounts_link(int argc, char **argv)
{
    const char *params[2];
    if (account_and_user(argc, argv, "link", &params[0], &params[1]) < 0)
        return 2;
    return admin_sql("INSERT INTO account_links (account, actor) VALUES ($1, $2) "
                     "ON CONFLICT DO NOTHING", 2, params, 0) < 0 ? 1 : 0;
}

int cmd_accounts_unlink(int argc, char **argv)
{
    const char *params[2];
    if (account_and_user(argc, argv, "unlink", &params[0], &params[1]) < 0)
        return 2;
    int n = admin_sql("DELETE FROM account_links WHERE account = $1 AND actor = $2 RETURNING 1",
                      2, params, 0);
    if (n == 0)
        fprintf(stderr, "paystream-admin: %s is not linked to %s\n", params[0], params[1]);
    return n > 0 ? 0 : 1;
}

int cmd_accounts_links(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        fprintf(stderr, "paystream-admin: accounts links\n");
        return 2;
    }
    return admin_sql("SELECT l.account, l.actor, coalesce(a.state, 'not yet seen'), l.created_at "
                     "FROM account_links l LEFT JOIN connected_accounts a ON a.id = l.account "
                     "ORDER BY l.account, l.actor", 0, NULL, 1) < 0 ? 1 : 0;
}
