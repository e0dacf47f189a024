-- Brings a database made by paystream 0.1's migrations (001_stripe_payments.sql
-- to 010_static_batch_plans.sql, and 011_trust_boundaries.sql if it ran) to
-- the tables of migrations/0001_baseline.sql, keeping every row. --migrate
-- runs it once, instead of the baseline, on such a database; the functions
-- 0.1 made are replaced by those of functions/ right after.

-- Why a Stripe event changed nothing (livemode_mismatch, account_mismatch, ...).
ALTER TABLE stripe_events ADD COLUMN IF NOT EXISTS outcome text;

-- Connect events of the other mode are audited as such.
ALTER TABLE account_audit_log DROP CONSTRAINT account_audit_log_outcome_check,
    ADD CONSTRAINT account_audit_log_outcome_check
    CHECK (outcome IN ('applied', 'stale', 'unhandled', 'livemode_mismatch'));

-- Who may take payments on behalf of a connected account, besides admins.
CREATE TABLE IF NOT EXISTS account_links (
    account    text NOT NULL,
    actor      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, actor)
);
