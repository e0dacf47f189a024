-- PayPal: the link a payment waits on (the buyer's approval of a PayPal
-- order), and every verified PayPal webhook event, which is also the
-- dedupe of paystream.paypal.events.
ALTER TABLE payments ADD COLUMN next_action jsonb;  -- {type: redirect_to_url, url}

CREATE TABLE paypal_events (
    id          text PRIMARY KEY,                  -- WH-...
    type        text NOT NULL,                     -- event_type
    created     timestamptz NOT NULL,              -- create_time
    resource_id text,
    payment_id  text,                              -- the payment it concerns, when paystream made it
    outcome     text NOT NULL,
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX paypal_events_payment ON paypal_events (payment_id) WHERE payment_id IS NOT NULL;
