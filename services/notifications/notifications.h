/* Internal interfaces of paystream-notifications. */
#ifndef PAYSTREAM_NOTIFICATIONS_H
#define PAYSTREAM_NOTIFICATIONS_H

#include <jansson.h>
#include <stddef.h>

/* render.c: the email templates, files NAME.txt and NAME.html of one
 * folder. The .txt file's first line is "Subject: ...", then a blank line,
 * then the text body. {{key}} is replaced by the value of key: as it is in
 * the subject and the text, HTML-escaped in the HTML (a key ending in _html
 * holds HTML made here, and goes in as it is). */
typedef struct templates templates_t;

/* Loads every template the notifications use from dir. Returns them, or
 * NULL with err naming the file that is missing or malformed. */
templates_t *templates_load(const char *dir, char *err, size_t errlen);
void templates_free(templates_t *t);

/* The values an event's templates may use: each scalar of its data (and of
 * objects in it, as parent_key), amounts of *_minor keys formatted in the
 * event's currency without the suffix, times of *_at keys in UTC, and
 * items_text/items_html, short_text/short_html for its lists. */
json_t *render_values(json_t *event);

/* An email rendered from template name: subject (one line), text and HTML.
 * Returns 0, or -1 when there is no such template. Free with email_free. */
typedef struct {
    char *subject, *text, *html;
} email_t;
int render_email(const templates_t *t, const char *name, json_t *values, email_t *out);
void email_free(email_t *e);

/* s with & < > " ' as HTML entities. Free it. */
char *html_escape(const char *s);

/* mail.c: the SMTP settings and one delivery. */
typedef struct {
    const char *url, *user, *password, *from;
    int starttls;
    long timeout_ms;
} smtp_t;

/* The whole message (headers and a multipart/alternative body, CRLF
 * lines), its Message-ID made from id, its boundary random. Free it. */
char *mail_compose(const smtp_t *smtp, const char *to, const email_t *e, long long id);
/* Whether the settings may be used: a user and password over a clear-text
 * smtp:// connection (no STARTTLS) only when allow_plaintext_auth. Returns
 * 0, or -1 with why in err. */
int smtp_check(const smtp_t *smtp, int allow_plaintext_auth, char *err, size_t errlen);
/* Sends msg to to. Returns 0, or -1 with why in err. */
int mail_send(const smtp_t *smtp, const char *to, const char *msg, char *err, size_t errlen);

/* hook.c: posts body to url signed with secret (Paystream-Signature: t=,v1=)
 * and event_id in Paystream-Event-Id. Returns 0 on a 2xx answer, else -1
 * with why in err. */
int hook_post(const char *url, const char *secret, const char *event_id, const char *body,
              long timeout_ms, char *err, size_t errlen);
/* The body posted for a domain event: {id, object, type, aggregate,
 * occurred_at, data}. Free it. */
char *hook_body(json_t *event);

/* sender.c: threads that take due notifications and send them. */
typedef struct {
    const char *dsn;
    const templates_t *templates;
    smtp_t smtp;
    int threads, max_attempts;
    long timeout_ms;
    long long retry_base_ms, retry_max_ms;
} sender_config_t;

int senders_start(const sender_config_t *c, char *err, size_t errlen);
/* Wakes the senders: new notifications were planned. */
void senders_wake(void);
void senders_stop(void);

#endif
