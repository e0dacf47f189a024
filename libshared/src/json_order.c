/* See json_order.h. One pass: each member is written out where it comes
 * and its place remembered; when its object closes, the members are put in
 * jsonb's order through a copy of the object's text. */
#include "paystream/json_order.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint32_t start, end; /* the member's text, "key":value, in out */
    uint32_t klen;       /* its key's length between the quotes */
} member_t;

typedef struct {
    const char *p, *end; /* what is left to read */
    const char *run;     /* read but not yet copied, up to p */
    char *out;
    size_t o;            /* what is copied */
    member_t *m;         /* the members of the objects open, innermost last */
    size_t nm, cap;
    char *scratch;       /* room for the document */
    int depth;
} ord_t;

static int value(ord_t *s);

/* Where the next byte read goes in out. */
static uint32_t pos(const ord_t *s)
{
    return (uint32_t)(s->o + (size_t)(s->p - s->run));
}

/* Copies what is read and not yet copied (every byte written is one read,
 * so out never needs more room than the document). */
static void flush(ord_t *s)
{
    memcpy(s->out + s->o, s->run, (size_t)(s->p - s->run));
    s->o += (size_t)(s->p - s->run);
    s->run = s->p;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline void skip_ws(ord_t *s)
{
    if (s->p >= s->end || !is_ws(*s->p))
        return;
    flush(s);
    while (s->p < s->end && is_ws(*s->p))
        s->p++;
    s->run = s->p;
}

/* Reads c if it is next. */
static int take_char(ord_t *s, char c)
{
    if (s->p >= s->end || *s->p != c)
        return -1;
    s->p++;
    return 0;
}

/* A string, escapes and all: what is inside is PostgreSQL's to check. It
 * ends at the first quote after an even run of backslashes. */
static int string(ord_t *s)
{
    const char *from = s->p + 1, *q = from;
    for (;;) {
        const char *quote = memchr(q, '"', (size_t)(s->end - q));
        if (quote == NULL)
            return -1;
        const char *b = quote;
        while (b > from && b[-1] == '\\')
            b--;
        if ((quote - b) % 2 == 0) {
            s->p = quote + 1;
            return 0;
        }
        q = quote + 1;
    }
}

/* The bytes of numbers and literals. */
static int scalar_byte(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' || c == '+' ||
           c == '.' || c == 'E';
}

/* A number or a literal: its bytes, whatever they spell. */
static int scalar(ord_t *s)
{
    const char *q = s->p;
    while (q < s->end && scalar_byte(*q))
        q++;
    if (q == s->p)
        return -1;
    s->p = q;
    return 0;
}

/* Whether a's key comes before b's in jsonb: shorter first, then bytewise. */
static int before(const ord_t *s, const member_t *a, const member_t *b)
{
    if (a->klen != b->klen)
        return a->klen < b->klen;
    return memcmp(s->out + a->start + 1, s->out + b->start + 1, a->klen) < 0;
}

/* Sorts n members stably by insertion: cheap for a few, and for many whose
 * keys of one length mostly come in order already. */
static void insertion_sort(const ord_t *s, member_t *m, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        member_t x = m[i];
        size_t j = i;
        for (; j > 0 && before(s, &x, &m[j - 1]); j--)
            m[j] = m[j - 1];
        m[j] = x;
    }
}

/* Sorts many members stably by key length (counting; keys of KEY_SHORT
 * bytes or more share the last count) into sorted, then by the bytes of
 * keys of one length. */
static void counting_sort(const ord_t *s, const member_t *m, size_t n, member_t *sorted)
{
    enum { KEY_SHORT = 64 };
    uint16_t at[KEY_SHORT + 2] = {0};
    for (size_t i = 0; i < n; i++)
        at[(m[i].klen < KEY_SHORT ? m[i].klen : KEY_SHORT) + 1]++;
    for (size_t i = 1; i < KEY_SHORT + 2; i++)
        at[i] = (uint16_t)(at[i] + at[i - 1]);
    for (size_t i = 0; i < n; i++)
        sorted[at[m[i].klen < KEY_SHORT ? m[i].klen : KEY_SHORT]++] = m[i];
    insertion_sort(s, sorted, n);
}

