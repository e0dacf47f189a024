/* Email over SMTP with libcurl: a multipart/alternative message, text and
 * HTML, sent to one recipient. The MIME boundary is random for every
 * message, so nothing a customer writes can guess it and close a part. */
#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notifications.h"
#include "paystream/util.h"

/* Appends s to *out (of *len bytes) with every line ending made CRLF. */
static void add_crlf(char **out, size_t *len, const char *s)
{
    size_t n = strlen(s), extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += s[i] == '\n';
    char *p = ps_xrealloc(*out, *len + n + extra + 1);
    *out = p;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r')
            continue;
        if (s[i] == '\n')
            p[(*len)++] = '\r';
        p[(*len)++] = s[i];
    }
    p[*len] = '\0';
}

/* A fresh random boundary that occurs in neither part. */
static void new_boundary(const email_t *e, char out[48])
{
    do {
        unsigned char bytes[16];
        char hex[33];
        ps_random_bytes(bytes, sizeof(bytes));
        ps_hex_encode(bytes, sizeof(bytes), hex);
        snprintf(out, 48, "=_ps_%s", hex);
    } while (strstr(e->text, out) || strstr(e->html, out));
}

char *mail_compose(const smtp_t *smtp, const char *to, const email_t *e, long long id)
{
    char boundary[48];
    new_boundary(e, boundary);
    /* The subject as an RFC 2047 encoded word, whatever it holds. */
    size_t slen = strlen(e->subject);
    unsigned char *b64 = ps_xmalloc(4 * ((slen + 2) / 3) + 1);
    EVP_EncodeBlock(b64, (const unsigned char *)e->subject, (int)slen);
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", gmtime_r(&now, &tm));
    size_t hlen = 1024 + strlen((char *)b64) + strlen(to) + strlen(smtp->from);
    char *head = ps_xmalloc(hlen);
    snprintf(head, hlen,
             "Date: %s\nFrom: %s\nTo: %s\nSubject: =?UTF-8?B?%s?=\n"
             "Message-ID: <notification-%lld@paystream>\nMIME-Version: 1.0\n"
             "Content-Type: multipart/alternative; boundary=\"%s\"\n\n"
             "--%s\nContent-Type: text/plain; charset=UTF-8\n"
             "Content-Transfer-Encoding: 8bit\n\n",
             date, smtp->from, to, b64, id, boundary, boundary);
    char part[256];
    snprintf(part, sizeof(part),
             "\n--%s\nContent-Type: text/html; charset=UTF-8\n"
             "Content-Transfer-Encoding: 8bit\n\n", boundary);
    char end[64];
    snprintf(end, sizeof(end), "\n--%s--\n", boundary);
    char *msg = NULL;
    size_t len = 0;
    add_crlf(&msg, &len, head);
    add_crlf(&msg, &len, e->text);
    add_crlf(&msg, &len, part);
    add_crlf(&msg, &len, e->html);
    add_crlf(&msg, &len, end);
    free(head);
    free(b64);
    return msg;
}

int smtp_check(const smtp_t *smtp, int allow_plaintext_auth, char *err, size_t errlen)
{
    int clear = strncmp(smtp->url, "smtp://", 7) == 0 && !smtp->starttls;
    if (smtp->user && *smtp->user && clear && !allow_plaintext_auth) {
        snprintf(err, errlen,
                 "PAYSTREAM_SMTP_USER is set but %s is a clear-text connection: the password "
                 "would cross the network readable; set PAYSTREAM_SMTP_STARTTLS=true or use "
                 "smtps://, or PAYSTREAM_SMTP_ALLOW_PLAINTEXT_AUTH=true for a relay on a "
                 "trusted network", smtp->url);
        return -1;
    }
    return 0;
}

typedef struct {
    const char *p;
    size_t left;
} upload_t;

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
    upload_t *u = arg;
    size_t take = size * n < u->left ? size * n : u->left;
    memcpy(buf, u->p, take);
    u->p += take;
    u->left -= take;
    return take;
}

int mail_send(const smtp_t *smtp, const char *to, const char *msg, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    if (c == NULL) {
        snprintf(err, errlen, "cannot make a curl handle");
        return -1;
    }
    char from[320], rcpt[320];
    snprintf(from, sizeof(from), "<%s>", smtp->from);
    snprintf(rcpt, sizeof(rcpt), "<%s>", to);
    struct curl_slist *rcpts = curl_slist_append(NULL, rcpt);
    upload_t u = {msg, strlen(msg)};
    curl_easy_setopt(c, CURLOPT_URL, smtp->url);
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpts);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &u);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, smtp->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (smtp->user && *smtp->user) {
        curl_easy_setopt(c, CURLOPT_USERNAME, smtp->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, smtp->password);
    }
    /* STARTTLS when asked: the session is refused rather than sent in
     * clear text when the server cannot. */
    if (smtp->starttls)
        curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK)
        snprintf(err, errlen, "smtp: %s (last reply %ld)", curl_easy_strerror(rc), code);
    curl_slist_free_all(rcpts);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? 0 : -1;
}
