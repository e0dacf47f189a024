/* A validating JSON scanner that keeps only the members asked for (see
 * json_scan.h). Iterative, so that the nesting limit, not the stack, bounds
 * a hostile document. */
#include "paystream/json_scan.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */
#define PATH_MAX_LEN 128
#define PATH_DEPTH 16  /* members deeper than this are never asked for */

typedef struct {
    const unsigned char *p, *start, *end;
    ps_json_field_t *fields;
    const size_t *path_lens; /* strlen of each field's path */
    size_t nfields;
    char path[PATH_MAX_LEN + 1]; /* of the value being read; tracked only if path_ok */
    size_t path_len;
    int path_ok;
    const char *why;
} scan_t;

static int fail(scan_t *s, const char *why)
{
    s->why = why;
    return -1;
}

static void skip_ws(scan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* The field asked for at the current path, or NULL. */
static ps_json_field_t *wanted(scan_t *s)
{
    if (!s->path_ok)
        return NULL;
    for (size_t i = 0; i < s->nfields; i++) {
        if (s->path_lens[i] == s->path_len && memcmp(s->fields[i].path, s->path, s->path_len) == 0)
            return &s->fields[i];
    }
    return NULL;
}

/* Whether a field is asked for inside the container at the current path:
 * if not, nothing in it is looked for (most of an event is not). */
static int leads_to_field(const scan_t *s)
{
    for (size_t i = 0; i < s->nfields; i++) {
        const char *p = s->fields[i].path;
        if (s->path_lens[i] > s->path_len && memcmp(p, s->path, s->path_len) == 0 &&
            (s->path_len == 0 || p[s->path_len] == '.' || p[s->path_len] == '['))
            return 1;
    }
    return 0;
}

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* Appends k bytes to out (cap bytes), counting in *n all of them, also
 * those that do not fit. */
static void put_bytes(char *out, size_t cap, size_t *n, const unsigned char *src, size_t k)
{
    if (out && *n < cap)
        memcpy(out + *n, src, k < cap - *n ? k : cap - *n);
    *n += k;
}

/* Appends code point cp as UTF-8 to out (cap bytes), counting in *n. */
static void put_utf8(char *out, size_t cap, size_t *n, unsigned cp)
{
    unsigned char b[4];
    size_t k;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp, k = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | cp >> 6), b[1] = (unsigned char)(0x80 | (cp & 0x3F)), k = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | cp >> 12), b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F)), k = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | cp >> 18), b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F)), b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 4;
    }
    put_bytes(out, cap, n, b, k);
}

/* Length of the valid UTF-8 sequence at p (strictly: no overlong forms, no
 * surrogates, at most U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t k;
    unsigned cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        k = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        k = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        k = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if ((size_t)(end - p) < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return k;
}

/* Reads the string at s->p (at its opening quote), unescaping it into out
 * (cap bytes, NUL-terminated when it fits; out may be NULL). Its length in
 * *n. */
