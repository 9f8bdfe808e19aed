-- No query reads orders by openid (a user's orders are read by out_trade_no and checked
-- against the session's openid): the index only cost every insert.
DROP INDEX IF EXISTS orders_openid;
