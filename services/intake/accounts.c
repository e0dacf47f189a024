/* GET /api/v1/accounts/{id}: a connected account's state, for the
 * platform's admins only (it shows every seller's payout set-up). */
#include <stdlib.h>
#include <string.h>

#include "resources.h"

#define ACCOUNT_ID_MAX 64

const ps_pg_stmt_t accounts_statements[] = {
    {"account", "SELECT ps_account_json(id)::text FROM connected_accounts WHERE id = $1", 1},
};
const size_t accounts_nstatements = sizeof(accounts_statements) / sizeof(accounts_statements[0]);

/* Whether id looks like a Stripe account id; answers 400 when not. */
int account_id_check(api_call_t *call, const char *id, const char *param)
{
    if (strncmp(id, "acct_", 5) == 0 && ps_is_token(id, ACCOUNT_ID_MAX))
        return 0;
    api_error(call, 400, "parameter_invalid", "a connected account id starts with acct_", param);
    return -1;
}

void accounts_get(api_call_t *call)
{
    if (!call->actor.admin) {
        api_error(call, 403, "admin_only", "connected accounts are shown to admin keys only",
                  NULL);
        return;
    }
    if (account_id_check(call, call->id, "id") < 0)
        return;
    ps_pg_err_t err;
    const char *params[] = {call->id};
    PGresult *res = ps_pg_exec_prepared(call->pg, "account", 1, params, &err);
    if (res == NULL) {
        api_db_error(call, &err);
        return;
    }
    if (PQntuples(res) == 0)
        api_errorf(call, 404, "resource_missing", "id", "no such connected account: %s", call->id);
    else
        http_finish(call->req, 200, ps_xstrdup(PQgetvalue(res, 0, 0)));
    PQclear(res);
}
