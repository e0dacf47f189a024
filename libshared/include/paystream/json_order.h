/* A JSON document with its objects' members in the order PostgreSQL's
 * jsonb keeps them.
 *
 * jsonb stores an object's members sorted by key: shorter keys first, then
 * bytewise. Its input function sorts each object it reads, and for Stripe's
 * events, whose keys come alphabetically, that sort was a quarter to a
 * third of the CPU PostgreSQL spent turning a payload into jsonb. Given the
 * members already in that order, it only checks them. The document stored
 * is the same either way: jsonb keeps no order of its own. */
#ifndef PAYSTREAM_JSON_ORDER_H
#define PAYSTREAM_JSON_ORDER_H

#include <stddef.h>

/* Objects nested deeper than this are left to PostgreSQL (-1). */
#define PS_JSON_ORDER_DEPTH 64

/* So is an object of more members: they are sorted on the stack, by a sort
 * that is quadratic at worst; no object of Stripe's has a fifth as many. */
#define PS_JSON_ORDER_MEMBERS 256

/* Writes the document in[0..len) to out (room for len bytes) with each
 * object's members in jsonb's order (by the key's bytes as written: an
 * escaped key may end up out of place, which jsonb then sorts itself) and
 * no whitespace between tokens. Members with the same key keep their
 * order, so the last still wins. Strings, numbers and literals are copied
 * as they are. Returns the length written, at most len; or -1, out
 * undefined, when in is not one JSON value (as far as its structure
 * shows: what is inside a string, a number or a literal is PostgreSQL's to
 * check), nests deeper than PS_JSON_ORDER_DEPTH, has an object of more
 * than PS_JSON_ORDER_MEMBERS members or is over 4 GB. */
long ps_json_jsonb_order(const char *in, size_t len, char *out);

#endif
