-- What a dead letter needs to go back to its topic as it came
-- (paystream-admin dlq redrive): its key and headers, and when it was sent
-- back. Rows from before this migration have neither and are redriven from
-- their .dlq twin by hand.
ALTER TABLE dead_letters ADD COLUMN msg_key bytea,
                         ADD COLUMN headers jsonb,  -- [{"name", "value"}], in their order
                         ADD COLUMN redriven_at timestamptz;
