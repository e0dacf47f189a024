/* GET /billing: the customer billing page (page/), compiled in. It is a
 * static page whose script calls the API with the customer's own
 * credential, so it needs nothing of the server but its files. The
 * Content-Security-Policy lets it load only its own script and style and
 * call only this origin (its icon is an empty data: URL, so a browser asks
 * for no /favicon.ico): no inline script runs, whatever a value shown
 * might hold. */
#include <string.h>

#include "intake.h"

extern const unsigned char page_billing_html[], page_billing_js[], page_billing_css[];
extern const size_t page_billing_html_len, page_billing_js_len, page_billing_css_len;

static const struct {
    const char *path;
    const unsigned char *data;
    const size_t *len;
    const char *type;
} files[] = {
    {"/billing", page_billing_html, &page_billing_html_len, "text/html; charset=utf-8"},
    {"/billing/billing.js", page_billing_js, &page_billing_js_len,
     "text/javascript; charset=utf-8"},
    {"/billing/billing.css", page_billing_css, &page_billing_css_len, "text/css; charset=utf-8"},
};

void handle_page(request_t *req)
{
    size_t i = 0;
    while (i < sizeof(files) / sizeof(files[0]) && strcmp(files[i].path, req->url) != 0)
        i++;
    if (i == sizeof(files) / sizeof(files[0])) {
        http_respond_error(req, 404, "invalid_request_error", "not_found", "no such page", NULL);
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        *files[i].len, (void *)files[i].data, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, "Content-Type", files[i].type);
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; "
                            "connect-src 'self'; img-src 'self' data:; form-action 'none'; "
                            "base-uri 'none'; frame-ancestors 'none'");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    if (atomic_load(&intake.draining))
        MHD_add_response_header(resp, "Connection", "close");
    MHD_queue_response(req->conn, 200, resp);
    MHD_destroy_response(resp);
    req->status = 200;
}
