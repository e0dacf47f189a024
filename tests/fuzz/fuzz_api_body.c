/* The API's body validation, as POST /api/v1/orders runs it: any body is
 * either refused with one 400 that names a field, or turned into the
 * parameters of an order.create command within every limit the API
 * promises. The answer goes to the recorder below instead of a connection:
 * the checks only read the request. */
#include <jansson.h>

#include "fuzz.h"
#include "resources.h"
#include "validate.h"

static unsigned answered, answers;

/* The HTTP layer under the API's answers (call.c): records the answer. */
void http_finish(request_t *req, unsigned status, char *json)
{
    (void)req;
    json_t *body = json_loads(json, 0, NULL), *e = json_object_get(body, "error");
    FUZZ_CHECK(json_is_object(e));
    FUZZ_CHECK(json_string_length(json_object_get(e, "code")) > 0);
    FUZZ_CHECK(json_string_length(json_object_get(e, "message")) > 0);
    json_t *param = json_object_get(e, "param");
    FUZZ_CHECK(param == NULL || json_is_null(param) || json_string_length(param) > 0);
    json_decref(body);
    free(json);
    answered = status;
    answers++;
}

/* The promises of an accepted order body. */
static void check_params(json_t *params)
{
    FUZZ_CHECK(json_string_length(json_object_get(params, "currency")) == 3);
    json_t *items = json_object_get(params, "items"), *item;
    FUZZ_CHECK(json_array_size(items) >= 1 && json_array_size(items) <= 100);
    int64_t total = 0;
    size_t i;
    json_array_foreach(items, i, item) {
        json_int_t q = json_integer_value(json_object_get(item, "quantity"));
        json_int_t unit = json_integer_value(json_object_get(item, "unit_price_minor"));
        FUZZ_CHECK(q >= 1 && q <= 100000 && unit >= 0 && unit <= API_AMOUNT_MAX);
        total += q * unit;
        FUZZ_CHECK(total <= API_AMOUNT_MAX);
        const char *name = json_string_value(json_object_get(item, "name"));
        for (const char *c = name; c && *c; c++)
            FUZZ_CHECK((unsigned char)*c >= ' ' && *c != 0x7f);
    }
    const char *customer = json_string_value(json_object_get(params, "customer_name"));
    FUZZ_CHECK(customer == NULL || strpbrk(customer, "\r\n") == NULL);
    const char *email = json_string_value(json_object_get(params, "email"));
    FUZZ_CHECK(email == NULL || strpbrk(email, "\r\n<>,;") == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    request_t req = {0};
    req.body = fuzz_string(data, size);
    req.len = size;
    api_call_t call = {0};
    call.req = &req;
    answered = answers = 0;
    json_t *body = validate_body(&call), *params = NULL;
    if (body != NULL)
        params = order_create_params(&call, body);
    if (params != NULL) {
        FUZZ_CHECK(answers == 0);
        check_params(params);
    } else {
        FUZZ_CHECK(answers == 1 && answered == 400);
    }
    json_decref(params);
    json_decref(body);
    free(req.body);
    return 0;
}