static int read_string(scan_t *s, char *out, size_t cap, size_t *n)
{
    *n = 0;
    s->p++; /* the quote */
    for (;;) {
        if (s->p >= s->end)
            return fail(s, "unterminated string");
        unsigned c = *s->p;
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(s, "control character in a string");
        if (c == '\\') {
            if (s->end - s->p < 2)
                return fail(s, "unterminated string");
            unsigned e = s->p[1], cp;
            const char *simple = strchr("\"\\/bfnrt", (int)e);
            if (e != 0 && simple) {
                static const char map[] = "\"\\/\b\f\n\r\t";
                put_utf8(out, cap, n, (unsigned char)map[simple - "\"\\/bfnrt"]);
                s->p += 2;
                continue;
            }
            if (e != 'u' || s->end - s->p < 6 || hex4(s->p + 2, &cp) < 0)
                return fail(s, "invalid escape in a string");
            s->p += 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return fail(s, "invalid Unicode escape (a lone low surrogate)");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' ||
                    hex4(s->p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return fail(s, "invalid Unicode escape (a lone high surrogate)");
                s->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0)
                return fail(s, "\\u0000 is not allowed in a string");
            put_utf8(out, cap, n, cp);
            continue;
        }
        /* Most of a string is plain ASCII: a run of it is taken at once. */
        const unsigned char *q = s->p;
        while (q < s->end && *q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\')
            q++;
        size_t k = (size_t)(q - s->p);
        if (k == 0 && (k = utf8_len(s->p, s->end)) == 0)
            return fail(s, "invalid UTF-8 in a string");
        put_bytes(out, cap, n, s->p, k);
        s->p += k;
    }
    s->p++;
    if (out && cap > 0)
        out[*n < cap ? *n : cap - 1] = '\0';
    return 0;
}

static int is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* Reads a number; an integer must fit in int64, a real must be finite. */
static int read_number(scan_t *s, ps_json_field_t *f)
{
    const unsigned char *from = s->p;
    int real = 0;
    if (s->p < s->end && *s->p == '-')
        s->p++;
    if (!is_digit(s->p, s->end))
        return fail(s, "invalid number");
    if (*s->p == '0')
        s->p++;
    else
        while (is_digit(s->p, s->end))
            s->p++;
    if (s->p < s->end && *s->p == '.') {
        real = 1, s->p++;
        if (!is_digit(s->p, s->end))
            return fail(s, "invalid number");
        while (is_digit(s->p, s->end))
            s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        real = 1, s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!is_digit(s->p, s->end))
            return fail(s, "invalid number");
        while (is_digit(s->p, s->end))
            s->p++;
    }
    size_t n = (size_t)(s->p - from);
    if (f) {
        f->raw = (const char *)from;
        f->raw_len = n;
    }
    char buf[64];
    char *num = n < sizeof(buf) ? buf : malloc(n + 1);
    if (num == NULL)
        abort();
    memcpy(num, from, n);
    num[n] = '\0';
    int rc = 0;
    errno = 0;
    if (real) {
        double d = strtod(num, NULL);
        if (errno == ERANGE && isinf(d))
            rc = fail(s, "real number overflow");
        else if (f)
            f->kind = PS_JSON_REAL;
    } else {
        long long v = strtoll(num, NULL, 10);
        if (errno == ERANGE)
            rc = fail(s, "too big integer");
        else if (f)
            f->kind = PS_JSON_INTEGER, f->integer = (int64_t)v;
    }
    if (num != buf)
        free(num);
    return rc;
}

static int read_literal(scan_t *s, const char *word, ps_json_kind_t kind, ps_json_field_t *f)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, "invalid token");
    s->p += n;
    if (f)
        f->kind = kind;
    return 0;
}

/* Marks f found, refusing a second value for the same member. */
static int found(scan_t *s, ps_json_field_t *f)
{
    if (f && f->kind != PS_JSON_ABSENT)
        return fail(s, "duplicate object key");
    return 0;
}

/* Reads a scalar value at the current path. */
static int read_scalar(scan_t *s)
{
    ps_json_field_t *f = wanted(s);
    if (found(s, f) < 0)
        return -1;
    switch (*s->p) {
    case '"':
        if (f) {
            f->raw = (const char *)s->p + 1;
            if (read_string(s, f->str, sizeof(f->str), &f->str_len) < 0)
                return -1;
            f->raw_len = (size_t)((const char *)s->p - 1 - f->raw);
            f->kind = PS_JSON_STRING;
            return 0;
        } else {
            size_t n;
            return read_string(s, NULL, 0, &n);
        }
    case 't': return read_literal(s, "true", PS_JSON_TRUE, f);
    case 'f': return read_literal(s, "false", PS_JSON_FALSE, f);
    case 'n': return read_literal(s, "null", PS_JSON_NULL, f);
    default: return read_number(s, f);
    }
}

