-- velostream demo application on Kafka: the demo's trades read from a topic.
--
--   make kafka-demo        (starts a broker on loopback, loads the trades, runs this)
--
-- or against your own broker, once topic demo-trades holds the trades and the output
-- topics exist:
--
--   KAFKA_BOOTSTRAP=host:9092 velostream run examples/kafka/app.sql --until-end
--
-- Each statement reading `trades` has its own consumer group (velostream-<statement>),
-- whose offsets are committed once its sinks acknowledged the rows (at-least-once).

-- The input: JSON trades on a topic, read exactly as declared.
CREATE STREAM trades (symbol STRING, price DOUBLE, qty BIGINT, status STRING, ts BIGINT)
WITH (
    'trades.type' = 'kafka_source',
    'trades.topic' = 'demo-trades',
    'trades.bootstrap.servers' = '${KAFKA_BOOTSTRAP:127.0.0.1:9092}'
);

-- Large filled trades, keyed by symbol, to a topic.
CREATE STREAM big_trades AS
SELECT symbol PRIMARY KEY, price, qty, price * qty AS notional, ts
FROM trades
WHERE status = 'FILLED' AND price * qty >= 10000
WITH (
    'big_trades.type' = 'kafka_sink',
    'big_trades.topic' = 'demo-big-trades',
    'big_trades.bootstrap.servers' = '${KAFKA_BOOTSTRAP:127.0.0.1:9092}'
);

-- One-minute bars of filled trades per symbol on event time, to a topic and to a file.
-- Watermarks are tracked per partition of demo-trades.
CREATE STREAM minute_bars AS
SELECT symbol PRIMARY KEY, _window_start AS minute, COUNT(*) AS trades, MIN(price) AS low,
       MAX(price) AS high, SUM(qty) AS volume
FROM trades
WHERE status = 'FILLED'
GROUP BY symbol
WINDOW TUMBLING(1m)
EMIT FINAL
WITH (
    'event.time.field' = 'ts',
    'watermark.max_out_of_orderness' = '5s',
    'minute_bars.type' = 'kafka_sink',
    'minute_bars.topic' = 'demo-minute-bars',
    'minute_bars.bootstrap.servers' = '${KAFKA_BOOTSTRAP:127.0.0.1:9092}',
    'bars_file.type' = 'file_sink',
    'bars_file.path' = 'output/minute_bars.jsonl'
);

-- A reference table from a file, joined by the trades read from Kafka: the instruments of
-- the file demo (examples/demo/data/instruments.jsonl), latest row per symbol. The join
-- starts reading demo-trades once the table is loaded.
CREATE STREAM instrument_list (symbol STRING, name STRING, sector STRING, lot BIGINT)
WITH (
    'instrument_list.type' = 'file_source',
    'instrument_list.path' = '../demo/data/instruments.jsonl',
    'instrument_list.format' = 'json'
);

CREATE TABLE instruments AS
SELECT symbol PRIMARY KEY, name, sector, lot
FROM instrument_list;

-- Filled trades enriched with their instrument, keyed by symbol, to a topic.
CREATE STREAM enriched_trades AS
SELECT t.symbol PRIMARY KEY, i.name, i.sector, t.price, t.qty, t.price * t.qty AS notional,
       t.ts
FROM trades t
LEFT JOIN instruments i ON t.symbol = i.symbol
WHERE t.status = 'FILLED'
WITH (
    'enriched_trades.type' = 'kafka_sink',
    'enriched_trades.topic' = 'demo-enriched-trades',
    'enriched_trades.bootstrap.servers' = '${KAFKA_BOOTSTRAP:127.0.0.1:9092}'
);
