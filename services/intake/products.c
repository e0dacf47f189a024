/* GET /api/v1/products[/{sku}] and PUT /api/v1/products/{sku}: the
 * catalog's stock, for admins only. A PUT is a product.put command that
 * the payments worker applies, the way every API write is applied, with
 * the function paystream-admin products put runs: the inventory worker's
 * checks and movements hold for both. */
#include <ctype.h>
#include <string.h>

#include "commands.h"
#include "paystream/kafka.h"
#include "resources.h"
#include "validate.h"

#define SKU_MAX 64
#define STOCK_MAX 1000000000000LL

const ps_pg_stmt_t products_statements[] = {
    {"product", "SELECT ps_product_json(p)::text FROM products p WHERE p.sku = $1", 1},
    {"products_page", "SELECT ps_products_page($1, $2::boolean, $3, $4, $5::integer)::text", 5},
};
const size_t products_nstatements = sizeof(products_statements) / sizeof(products_statements[0]);

/* Whether the actor is an admin; answers 403 when not. */
static int admin_only(api_call_t *call)
{
    if (call->actor.admin)
        return 1;
    api_error(call, 403, "admin_only", "products are shown to and changed by admin keys only",
              NULL);
    return 0;
}

/* Whether the path's sku is one the products table takes (its check:
 * a letter or digit, then up to 63 of those or _ . : -); answers 400 when
 * not. */
static int sku_check(api_call_t *call)
{
    const char *s = call->id;
    size_t n = strlen(s);
    int ok = n >= 1 && n <= SKU_MAX && isalnum((unsigned char)s[0]);
    for (size_t i = 1; ok && i < n; i++)
        ok = isalnum((unsigned char)s[i]) || strchr("_.:-", s[i]) != NULL;
    if (!ok)
        api_errorf(call, 400, "parameter_invalid", "sku",
                   "a sku is 1 to %d letters, digits, _ . : or -, starting with a letter or digit",
                   SKU_MAX);
    return ok;
}

void products_list(api_call_t *call)
{
    if (admin_only(call))
        api_list_page(call, "products_page", NULL, api_arg(call, "starting_after"));
}

void products_get(api_call_t *call)
{
    if (!admin_only(call) || !sku_check(call))
        return;
    ps_pg_err_t err;
    const char *params[] = {call->id};
    PGresult *res = ps_pg_exec_prepared(call->pg, "product", 1, params, &err);
    if (res == NULL) {
        api_db_error(call, &err);
        return;
    }
    if (PQntuples(res) == 0)
        api_errorf(call, 404, "resource_missing", "sku", "no such product: %s", call->id);
    else
        http_finish(call->req, 200, ps_xstrdup(PQgetvalue(res, 0, 0)));
    PQclear(res);
}

void products_put(api_call_t *call)
{
    static const char *const fields[] = {"stock", "name", NULL};
    if (!admin_only(call) || !sku_check(call))
        return;
    json_t *body = validate_body(call);
    if (body == NULL)
        return;
    int64_t stock;
    const char *name;
    if (validate_fields(call, body, "", fields) == 0 &&
        validate_int(call, body, "", "stock", 0, STOCK_MAX, &stock) == 0 &&
        validate_name(call, body, "", "name", &name) == 0)
        commands_submit(call, PS_TOPIC_COMMANDS_PAYMENTS, "product.put", NULL, NULL, call->id,
                        json_pack("{s:I, s:s?}", "stock", (json_int_t)stock, "name", name));
    json_decref(body);
}
