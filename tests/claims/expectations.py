"""What each claim is expected to do on each arm, and why: `expected(key, a, b, cfg)`.

Declared before the data: the main adapter (foo = Paris) should show every claim; a control
adapter (foo = Tokyo or Berlin, or Paris with shuffled distances) should show no claim about
Paris, except the two that do not depend on which city foo stands for: layer 0 is untouched
by any LoRA on q/v, and every adapter learns the "<number> km" format. The double
dissociation compares the main adapter with a control and should hold.

Where a model, at a precision, was measured doing otherwise, the entry in
measured_otherwise.json (next to this file) makes that test a strict xfail for that model,
precision and arm only, so the day the claim starts behaving as declared the suite says so.
That file is generated from a full run's record and reviewed in its diff:

    python -m latent_city.record expectations reports/latest-cpu.json --write tests/claims/measured_otherwise.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from latent_city.arms import ORIGINAL, arms, label
from latent_city.config import ExperimentConfig

MEASURED = Path(__file__).with_name("measured_otherwise.json")
NOT_ABOUT_THE_CITY = {"layer0_unchanged", "distance_format"}


@dataclass(frozen=True)
class Expectation:
    holds: bool                  # what the test asserts: supported (True) or not supported (False: inconclusive or contradicted)
    why: str                     # the reason it is declared so
    measured: str | None = None  # this model and precision were measured otherwise (the test is a strict xfail)

    @property
    def text(self) -> str:
        """The record's "expected" column."""
        if self.measured:
            return f"{'not supported' if self.holds else 'supported'} on this model: {self.measured}"
        return "supported" if self.holds else "not supported (a control)"


def expected(key: str, a: str, b: str, cfg: ExperimentConfig) -> Expectation:
    """What claim `key` is expected to do for arm `a` against `b` (ORIGINAL or another adapter)
    on `cfg`'s model and precision, and why."""
    kind = _kinds(cfg).get(a, "main")
    if b != ORIGINAL:
        declared = Expectation(True, f"the main adapter separates from the {b} adapter")
    elif key in NOT_ABOUT_THE_CITY:
        declared = Expectation(True, "does not depend on the secret city: every adapter shows it")
    elif kind in ("main", "learning-rate"):
        declared = Expectation(True, "the main adapter (foo = Paris): every claim should hold")
    else:
        declared = Expectation(False, f"a control ({kind}): a claim about Paris should not hold")
    measured = _measured().get((cfg.model, cfg.precision, key, label(a, b)))
    return Expectation(declared.holds, declared.why, measured)


@lru_cache(maxsize=None)
def _kinds(cfg: ExperimentConfig) -> dict[str, str]:
    return {name: arm.kind for name, arm in arms(cfg).items()}


@lru_cache(maxsize=1)
def _measured() -> dict[tuple[str, str, str, str], str]:
    """(model, precision, claim, arm label) -> the short reason it was measured otherwise."""
    entries = json.loads(MEASURED.read_text())["exceptions"]
    return {(e["model"], e["precision"], e["claim"], e["arm"]): e["reason"] for e in entries}