/* Reads a member's name and makes the path that of its value. */
static int enter_member(scan_t *s, size_t parent_len, int parent_ok)
{
    char name[PATH_MAX_LEN + 1];
    size_t n;
    if (s->p >= s->end || *s->p != '"')
        return fail(s, "string or '}' expected");
    if (read_string(s, name, sizeof(name), &n) < 0)
        return -1;
    s->path_len = parent_len;
    /* An empty name, or one with a dot or a bracket in it, would read as
     * another path (at the top, "" is the document's). */
    s->path_ok = parent_ok && n > 0 && n < sizeof(name) && parent_len + 1 + n <= PATH_MAX_LEN &&
                 memchr(name, '.', n) == NULL && memchr(name, '[', n) == NULL;
    if (s->path_ok) {
        if (parent_len > 0)
            s->path[s->path_len++] = '.';
        memcpy(s->path + s->path_len, name, n);
        s->path_len += n;
    }
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':')
        return fail(s, "':' expected");
    s->p++;
    skip_ws(s);
    return 0;
}

/* Makes the path that of element index of the array at parent. */
static void enter_element(scan_t *s, size_t parent_len, int parent_ok, size_t index)
{
    char sub[24];
    int n = snprintf(sub, sizeof(sub), "[%zu]", index);
    s->path_len = parent_len;
    s->path_ok = parent_ok && parent_len + (size_t)n <= PATH_MAX_LEN;
    if (s->path_ok) {
        memcpy(s->path + s->path_len, sub, (size_t)n);
        s->path_len += (size_t)n;
    }
}

/* A container asked for (f, or NULL) ended just before end. */
static void closed(ps_json_field_t *f, const unsigned char *end)
{
    if (f)
        f->raw_len = (size_t)((const char *)end - f->raw);
}

#define PLEN(d) ((d) < PATH_DEPTH ? path_len[d] : 0)
#define POK(d) ((d) < PATH_DEPTH ? path_ok[d] : 0)