/* Puts the members m[base..nm) of the object copied from start in jsonb's
 * order, then rewrites its text in that order. */
static void order_members(ord_t *s, size_t base, size_t start)
{
    member_t *m = s->m + base, sorted[PS_JSON_ORDER_MEMBERS];
    size_t n = s->nm - base, i = 1;
    while (i < n && !before(s, &m[i], &m[i - 1]))
        i++;
    if (i >= n)
        return;
    if (n <= 8) {
        insertion_sort(s, m, n);
        memcpy(sorted, m, n * sizeof(*m));
    } else {
        counting_sort(s, m, n, sorted);
    }
    memcpy(s->scratch, s->out + start, s->o - start);
    size_t w = start + 1;
    for (i = 0; i < n; i++) {
        if (i > 0)
            s->out[w++] = ',';
        memcpy(s->out + w, s->scratch + (sorted[i].start - start), sorted[i].end - sorted[i].start);
        w += sorted[i].end - sorted[i].start;
    }
}

static int push_member(ord_t *s, member_t m)
{
    if (s->nm == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        member_t *grown = realloc(s->m, cap * sizeof(*grown));
        if (grown == NULL)
            return -1;
        s->m = grown;
        s->cap = cap;
    }
    s->m[s->nm++] = m;
    return 0;
}

static int object(ord_t *s)
{
    size_t start = pos(s), base = s->nm;
    s->p++;
    skip_ws(s);
    if (take_char(s, '}') == 0)
        return 0;
    for (;;) {
        member_t m = {.start = pos(s)};
        const char *key = s->p;
        if (s->nm - base == PS_JSON_ORDER_MEMBERS || s->p >= s->end || *s->p != '"' || string(s) < 0)
            return -1;
        m.klen = (uint32_t)(s->p - key - 2);
        skip_ws(s);
        if (take_char(s, ':') < 0)
            return -1;
        skip_ws(s);
        if (value(s) < 0)
            return -1;
        m.end = pos(s);
        if (push_member(s, m) < 0)
            return -1;
        skip_ws(s);
        if (take_char(s, '}') == 0)
            break;
        if (take_char(s, ',') < 0)
            return -1;
        skip_ws(s);
    }
    flush(s);
    order_members(s, base, start);
    s->nm = base;
    return 0;
}

static int array(ord_t *s)
{
    s->p++;
    skip_ws(s);
    if (take_char(s, ']') == 0)
        return 0;
    for (;;) {
        if (value(s) < 0)
            return -1;
        skip_ws(s);
        if (take_char(s, ']') == 0)
            return 0;
        if (take_char(s, ',') < 0)
            return -1;
        skip_ws(s);
    }
}

static int value(ord_t *s)
{
    if (s->p >= s->end)
        return -1;
    if (*s->p == '"')
        return string(s);
    if (*s->p != '{' && *s->p != '[')
        return scalar(s);
    if (s->depth == PS_JSON_ORDER_DEPTH)
        return -1;
    s->depth++;
    int r = *s->p == '{' ? object(s) : array(s);
    s->depth--;
    return r;
}

long ps_json_jsonb_order(const char *in, size_t len, char *out)
{
    if (len == 0 || len > UINT32_MAX)
        return -1;
    ord_t s = {.p = in, .end = in + len, .run = in, .out = out, .scratch = malloc(len)};
    if (s.scratch == NULL)
        return -1;
    skip_ws(&s);
    int r = value(&s);
    skip_ws(&s);
    flush(&s);
    free(s.scratch);
    free(s.m);
    return r < 0 || s.p != s.end ? -1 : (long)s.o;
}
