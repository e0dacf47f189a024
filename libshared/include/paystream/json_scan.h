/* Reading a few members of a JSON document without building it.
 *
 * A webhook's body is 1.4-3 KB of JSON of which the intake needs half a
 * dozen members; building the whole tree with jansson took most of its
 * CPU. ps_json_scan checks the document as jansson's json_loadb does (RFC
 * 8259, strict UTF-8, no NUL in strings, integers within int64, finite
 * reals, nesting at most 2048 deep, an object or array at the top) and
 * copies out the members it is asked for. It allocates nothing but a copy
 * of a number longer than 63 characters, to read it with strtod, and the
 * lengths of more than 32 paths asked for.
 *
 * One difference: a key given twice is refused only where it is one of the
 * asked-for members (or on their way), not everywhere as jansson's
 * JSON_REJECT_DUPLICATES does. */
#ifndef PAYSTREAM_JSON_SCAN_H
#define PAYSTREAM_JSON_SCAN_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PS_JSON_ABSENT = 0,
    PS_JSON_OBJECT,
    PS_JSON_ARRAY,
    PS_JSON_STRING,
    PS_JSON_INTEGER,
    PS_JSON_REAL,
    PS_JSON_TRUE,
    PS_JSON_FALSE,
    PS_JSON_NULL,
} ps_json_kind_t;

#define PS_JSON_STR_MAX 256

typedef struct {
    const char *path;        /* member names from the top, joined by '.', and
                              * array indexes in brackets: "items[0].unit_price";
                              * "" is the document itself */
    ps_json_kind_t kind;     /* what is there: PS_JSON_ABSENT when nothing */
    int64_t integer;         /* PS_JSON_INTEGER */
    char str[PS_JSON_STR_MAX]; /* PS_JSON_STRING, unescaped, when it fits with its NUL */
    size_t str_len;          /* its length in bytes, even when it did not fit */
    const char *raw;         /* its text in the document, exactly as sent (a
                              * string's without its quotes, a container's whole) */
    size_t raw_len;
} ps_json_field_t;

/* Scans buf (len bytes) and fills each of fields (their kind, integer,
 * str). Returns 0, or -1 with why it is not JSON in err ("... at byte N"). */
int ps_json_scan(const char *buf, size_t len, ps_json_field_t *fields, size_t nfields, char *err,
                 size_t errlen);

/* The field's string when it is a string that fit, else NULL. */
const char *ps_json_str(const ps_json_field_t *f);

/* The same, and NULL for the empty string too: a member that states
 * nothing. */
const char *ps_json_text(const ps_json_field_t *f);

/* The field's string unescaped, however long, malloc'd (the caller frees
 * it); NULL when it is not a string. Only while the scanned buffer lives. */
char *ps_json_strdup(const ps_json_field_t *f);

struct json_t;

/* What a jansson value is, as the scanner names it (NULL: absent), so that
 * code reading either way checks one kind. */
ps_json_kind_t ps_json_kind_of(const struct json_t *v);

#endif
