-- velostream demo application: runs with no Kafka at all.
--
--   velostream run examples/demo/app.sql --until-end
--
-- Sources and sinks are declared in WITH clauses by name prefix; relative paths resolve
-- against this file's directory. Outputs land in output/.

-- The input: a source with declared columns, read exactly as declared (no inference; a
-- value that does not fit its column is a bad record). Every statement below reads it.
CREATE STREAM trades (symbol STRING, price DOUBLE, qty BIGINT, status STRING, ts BIGINT)
WITH (
    'trades.type' = 'file_source',
    'trades.path' = 'data/trades.jsonl',
    'trades.format' = 'json'
);

-- Large filled trades, with their notional value, as JSON Lines.
CREATE STREAM big_trades AS
SELECT symbol, price, qty, price * qty AS notional, ts
FROM trades
WHERE status = 'FILLED' AND price * qty >= 10000
WITH (
    'big_trades.type' = 'file_sink',
    'big_trades.path' = 'output/big_trades.jsonl',
    'big_trades.format' = 'json'
);

-- Cancelled trades as CSV (with a header row).
CREATE STREAM cancelled_trades AS
SELECT symbol, qty, LOWER(status) AS status, ts
FROM trades
WHERE status = 'CANCELLED'
WITH (
    'cancelled_trades.type' = 'file_sink',
    'cancelled_trades.path' = 'output/cancelled_trades.csv',
    'cancelled_trades.format' = 'csv'
);

-- Reads the output of big_trades in-process (a second dependency wave).
CREATE STREAM whale_alerts AS
SELECT symbol, ROUND(notional / 1000, 1) AS notional_k, ts
FROM big_trades
WHERE notional >= 50000
WITH (
    'whale_alerts.type' = 'file_sink',
    'whale_alerts.path' = 'output/whale_alerts.csv',
    'whale_alerts.format' = 'csv'
);

-- Running per-symbol statistics of filled trades (EMIT CHANGES: one updated row per
-- input trade, the symbol's aggregate so far).
CREATE STREAM symbol_stats AS
SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume, ROUND(AVG(price), 2) AS avg_price
FROM trades
WHERE status = 'FILLED'
GROUP BY symbol
EMIT CHANGES
WITH (
    'symbol_stats.type' = 'file_sink',
    'symbol_stats.path' = 'output/symbol_stats.jsonl',
    'symbol_stats.format' = 'json'
);

-- One-minute bars of filled trades per symbol, on event time (each trade's ts). A
-- minute's rows are written once the watermark (the latest ts seen minus 5 seconds)
-- passes its end; the end of the input closes the last minute.
CREATE STREAM minute_bars AS
SELECT symbol, _window_start AS minute, COUNT(*) AS trades, MIN(price) AS low,
       MAX(price) AS high, SUM(qty) AS volume
FROM trades
WHERE status = 'FILLED'
GROUP BY symbol
WINDOW TUMBLING(1m)
EMIT FINAL
WITH (
    'event.time.field' = 'ts',
    'watermark.max_out_of_orderness' = '5s',
    'minute_bars.type' = 'file_sink',
    'minute_bars.path' = 'output/minute_bars.jsonl',
    'minute_bars.format' = 'json'
);
