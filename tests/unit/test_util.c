#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "paystream/hmac.h"
#include "paystream/util.h"

Test(util, ordered_ids_are_hex_unique_and_sort_by_time)
{
    char a[PS_ORDERED_HEX_LEN + 1], b[PS_ORDERED_HEX_LEN + 1];
    ps_ordered_hex(a);
    ps_sleep_ms(2);
    ps_ordered_hex(b);
    cr_assert_eq(strlen(a), PS_ORDERED_HEX_LEN);
    cr_assert_eq(strspn(a, "0123456789abcdef"), PS_ORDERED_HEX_LEN, "%s", a);
    cr_assert_lt(strcmp(a, b), 0, "%s is made later than %s", b, a);
    cr_assert_neq(memcmp(a + 14, b + 14, 18), 0, "the random parts differ");
    /* The first 14 digits are the wall clock in microseconds. */
    char head[15];
    memcpy(head, a, 14);
    head[14] = '\0';
    long long us = strtoll(head, NULL, 16);
    long long now_us = (long long)ps_now_ms() * 1000;
    cr_assert(us <= now_us + 1000 && us > now_us - 5000000, "%lld vs %lld", us, now_us);
}

Test(util, sha256_of_pieces_is_the_digest_of_their_concatenation)
{
    char hex[65];
    ps_hmac_piece_t abc[] = {{"a", 1}, {"bc", 2}};
    cr_assert_eq(ps_sha256_hex(abc, 2, hex), 0);
    /* FIPS 180-2, appendix B.1. */
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ps_hmac_piece_t empty[] = {{"", 0}};
    cr_assert_eq(ps_sha256_hex(empty, 1, hex), 0);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(util, words_are_whole_space_separated_words)
{
    cr_assert(ps_has_word("read write admin", "admin"));
    cr_assert(ps_has_word("  admin  ", "admin"));
    cr_assert(ps_has_word("limit starting_after status", "starting_after"));
    cr_assert_not(ps_has_word("administrator", "admin"));
    cr_assert_not(ps_has_word("read sub-admin", "admin"));
    cr_assert_not(ps_has_word("limit starting_after", "limit starting_after"), "one word only");
    cr_assert_not(ps_has_word("limit ", ""), "the empty word is no word");
    cr_assert_not(ps_has_word("", "admin"));
}

Test(util, tokens_are_printable_ascii_without_spaces)
{
    cr_assert(ps_is_token("job-1:a/b", 100));
    cr_assert_not(ps_is_token("", 100));
    cr_assert_not(ps_is_token("has space", 100));
    cr_assert_not(ps_is_token("tab\there", 100));
    cr_assert_not(ps_is_token("caf\xc3\xa9", 100));
    cr_assert(ps_is_token("abc", 3));
    cr_assert_not(ps_is_token("abcd", 3));
}
