-- Data of every kind, written through paystream 0.1's own functions into a
-- database made by its migrations (paystream-0.1-schema.sql.gz): what a
-- running 0.1 system would hold. test_schema.c then upgrades it.

INSERT INTO api_keys (id, secret_sha256, actor, sandbox, admin)
VALUES ('psk_live_00000000000000aa', repeat('a', 64), 'alice', false, true);
INSERT INTO webhook_subscribers (id, url, secret, event_types)
VALUES ('erp', 'https://erp.example.com/hooks', 'pswh_0123456789abcdef0123', '{*}');
INSERT INTO dead_letters (topic, "partition", "offset", message_id, reason, payload)
VALUES ('paystream.stripe.events', 3, 42, 'm-dead', 'not a Stripe event', '\x7b7d');

SELECT ps_product_put('sku_lamp', 'Lamp', 10);
SELECT ps_product_put('sku_tea', 'Tea', 100);

-- Two orders and a payment of the first, through commands.
SELECT count(*) FROM ps_apply_commands($$[
  {"command_id":"cmd_up_1","type":"order.create","resource_id":"ord_up_1","request_sha256":"s1",
   "actor":"alice","message_id":"m-1","params":{"currency":"EUR","email":"alice@example.com",
   "customer_name":"Alice","expires_in":3600,
   "items":[{"product_id":"sku_lamp","name":"Lamp","quantity":2,"unit_price_minor":1250}]}},
  {"command_id":"cmd_up_2","type":"order.create","resource_id":"ord_up_2","request_sha256":"s2",
   "actor":"bob","message_id":"m-2","params":{"currency":"USD",
   "items":[{"product_id":"sku_tea","name":"Tea","quantity":3,"unit_price_minor":500}]}},
  {"command_id":"cmd_up_3","type":"payment.create","resource_id":"pay_up_1","request_sha256":"s3",
   "actor":"alice","message_id":"m-3","params":{"order_id":"ord_up_1","amount_minor":2500,
   "currency":"EUR","gateway":"sandbox"}}
]$$::jsonb);

-- The stock of both, reserved.
SELECT count(*) FROM ps_apply_inventory_events($$[
  {"message_id":"d-1","type":"order.created","data":{"order_id":"ord_up_1",
   "items":[{"sku":"sku_lamp","quantity":2}]}},
  {"message_id":"d-2","type":"order.created","data":{"order_id":"ord_up_2",
   "items":[{"sku":"sku_tea","quantity":3}]}}
]$$::jsonb, true);

-- Stripe's events: the first payment's intent adopted and paid, a payment of
-- the platform's with a partial refund, a failure.
SELECT count(*) FROM ps_apply_stripe_events($$[
  {"event_id":"evt_up_1","type":"payment_intent.succeeded","created":1700000000,"message_id":"m-4",
   "payload":{"id":"evt_up_1"},"payment_intent":"pi_up_1","intent_status":"completed",
   "gateway_status":"succeeded","amount":2500,"currency":"EUR","captured":2500,
   "charge_id":"ch_up_1","payment_id":"pay_up_1","order_id":"ord_up_1"},
  {"event_id":"evt_up_2","type":"charge.refunded","created":1700000001,"message_id":"m-5",
   "payload":{"id":"evt_up_2"},"payment_intent":"pi_up_2","intent_status":"completed",
   "amount":4000,"currency":"USD","captured":4000,"refunded":1000,"charge_id":"ch_up_2",
   "refunds":[{"id":"re_up_2","amount":1000,"currency":"USD","status":"succeeded"}]},
  {"event_id":"evt_up_3","type":"payment_intent.payment_failed","created":1700000002,
   "message_id":"m-6","payload":{"id":"evt_up_3"},"payment_intent":"pi_up_3",
   "intent_status":"failed","amount":700,"currency":"USD","failure_code":"card_declined"},
  {"event_id":"evt_up_4","type":"customer.created","created":1700000003,"message_id":"m-7",
   "payload":{"id":"evt_up_4"}}
]$$::jsonb);

-- A customer with usage past a threshold, and a balance session.
INSERT INTO customers (id, email, name, gateway, stripe_customer_id, currency)
VALUES ('carol', 'carol@example.com', 'Carol', 'sandbox', 'cus_sandbox_carol', 'USD');
SELECT count(*) FROM ps_apply_usage($$[
  {"customer":"carol","meter":"quantum_shot","quantity":1000,"unit_price_minor":35,
   "currency":"USD","occurred_at":1700000000,"identifier":"job-1","threshold_minor":30000,
   "message_id":"m-8"}
]$$::jsonb);
INSERT INTO checkout_sessions (id, purpose, customer_id, stripe_customer_id, gateway, state,
                               amount_minor, currency, url, command_id)
VALUES ('cs_up_1', 'balance', 'carol', 'cus_sandbox_carol', 'sandbox', 'open', 5000, 'USD',
        'https://checkout.example.com/cs_up_1', 'cmd_up_4');

-- A connected account with a bank account and a person.
SELECT count(*) FROM ps_apply_connect_events($$[
  {"event_id":"evt_up_c1","type":"account.updated","account":"acct_up_1","created":1700000000,
   "message_id":"m-9","object":{"id":"acct_up_1","object":"account","charges_enabled":true,
   "payouts_enabled":true,"details_submitted":true,
   "capabilities":{"card_payments":"active","transfers":"active"},
   "requirements":{"currently_due":[],"disabled_reason":null}}},
  {"event_id":"evt_up_c2","type":"account.external_account.created","account":"acct_up_1",
   "created":1700000001,"message_id":"m-10","object":{"id":"ba_up_1","object":"bank_account",
   "last4":"6789","bank_name":"STRIPE TEST BANK","country":"US","currency":"usd",
   "status":"new","default_for_currency":true}},
  {"event_id":"evt_up_c3","type":"person.created","account":"acct_up_1","created":1700000002,
   "message_id":"m-11","object":{"id":"person_up_1","object":"person",
   "relationship":{"representative":true},"verification":{"status":"verified"}}}
]$$::jsonb);

-- The notifications the outbox's events warrant.
SELECT count(*) FROM ps_plan_notifications(
  (SELECT jsonb_agg(payload || jsonb_build_object('message_id', message_id) ORDER BY id)
   FROM outbox), ARRAY['ops@example.com'], true);
