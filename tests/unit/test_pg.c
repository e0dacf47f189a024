/* Which PostgreSQL failures are the database's (wait and retry) and which
 * are the message's (retry a few times, then dead-letter). */
#include <criterion/criterion.h>

#include "paystream/pg.h"

Test(pg, failures_of_the_database_are_retried)
{
    static const char *const waits[] = {
        "",      /* the connection itself failed */
        "08006", /* connection failure */
        "40001", /* serialization failure */
        "40P01", /* deadlock */
        "53300", /* too many connections */
        "57P01", /* admin shutdown */
        "42703", /* undefined column: a migration is missing */
        "42883", /* undefined function */
        "42501", /* insufficient privilege */
        "28P01", /* bad password */
        "3D000", /* no such database */
    };
    for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++)
        cr_expect(ps_pg_sqlstate_transient(waits[i]), "%s should be waited out", waits[i]);
}

Test(pg, failures_of_a_message_are_not)
{
    static const char *const refuses[] = {
        "23505", /* unique violation */
        "23514", /* check violation */
        "22P02", /* invalid text representation */
        "22003", /* numeric value out of range */
        "P0001", /* raise_exception */
        "23503", /* foreign key violation */
    };
    for (size_t i = 0; i < sizeof(refuses) / sizeof(refuses[0]); i++)
        cr_expect(!ps_pg_sqlstate_transient(refuses[i]), "%s is the message's fault", refuses[i]);
}
