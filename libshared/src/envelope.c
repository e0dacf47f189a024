#include "paystream/envelope.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ps_envelope_init(ps_envelope_t *env, const char *source, const char *type)
{
    memset(env, 0, sizeof(*env));
    ps_uuid_v4(env->message_id);
    ps_strlcpy(env->source, source, sizeof(env->source));
    ps_strlcpy(env->type, type, sizeof(env->type));
    env->received_at_ms = ps_now_ms();
}

rd_kafka_headers_t *ps_envelope_to_headers(const ps_envelope_t *env)
{
    char ts[24];
    snprintf(ts, sizeof(ts), "%" PRId64, env->received_at_ms);
    rd_kafka_headers_t *h = rd_kafka_headers_new(6);
    rd_kafka_header_add(h, PS_HDR_MESSAGE_ID, -1, env->message_id, -1);
    rd_kafka_header_add(h, PS_HDR_SOURCE, -1, env->source, -1);
    rd_kafka_header_add(h, PS_HDR_TYPE, -1, env->type, -1);
    rd_kafka_header_add(h, PS_HDR_RECEIVED_AT, -1, ts, -1);
    if (env->actor[0])
        rd_kafka_header_add(h, PS_HDR_ACTOR, -1, env->actor, -1);
    if (env->actor_roles[0])
        rd_kafka_header_add(h, PS_HDR_ACTOR_ROLES, -1, env->actor_roles, -1);
    return h;
}

/* Copies the last value of header name into dst; 1 if found, 0 if absent,
 * -1 if present but too long for dst or not printable text. */
static int header_copy(const rd_kafka_headers_t *hdrs, const char *name, char *dst,
                       size_t dstlen)
{
    const void *val;
    size_t len;
    if (hdrs == NULL || rd_kafka_header_get_last(hdrs, name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    if (val == NULL || len >= dstlen)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isprint(((const unsigned char *)val)[i]))
            return -1;
    }
    memcpy(dst, val, len);
    dst[len] = '\0';
    return 1;
}

int ps_envelope_from_headers(const rd_kafka_headers_t *hdrs, ps_envelope_t *env,
                             char *err, size_t errlen)
{
    static const struct {
        const char *name;
        size_t offset, size;
        int required;
    } fields[] = {
        {PS_HDR_MESSAGE_ID, offsetof(ps_envelope_t, message_id), PS_UUID_LEN + 1, 1},
        {PS_HDR_SOURCE, offsetof(ps_envelope_t, source), sizeof(env->source), 1},
        {PS_HDR_TYPE, offsetof(ps_envelope_t, type), sizeof(env->type), 1},
        {PS_HDR_ACTOR, offsetof(ps_envelope_t, actor), sizeof(env->actor), 0},
        {PS_HDR_ACTOR_ROLES, offsetof(ps_envelope_t, actor_roles), sizeof(env->actor_roles), 0},
    };
    memset(env, 0, sizeof(*env));
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        int r = header_copy(hdrs, fields[i].name, (char *)env + fields[i].offset, fields[i].size);
        if (r < 0 || (r == 0 && fields[i].required)) {
            snprintf(err, errlen, "header %s is %s", fields[i].name, r < 0 ? "malformed" : "missing");
            return -1;
        }
    }
    char ts[24], *end;
    if (header_copy(hdrs, PS_HDR_RECEIVED_AT, ts, sizeof(ts)) != 1 || ts[0] == '\0') {
        snprintf(err, errlen, "header %s is missing or malformed", PS_HDR_RECEIVED_AT);
        return -1;
    }
    env->received_at_ms = strtoll(ts, &end, 10);
    if (*end != '\0' || env->received_at_ms <= 0) {
        snprintf(err, errlen, "header %s is not a positive integer", PS_HDR_RECEIVED_AT);
        return -1;
    }
    return 0;
}

rd_kafka_resp_err_t ps_envelope_produce(rd_kafka_t *rk, const char *topic, const char *key,
                                        const void *value, size_t len, const ps_envelope_t *env,
                                        void *opaque)
{
    rd_kafka_headers_t *hdrs = ps_envelope_to_headers(env);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
        RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err)
        rd_kafka_headers_destroy(hdrs); /* producev takes them only when it queues */
    return err;
}
