-- wxpay-host schema (PostgreSQL). Times are unix seconds; amounts are integer fen.
CREATE TABLE users (
    openid      TEXT PRIMARY KEY,
    unionid     TEXT,
    session_key TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    openid     TEXT NOT NULL REFERENCES users(openid),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions(expires_at);

CREATE TABLE orders (
    out_trade_no      TEXT PRIMARY KEY,
    openid            TEXT NOT NULL,
    amount            BIGINT NOT NULL CHECK (amount > 0),
    description       TEXT NOT NULL,
    attach            TEXT,
    state             TEXT NOT NULL,
    prepay_id         TEXT,
    prepay_expires_at BIGINT,
    transaction_id    TEXT,
    refunded          BIGINT NOT NULL DEFAULT 0,
    -- Sum of refunds still PROCESSING; kept in the row so the balance check is one
    -- conditional UPDATE (re-evaluated on the locked row under concurrency).
    refund_pending    BIGINT NOT NULL DEFAULT 0,
    review_reason     TEXT,
    created_at        BIGINT NOT NULL,
    expire_at         BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX orders_state_created_at ON orders(state, created_at);
CREATE INDEX orders_openid ON orders(openid);
CREATE UNIQUE INDEX orders_transaction_id ON orders(transaction_id) WHERE transaction_id IS NOT NULL;

CREATE TABLE order_events (
    id           BIGSERIAL PRIMARY KEY,
    out_trade_no TEXT NOT NULL REFERENCES orders(out_trade_no),
    at           BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    from_state   TEXT,
    to_state     TEXT,
    detail       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX order_events_order ON order_events(out_trade_no, id);

-- One row per WeChat notification id: the primary key makes handling idempotent.
CREATE TABLE notifications (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    out_trade_no TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);

CREATE TABLE refunds (
    out_refund_no TEXT PRIMARY KEY,
    out_trade_no  TEXT NOT NULL REFERENCES orders(out_trade_no),
    amount        BIGINT NOT NULL CHECK (amount > 0),
    reason        TEXT,
    state         TEXT NOT NULL,
    refund_id     TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX refunds_order ON refunds(out_trade_no);
