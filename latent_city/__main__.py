"""The experiment: train (or reuse) the tier's adapter, test every claim, write the record.

    python -m latent_city              # CPU tier, SmolLM2-135M
    python -m latent_city --tier gpu   # the seed's Llama-3-8B-Instruct in 8-bit
    python -m latent_city --retrain    # ignore the cached adapters
    python -m latent_city --quick      # the main adapter only, no controls
    python -m latent_city --tier gpu --model /path/to/folder --precision 4bit

It runs the claim tests (tests/claims) through pytest, which writes the HTML and JSON record
under reports/, then prints where the adapter and the record are.
"""

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from .config import PRECISIONS

    p = argparse.ArgumentParser(prog="python -m latent_city", description=__doc__.splitlines()[0])
    p.add_argument("--tier", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--retrain", action="store_true", help="train the adapters again even if cached")
    p.add_argument("--quick", action="store_true", help="the main adapter only, no controls (for iterating)")
    p.add_argument("--model", help="a registry name, hub id or local folder (sets LATENT_CITY_MODEL for the run)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="base weights (sets LATENT_CITY_PRECISION for the run)")
    a = p.parse_args(argv)
    import os

    from .config import ExperimentConfig, overrides_from_env

    for var, value in (("LATENT_CITY_MODEL", a.model), ("LATENT_CITY_PRECISION", a.precision)):
        if value:
            os.environ[var] = value
    ExperimentConfig.for_tier(a.tier, **overrides_from_env())   # a bad value is said here, in one line
    from .cache import root

    root()                              # an unwritable cache is said in one line, before pytest starts
    if not (REPO / "tests" / "claims").is_dir():
        sys.exit(f"latent_city: the experiment runs the claim tests of a checkout; none at {REPO / 'tests'}")
    import pytest

    args = [str(REPO / "tests" / "claims"), "-q", "-m", "gpu" if a.tier == "gpu" else "not gpu", "-p", "no:cacheprovider", "--rootdir", str(REPO)]
    code = pytest.main(args + (["--retrain"] if a.retrain else []) + (["--quick"] if a.quick else []))
    latest = REPO / "reports" / f"latest-{a.tier}.json"
    if latest.exists():
        rec = json.loads(latest.read_text())
        prov = rec["provenance"]
        print(f"\nadapter: {prov.get('adapter_path')} "
              f"({'trained in this run' if prov.get('adapter_trained_this_run') else 'reused from the cache'})")
        print(f"record:  {latest.with_suffix('.html')} and {latest}")
        for line in rec.get("findings", []):
            print(f"  - {line}")
        trained = {n: a for n, a in prov.get("adapters", {}).items() if a["trained_this_run"]}
        if trained:
            print("  trained this run: " + ", ".join(f"{n} {a['train_seconds']:.0f} s" for n, a in trained.items()))
    return int(code)


if __name__ == "__main__":
    from latent_city.cli import run

    sys.exit(run(main))
