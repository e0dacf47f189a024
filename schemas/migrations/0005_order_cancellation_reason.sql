-- Why an order was cancelled: requested (by its owner or an admin), or
-- out_of_stock (the inventory could not reserve its lines, and the payments
-- workers' sweep cancelled it). Orders cancelled before this column were
-- all requested.
ALTER TABLE orders ADD COLUMN cancellation_reason text
    CONSTRAINT orders_cancellation_reason_check
    CHECK (cancellation_reason IN ('requested', 'out_of_stock'));
UPDATE orders SET cancellation_reason = 'requested' WHERE status = 'cancelled';
-- The lines the inventory rejected: where the sweep looks for orders to
-- cancel, without reading every reservation.
CREATE INDEX stock_reservations_rejected ON stock_reservations (order_id)
    WHERE status = 'rejected_out_of_stock';
