"""The experiment: train (or reuse) the tier's adapters, test every claim, write the record.

    python -m latent_city              # CPU tier, SmolLM2-135M
    python -m latent_city --tier gpu   # the seed's Llama-3-8B-Instruct in 8-bit
    python -m latent_city --retrain    # ignore the cached adapters and measurements
    python -m latent_city --quick      # the main adapter only, no controls
    python -m latent_city --check      # check the model, precision, cities and cache; run nothing
    python -m latent_city --list-arms  # the arms the experiment trains, one name a line; run nothing
    python -m latent_city --tier gpu --model /path/to/folder --precision 4bit

It checks everything it can in a second first (latent_city/cli.py, `preflight`): a bad value
ends in one line and exit status 2, before any test or training. Then it runs the claim
tests (tests/claims) through pytest, which writes the HTML and JSON record under reports/, and
prints what this run built and where its record is. A run that stopped before measuring its
claims leaves `reports/latest-<tier>.*` pointing at the last complete run.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse(argv=None) -> argparse.Namespace:
    from .cli import Parser
    from .config import PRECISIONS, RECIPES

    p = Parser(prog="python -m latent_city", description=__doc__.splitlines()[0])
    p.add_argument("--tier", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--retrain", action="store_true", help="train the adapters and make the measurements again even if cached")
    p.add_argument("--quick", action="store_true", help="the main adapter only, no controls (for iterating)")
    p.add_argument("--check", action="store_true",
                   help="check the model, precision, cities and cache, print the plan and exit (0 = ready)")
    p.add_argument("--list-arms", action="store_true",
                   help="print the names of the arms whose adapters the run needs, one a line, and exit (to train "
                        "them as separate workers: python -m latent_city.finetune --arm NAME)")
    p.add_argument("--model", help="a registry name, hub id or local folder (sets LATENT_CITY_MODEL for the run)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="base weights (sets LATENT_CITY_PRECISION for the run)")
    p.add_argument("--recipe", choices=list(RECIPES),
                   help="project (loss on the completion, the default) or seed (the whole chat, as the seed's TRL); "
                        "sets LATENT_CITY_RECIPE for the run")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from .cli import preflight
    from .config import ConfigError

    a = parse(argv)
    cfg = preflight(a.tier, a.model, a.precision, a.recipe)   # a bad value is said here, in one line
    for var, value in (("LATENT_CITY_MODEL", a.model), ("LATENT_CITY_PRECISION", a.precision),
                       ("LATENT_CITY_RECIPE", a.recipe)):
        if value:
            os.environ[var] = value
    if not (REPO / "tests" / "claims").is_dir():
        raise ConfigError(f"the experiment runs the claim tests of a checkout; none at {REPO / 'tests'}")
    if a.check:
        from .arms import MAIN, arms
        from .cache import root

        names = [MAIN] if a.quick else list(arms(cfg))
        print(f"latent_city: ready: tier {cfg.tier}, model {cfg.model} ({cfg.precision}), {len(names)} arm(s) "
              f"({', '.join(names)}), cache {root()}, record under {REPO / 'reports'}")
        return 0
    import pytest

    args = [str(REPO / "tests" / "claims"), "-q", "-m", "gpu" if a.tier == "gpu" else "not gpu",
            "-p", "no:cacheprovider", "--rootdir", str(REPO)] + (["--quick"] if a.quick else [])
    if a.list_arms:         # the same selection, listed by the suite itself (conftest.py): names on stdout
        return int(pytest.main(args + ["--list-arms"]))
    with tempfile.TemporaryDirectory(prefix="latent-city-run-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        os.environ["LATENT_CITY_RUN_SUMMARY"] = str(summary_path)
        code = pytest.main(args + (["--retrain"] if a.retrain else []))
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    for line in report_lines(summary, int(code), a.tier):
        print(line)
    return int(code)


def report_lines(summary: dict | None, code: int, tier: str) -> list[str]:
    """What this run built and measured, and where its record is; on failure, what to do next.
    Only what the run's own summary says (conftest.py writes it), never an older record."""
    latest = REPO / "reports" / f"latest-{tier}.html"
    if summary is None:
        return ["", f"latent_city: the run ended before it began measuring (pytest exit status {code}); "
                    f"no record written, {latest.name} unchanged. Next: read the message above."]
    out = [""]
    adapters = summary.get("adapters", {})
    if adapters:
        out.append("adapters: " + ", ".join(
            f"{n} ({'trained in this run, %.0f s' % a['train_seconds'] if a['trained_this_run'] else 'reused from the cache'})"
            for n, a in adapters.items()))
    else:
        out.append("adapters: none built or read in this run")
    if summary["status"] == "complete":
        out.append(f"record:  {summary['record']} (+ .json, .tidy.parquet); {latest} points to it")
        out += [f"  - {line}" for line in summary.get("findings", [])]
    elif summary["status"] == "incomplete":
        out.append(f"record:  INCOMPLETE, {summary['claims_measured']} of {summary['claims_selected']} claims "
                   f"measured: {summary['record']}; {latest.name} still points to the last complete run")
    if summary.get("next"):
        out.append(f"next:    {summary['next']}")
    return out


if __name__ == "__main__":
    from latent_city.cli import run

    sys.exit(run(main))
