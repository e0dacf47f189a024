-- A refund's reason in the caller's own words ("Product defect"), kept when
-- it is none of the gateway's reasons (Stripe's: duplicate, fraudulent,
-- requested_by_customer): on the call, then on the refund it made.
ALTER TABLE gateway_calls ADD COLUMN description text;
ALTER TABLE refunds ADD COLUMN description text;