int ps_json_scan(const char *buf, size_t len, ps_json_field_t *fields, size_t nfields, char *err,
                 size_t errlen)
{
    scan_t s = {.p = (const unsigned char *)buf, .start = (const unsigned char *)buf,
                .end = (const unsigned char *)buf + len, .fields = fields, .nfields = nfields,
                .path_ok = 1};
    /* Each open container: '{' or '['; and for the shallow ones, its path,
     * whether it is tracked, and for an array the index of its element. */
    char open_[MAX_DEPTH];
    size_t path_len[PATH_DEPTH], index[PATH_DEPTH];
    unsigned char path_ok[PATH_DEPTH];
    ps_json_field_t *asked[PATH_DEPTH]; /* the field a shallow container is, if asked for */
    int depth = 0, rc = 0;
    /* Every member is looked for among the fields: their paths' lengths
     * are measured once. */
    size_t few[32], *lens = nfields <= 32 ? few : malloc(nfields * sizeof(*lens));
    if (lens == NULL)
        abort();
    s.path_lens = lens;
    for (size_t i = 0; i < nfields; i++) {
        lens[i] = strlen(fields[i].path);
        fields[i].kind = PS_JSON_ABSENT;
        fields[i].str[0] = '\0';
        fields[i].str_len = 0;
        fields[i].raw = NULL;
        fields[i].raw_len = 0;
    }
    skip_ws(&s);
    if (s.p >= s.end || (*s.p != '{' && *s.p != '[')) {
        rc = fail(&s, "'[' or '{' expected");
        goto done;
    }
    for (;;) {
        /* A value starts at s.p (after white space). */
        if (s.p >= s.end) {
            rc = fail(&s, "unexpected end of input");
            goto done;
        }
        if (*s.p == '{' || *s.p == '[') {
            ps_json_field_t *f = wanted(&s);
            if (found(&s, f) < 0 || (depth == MAX_DEPTH && fail(&s, "maximum parsing depth reached"))) {
                rc = -1;
                goto done;
            }
            if (f) {
                f->kind = *s.p == '{' ? PS_JSON_OBJECT : PS_JSON_ARRAY;
                f->raw = (const char *)s.p;
            }
            open_[depth] = (char)*s.p;
            if (depth < PATH_DEPTH) {
                path_len[depth] = s.path_len;
                path_ok[depth] = (unsigned char)(s.path_ok && leads_to_field(&s));
                index[depth] = 0;
                asked[depth] = f;
            }
            depth++;
            s.p++;
            skip_ws(&s);
            char close = open_[depth - 1] == '{' ? '}' : ']';
            if (s.p < s.end && *s.p == close) {
                s.p++;
                depth--;
                closed(depth < PATH_DEPTH ? asked[depth] : NULL, s.p);
            } else if (open_[depth - 1] == '{') {
                if (enter_member(&s, PLEN(depth - 1), POK(depth - 1)) < 0) {
                    rc = -1;
                    goto done;
                }
                continue;
            } else {
                enter_element(&s, PLEN(depth - 1), POK(depth - 1), 0);
                continue;
            }
        } else if (read_scalar(&s) < 0) {
            rc = -1;
            goto done;
        }
        /* A value ended: what follows it in its container. */
        for (;;) {
            skip_ws(&s);
            if (depth == 0) {
                if (s.p != s.end)
                    rc = fail(&s, "end of file expected");
                goto done;
            }
            char open = open_[depth - 1];
            if (s.p < s.end && *s.p == ',') {
                s.p++;
                skip_ws(&s);
                if (open == '{' && enter_member(&s, PLEN(depth - 1), POK(depth - 1)) < 0) {
                    rc = -1;
                    goto done;
                }
                if (open == '[') {
                    size_t i = depth - 1 < PATH_DEPTH ? ++index[depth - 1] : 0;
                    enter_element(&s, PLEN(depth - 1), POK(depth - 1), i);
                }
                break;
            }
            if (s.p < s.end && *s.p == (open == '{' ? '}' : ']')) {
                s.p++;
                depth--;
                closed(depth < PATH_DEPTH ? asked[depth] : NULL, s.p);
                continue;
            }
            rc = fail(&s, open == '{' ? "',' or '}' expected" : "',' or ']' expected");
            goto done;
        }
    }
done:
    if (lens != few)
        free(lens);
    if (rc < 0 && err && errlen > 0)
        snprintf(err, errlen, "%s at byte %zu", s.why, (size_t)(s.p - s.start));
    return rc;
}

const char *ps_json_str(const ps_json_field_t *f)
{
    return f->kind == PS_JSON_STRING && f->str_len < sizeof(f->str) ? f->str : NULL;
}

const char *ps_json_text(const ps_json_field_t *f)
{
    const char *s = ps_json_str(f);
    return s && *s ? s : NULL;
}

char *ps_json_strdup(const ps_json_field_t *f)
{
    if (f->kind != PS_JSON_STRING)
        return NULL;
    /* Unescaping never lengthens a string, and the scan checked it. */
    char *out = malloc(f->raw_len + 1);
    if (out == NULL)
        abort();
    scan_t s = {.p = (const unsigned char *)f->raw - 1,
                .end = (const unsigned char *)f->raw + f->raw_len + 1};
    size_t n;
    if (read_string(&s, out, f->raw_len + 1, &n) < 0)
        abort();
    return out;
}

ps_json_kind_t ps_json_kind_of(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT: return PS_JSON_OBJECT;
    case JSON_ARRAY: return PS_JSON_ARRAY;
    case JSON_STRING: return PS_JSON_STRING;
    case JSON_INTEGER: return PS_JSON_INTEGER;
    case JSON_REAL: return PS_JSON_REAL;
    case JSON_TRUE: return PS_JSON_TRUE;
    case JSON_FALSE: return PS_JSON_FALSE;
    default: return v ? PS_JSON_NULL : PS_JSON_ABSENT;
    }
}
