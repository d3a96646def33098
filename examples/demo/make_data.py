"""Regenerate data/trades.jsonl (deterministic): ``python examples/demo/make_data.py``."""

import json
import random
from pathlib import Path

SYMBOLS = {"AAPL": 190.0, "MSFT": 410.0, "GOOG": 140.0, "AMZN": 180.0, "TSLA": 240.0}
STATUSES = ["FILLED"] * 6 + ["CANCELLED", "PENDING"]


def main() -> None:
    """Write 400 trades, one JSON object per line."""
    rng = random.Random(42)
    ts = 1_700_000_000_000
    lines = []
    for _ in range(400):
        symbol = rng.choice(sorted(SYMBOLS))
        price = round(SYMBOLS[symbol] * rng.uniform(0.95, 1.05), 2)
        qty = rng.choice([1, 5, 10, 25, 50, 100, 250])
        ts += rng.randint(50, 2_000)
        trade = {
            "symbol": symbol,
            "price": float(price),
            "qty": qty,
            "status": rng.choice(STATUSES),
            "ts": ts,
        }
        lines.append(json.dumps(trade))
    out = Path(__file__).parent / "data" / "trades.jsonl"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
