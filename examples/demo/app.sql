-- velostream demo application: runs with no Kafka at all.
--
--   velostream run examples/demo/app.sql --until-end
--
-- Sources and sinks are declared in WITH clauses by name prefix; relative paths resolve
-- against this file's directory. Outputs land in output/.

-- The input: a source with declared columns, read exactly as declared (no inference; a
-- value that does not fit its column is a bad record). The statements below read it.
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

-- A reference table: instrument details by symbol, from a JSON Lines file. The table's
-- input is declared like any source; CREATE TABLE keeps the latest row per key
-- (PRIMARY KEY symbol): AMZN appears twice in the file, and its second line wins.
CREATE STREAM instrument_list (symbol STRING, name STRING, sector STRING, lot BIGINT)
WITH (
    'instrument_list.type' = 'file_source',
    'instrument_list.path' = 'data/instruments.jsonl',
    'instrument_list.format' = 'json'
);

CREATE TABLE instruments AS
SELECT symbol PRIMARY KEY, name, sector, lot
FROM instrument_list;

-- Filled trades enriched with their instrument: a stream-table join, each batch of
-- trades looking its symbols up in the table. It starts reading only once the table is
-- loaded (READY). LEFT JOIN keeps a trade whose symbol the table lacks (TSLA) with NULL
-- name and sector ('join.missing.strategy' = 'emit_with_nulls', the LEFT JOIN default).
CREATE STREAM enriched_trades AS
SELECT t.symbol, i.name, i.sector, t.price, t.qty, t.price * t.qty AS notional, t.ts
FROM trades t
LEFT JOIN instruments i ON t.symbol = i.symbol
WHERE t.status = 'FILLED'
WITH (
    'enriched_trades.type' = 'file_sink',
    'enriched_trades.path' = 'output/enriched_trades.jsonl',
    'enriched_trades.format' = 'json'
);
