-- The order/refund state machine: what was paid, double payments, and a per-row schedule for the
-- reconciler (next_check_at + a try counter for the backoff), claimed with short leases.
ALTER TABLE orders ADD COLUMN paid_amount INTEGER;
ALTER TABLE orders ADD COLUMN double_payment TEXT;
ALTER TABLE orders ADD COLUMN next_check_at INTEGER;
ALTER TABLE orders ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
UPDATE orders SET paid_amount = amount WHERE transaction_id IS NOT NULL;
UPDATE orders SET next_check_at = CASE WHEN prepay_id IS NOT NULL THEN created_at + 60 ELSE expire_at END
    WHERE state = 'CREATED';
DROP INDEX orders_state_created_at;
CREATE INDEX orders_next_check ON orders(next_check_at) WHERE next_check_at IS NOT NULL;

ALTER TABLE refunds ADD COLUMN source TEXT NOT NULL DEFAULT 'api';
ALTER TABLE refunds ADD COLUMN next_check_at INTEGER;
ALTER TABLE refunds ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
UPDATE refunds SET next_check_at = updated_at WHERE state IN ('PROCESSING', 'ABNORMAL');
CREATE INDEX refunds_next_check ON refunds(next_check_at) WHERE next_check_at IS NOT NULL;
-- ABNORMAL used to release its amount; it is not final, so it keeps it reserved now.
UPDATE orders SET
    refund_pending = refund_pending + (SELECT COALESCE(SUM(r.amount), 0) FROM refunds r
                                       WHERE r.out_trade_no = orders.out_trade_no AND r.state = 'ABNORMAL'),
    state = 'REFUNDING'
    WHERE EXISTS (SELECT 1 FROM refunds r WHERE r.out_trade_no = orders.out_trade_no AND r.state = 'ABNORMAL');
