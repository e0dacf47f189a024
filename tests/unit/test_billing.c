#include <criterion/criterion.h>
#include <string.h>

#include "paystream/billing.h"

Test(billing, parses_exact_prices)
{
    ps_billing_t b;
    char err[256];
    cr_assert_eq(ps_billing_parse("usd", "quantum_shot=0.35, gpu-hour = 2.50,free=0", &b, err,
                                  sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(b.currency, "USD");
    cr_assert_eq(b.n, 3);
    cr_assert_eq(ps_billing_meter(&b, "quantum_shot")->unit_minor, 35);
    cr_assert_eq(ps_billing_meter(&b, "gpu-hour")->unit_minor, 250);
    cr_assert_eq(ps_billing_meter(&b, "free")->unit_minor, 0);
    cr_assert_null(ps_billing_meter(&b, "quantum"));
    char names[128];
    ps_billing_meter_names(&b, names, sizeof(names));
    cr_assert_str_eq(names, "quantum_shot, gpu-hour, free");
}

Test(billing, empty_is_no_meters)
{
    ps_billing_t b;
    char err[256], names[32];
    cr_assert_eq(ps_billing_parse("JPY", "", &b, err, sizeof(err)), 0);
    cr_assert_eq(b.n, 0);
    ps_billing_meter_names(&b, names, sizeof(names));
    cr_assert_str_eq(names, "(none)");
}

Test(billing, refuses_what_is_not_exact_or_valid)
{
    static const struct {
        const char *currency, *prices, *why;
    } bad[] = {
        {"USD", "shot=0.355", "decimals"},      /* finer than a cent */
        {"JPY", "shot=1.5", "decimals"},        /* JPY has no minor unit */
        {"USD", "shot=-1", "price"},
        {"USD", "shot=1e2", "price"},
        {"USD", "shot", "name=price"},
        {"USD", "Shot=1", "meter name"},
        {"USD", "=1", "meter name"},
        {"USD", "a=1,a=2", "twice"},
        {"USD", "a=1,", "trailing"},
        {"XYZ", "a=1", "ISO 4217"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ps_billing_t b;
        char err[256] = "";
        cr_assert_eq(ps_billing_parse(bad[i].currency, bad[i].prices, &b, err, sizeof(err)), -1,
                     "%s accepted", bad[i].prices);
        cr_assert(strstr(err, bad[i].why), "%s: \"%s\" does not say %s", bad[i].prices, err,
                  bad[i].why);
    }
    char long_name[PS_METER_NAME_MAX + 4];
    memset(long_name, 'a', PS_METER_NAME_MAX + 1);
    strcpy(long_name + PS_METER_NAME_MAX + 1, "=1");
    ps_billing_t b;
    char err[256];
    cr_assert_eq(ps_billing_parse("USD", long_name, &b, err, sizeof(err)), -1);
}
