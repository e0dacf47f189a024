/* The money parser: a currency code (the input's first three bytes) and a
 * decimal amount (the rest). An amount it accepts is never negative, and
 * formatting it and parsing that again gives the same minor units. */
#include "fuzz.h"
#include "paystream/money.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    char currency[4];
    memcpy(currency, data, 3);
    currency[3] = '\0';
    char *text = fuzz_string(data + 3, size - 3);
    int64_t minor = -1;
    char err[160];
    if (ps_money_parse(text, currency, &minor, err, sizeof(err)) == 0) {
        FUZZ_CHECK(minor >= 0);
        char shown[64];
        FUZZ_CHECK(ps_money_format(minor, currency, shown, sizeof(shown)) > 0);
        int64_t again = -1;
        FUZZ_CHECK(ps_money_parse(shown, currency, &again, err, sizeof(err)) == 0);
        FUZZ_CHECK(again == minor);
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    free(text);
    return 0;
}
