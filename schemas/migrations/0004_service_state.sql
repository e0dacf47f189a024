-- What a running service says of itself for the others to show: the
-- payments workers state their gateway here, and the intake's /health
-- reports it (stripe_enabled), since only the workers hold Stripe's key.
CREATE TABLE service_state (
    service    text PRIMARY KEY,
    state      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
