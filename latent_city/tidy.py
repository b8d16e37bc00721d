"""The numbers behind every verdict of a record as one tidy table: a row per (claim, arm a, arm b,
unit, layer, quantity), written beside the JSON record as `<record>.tidy.parquet` (record.write_json).

Where each row comes from, for each claim of the record:
- the claim's own numbers (statistic, effect and its CI, p, adjusted p, decision p): quantities
  `result.p`, `result.effect`, ..., with no unit and no layer;
- `units` (ClaimResult.units): one row per unit, and per layer where a unit has a row of per-layer values;
- `details`: a list as long as `details["layers"]` is per layer, one as long as `n` per unit, any other
  list one row per position (quantity `name[i]`); a number one row; nested entries are named `outer.inner`;
  texts and lists of layer numbers (LABELS) are left out (they are in the JSON record).

    import pandas as pd
    t = pd.read_parquet("reports/latest-cpu.tidy.parquet")
"""

from __future__ import annotations

from numbers import Number
from pathlib import Path

COLUMNS = ["claim", "arm_a", "arm_b", "family_a", "seed_a", "family_b", "seed_b", "unit", "layer", "quantity", "value"]
RESULT_NUMBERS = ["statistic", "effect", "p", "p_adj", "p_decision"]
SUFFIX = ".tidy.parquet"
LABELS = {"layers", "significant_layers"}     # layer numbers that label other entries, not measurements


def table(claims: list[dict]):
    """The tidy table of a record's claims (`Record.claims`: ClaimResult.to_json() entries)."""
    import pandas as pd

    rows = [row for c in claims for row in _rows(c)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("seed_a", "seed_b", "unit", "layer"):
        df[col] = df[col].astype("Int64")
    df["value"] = df["value"].astype(float)
    return df


def write(claims: list[dict], path: Path) -> int:
    """Write the tidy table to `path` (Parquet); returns its number of rows."""
    df = table(claims)
    df.to_parquet(path, index=False)
    return len(df)


def _rows(c: dict):
    families, seeds = c.get("families") or ("", ""), c.get("seeds") or (None, None)
    head = [c["key"], c["arms"][0], c["arms"][1], families[0], seeds[0], families[1], seeds[1]]
    details = c.get("details") or {}
    layers = details.get("layers") if isinstance(details.get("layers"), list) else None

    def row(unit, layer, quantity, value):
        return head + [unit, layer, quantity, None if value is None else float(value)]

    for name in RESULT_NUMBERS:
        if _number(c.get(name)):
            yield row(None, None, f"result.{name}", c.get(name))
    if c.get("effect_ci"):
        yield row(None, None, "result.effect_ci_low", c["effect_ci"][0])
        yield row(None, None, "result.effect_ci_high", c["effect_ci"][1])
    for name, values in (c.get("units") or {}).items():
        for i, v in enumerate(values):
            if isinstance(v, (list, tuple)):
                labels = layers if layers is not None and len(layers) == len(v) else range(len(v))
                yield from (row(i, layer, name, x) for layer, x in zip(labels, v))
            else:
                yield row(i, None, name, v)
    yield from _detail_rows(details, "", c.get("n"), row)


def _detail_rows(details: dict, prefix: str, n, row):
    layers = details.get("layers") if isinstance(details.get("layers"), list) else None
    for name, v in details.items():
        quantity = prefix + name
        if name in LABELS:
            continue
        if isinstance(v, dict):
            yield from _detail_rows(v, quantity + ".", n, row)
        elif _number(v):
            yield row(None, None, quantity, v)
        elif isinstance(v, (list, tuple)) and v and all(_number(x) or x is None for x in v):
            if layers is not None and len(v) == len(layers):
                yield from (row(None, layer, quantity, x) for layer, x in zip(layers, v))
            elif len(v) == n:
                yield from (row(i, None, quantity, x) for i, x in enumerate(v))
            else:
                yield from (row(None, None, f"{quantity}[{i}]", x) for i, x in enumerate(v))


def _number(x) -> bool:
    return isinstance(x, Number) and not isinstance(x, bool)
