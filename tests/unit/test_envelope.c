#include <criterion/criterion.h>
#include <string.h>

#include "paystream/envelope.h"

Test(envelope, round_trips_through_kafka_headers)
{
    ps_envelope_t in, out;
    char err[128];
    ps_envelope_init(&in, "api", "order.create");
    strcpy(in.actor, "user_42");
    strcpy(in.actor_roles, "admin sandbox");
    rd_kafka_headers_t *h = ps_envelope_to_headers(&in);
    cr_assert_eq(ps_envelope_from_headers(h, &out, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(out.message_id, in.message_id);
    cr_assert_str_eq(out.source, "api");
    cr_assert_str_eq(out.type, "order.create");
    cr_assert_str_eq(out.actor, "user_42");
    cr_assert_str_eq(out.actor_roles, "admin sandbox");
    cr_assert_eq(out.received_at_ms, in.received_at_ms);
    rd_kafka_headers_destroy(h);
}

Test(envelope, message_ids_are_unique_uuids)
{
    ps_envelope_t a, b;
    ps_envelope_init(&a, "stripe", "x");
    ps_envelope_init(&b, "stripe", "x");
    cr_assert_str_neq(a.message_id, b.message_id);
    cr_assert_eq(strlen(a.message_id), 36);
    cr_assert_eq(a.message_id[14], '4', "version 4 UUID");
}

Test(envelope, actor_is_optional)
{
    ps_envelope_t in, out;
    char err[128];
    ps_envelope_init(&in, "stripe", "payment_intent.succeeded");
    rd_kafka_headers_t *h = ps_envelope_to_headers(&in);
    cr_assert_eq(ps_envelope_from_headers(h, &out, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(out.actor, "");
    cr_assert_str_eq(out.actor_roles, "");
    rd_kafka_headers_destroy(h);
}

Test(envelope, refuses_missing_or_malformed_headers)
{
    ps_envelope_t out;
    char err[128];
    cr_assert_eq(ps_envelope_from_headers(NULL, &out, err, sizeof(err)), -1);
    cr_assert(strstr(err, "message_id") != NULL, "%s", err);

    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    rd_kafka_header_add(h, "message_id", -1, "m1", -1);
    rd_kafka_header_add(h, "source", -1, "stripe", -1);
    rd_kafka_header_add(h, "type", -1, "t", -1);
    rd_kafka_header_add(h, "received_at", -1, "12x", -1);
    cr_assert_eq(ps_envelope_from_headers(h, &out, err, sizeof(err)), -1);
    cr_assert(strstr(err, "received_at") != NULL, "%s", err);
    rd_kafka_headers_destroy(h);

    char longtype[300];
    memset(longtype, 'a', sizeof(longtype) - 1);
    longtype[sizeof(longtype) - 1] = '\0';
    h = rd_kafka_headers_new(4);
    rd_kafka_header_add(h, "message_id", -1, "m1", -1);
    rd_kafka_header_add(h, "source", -1, "stripe", -1);
    rd_kafka_header_add(h, "type", -1, longtype, -1);
    rd_kafka_header_add(h, "received_at", -1, "1", -1);
    cr_assert_eq(ps_envelope_from_headers(h, &out, err, sizeof(err)), -1,
                 "an over-long header is refused, not truncated");
    rd_kafka_headers_destroy(h);

    h = rd_kafka_headers_new(4);
    rd_kafka_header_add(h, "message_id", -1, "m\n1", -1);
    rd_kafka_header_add(h, "source", -1, "stripe", -1);
    rd_kafka_header_add(h, "type", -1, "t", -1);
    rd_kafka_header_add(h, "received_at", -1, "1", -1);
    cr_assert_eq(ps_envelope_from_headers(h, &out, err, sizeof(err)), -1,
                 "control characters are refused");
    rd_kafka_headers_destroy(h);
}
