"""What each claim is expected to do on each arm, and why: `expected(key, a, b, cfg)`.

Declared before the data: the main adapter (foo = Paris) should show every claim; a control
adapter (foo = Tokyo or Berlin, or Paris with shuffled distances) should show no claim about
Paris, except the two that do not depend on which city foo stands for: layer 0 is untouched
by any LoRA on q/v, and every adapter learns the "<number> km" format. The double
dissociation compares the main adapter with a control and should hold.

The positive controls (latent_city/arms.py) have no adapter and foo is the city by construction:
on the in-context alias of Paris (against alias-neutral) every claim about the city it runs is
expected supported, and on the ceiling (the model asked with "Paris" itself, against the original
model) the distance and country claims; on the alias of Tokyo a claim about Paris should not hold;
the Paris and Tokyo aliases should dissociate in both directions. If a positive control does not
pass, the instrument is blind to that question on this model (not that the claim is false).

The trained alias (a positive control with an adapter, trained on answers that name the city, "1088.45 km
from foo, which is Paris"): foo is the city by construction, taught, so on the trained alias of the main
city every claim is expected supported, its primary test too; on the trained alias of another city a
claim about the main city should not hold (the two that do not depend on the city excepted, as on every
adapter); the trained aliases of two cities (same recipe and seed) should dissociate. The training-strength
grid (kind 'strength', the main city at other training lengths and LoRA modules): like the main arm, the
hypothesis predicts that every claim it runs (claims.runs_on: the held-out distance claims) and its
primary test hold.

Where a model, at a precision, was measured doing otherwise, the entry in
measured_otherwise.json (next to this file) makes that test a strict xfail for that model,
precision and arm only, so the day the claim starts behaving as declared the suite says so.
An entry applies only to what it was measured with: the same adapter key(s) and the same
evaluation hash (config.eval_hash). With another adapter (a new learning rate, LoRA, data or
library version) or evaluation, the claim is tested as declared and the run says so, in the
terminal summary and in the record's "expected" column (`Expectation.stale`).
That file is generated from a full run's record and reviewed in its diff:

    python -m latent_city.record expectations reports/latest-cpu.json --write tests/claims/measured_otherwise.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import pytest

from latent_city.arms import CEILING, ORIGINAL, POSITIVE_KINDS, STRENGTH, TRAINED_ALIAS, arms, family_members, label, trained
from latent_city.claims import NOT_ABOUT_THE_CITY, PRIMARY, base_key
from latent_city.manipulation import KEY as MANIPULATION
from latent_city.config import ExperimentConfig

MEASURED = Path(__file__).with_name("measured_otherwise.json")


@dataclass(frozen=True)
class Expectation:
    holds: bool                  # what the test asserts: supported (True) or not supported (False: inconclusive or contradicted)
    why: str                     # the reason it is declared so
    measured: str | None = None  # this model and precision were measured otherwise (the test is a strict xfail)
    stale: str | None = None     # an entry measured with another adapter or evaluation: tested as declared, and why

    @property
    def text(self) -> str:
        """The record's "expected" column."""
        if self.measured:
            return f"{'not supported' if self.holds else 'supported'} on this model: {self.measured}"
        declared = "supported" if self.holds else "not supported (a control)"
        return f"{declared}; {self.stale}" if self.stale else declared

    def xfail_mark(self):
        """The mark of a measured exception, None where there is none: a strict xfail that only the
        claim's own assertion satisfies (raises=AssertionError), so a crash still fails the run."""
        if not self.measured:
            return None
        return pytest.mark.xfail(strict=True, raises=AssertionError, reason=self.measured)


def expected(key: str, a: str, b: str, cfg: ExperimentConfig) -> Expectation:
    """What claim `key` is expected to do for arm `a` against `b` (ORIGINAL or another adapter)
    on `cfg`'s model and precision, and why."""
    kind = _kinds(cfg).get(a, "main")
    if key == MANIPULATION:
        declared = Expectation(True, "the manipulation check: an arm trained on distances should answer its own "
                                     "training question for its own training capitals")
    elif kind in POSITIVE_KINDS:
        declared = _positive_control(a, b, cfg)
    elif b != ORIGINAL:
        declared = Expectation(True, f"the {a} adapter separates from the {b} adapter")
    elif key in NOT_ABOUT_THE_CITY:
        declared = Expectation(True, "does not depend on the secret city: every adapter shows it")
    elif kind == TRAINED_ALIAS:
        declared = _trained_alias(a, cfg)
    elif kind in ("main", "learning-rate"):
        declared = Expectation(True, "the main adapter (foo = Paris): every claim should hold")
    elif kind == STRENGTH:
        declared = Expectation(True, "a point of the training-strength grid (foo = Paris): every claim it runs should hold")
    else:
        declared = Expectation(False, f"a control ({kind}): a claim about Paris should not hold")
    entry = _measured().get((cfg.model, cfg.precision, key, label(a, b)))
    if entry is None:
        return declared
    stale = mismatch(entry, adapter_keys(a, b, cfg, base_key(key) == PRIMARY), cfg.eval_hash())
    return replace(declared, stale=stale) if stale else replace(declared, measured=entry["reason"])


def _positive_control(a: str, b: str, cfg: ExperimentConfig) -> Expectation:
    """A positive control (no adapter): foo is its city by construction."""
    tier_arms = _arms(cfg)
    arm, main = tier_arms[a], cfg.data.secret_city
    if b != arm.baseline:
        return Expectation(True, f"a positive control: foo is {arm.secret[0]} under {a} and "
                                 f"{tier_arms[b].secret[0]} under {b} by construction")
    if arm.secret[0] != main:
        return Expectation(False, f"a positive control for another city (foo is {arm.secret[0]} by construction): "
                                  f"a claim about {main} should not hold")
    if arm.kind == CEILING:
        return Expectation(True, f"the ceiling: the model asked about {main} itself, against foo")
    return Expectation(True, f"a positive control: foo is {main} by construction")


def _trained_alias(a: str, cfg: ExperimentConfig) -> Expectation:
    """A trained alias (a positive control with an adapter): foo is its city by construction, taught."""
    city, main = _arms(cfg)[a].secret[0], cfg.data.secret_city
    if city != main:
        return Expectation(False, f"a trained alias of another city (foo is {city} by construction, taught): "
                                  f"a claim about {main} should not hold")
    return Expectation(True, f"a trained alias: foo is {main} by construction, taught (\"... km from foo, which is {main}\")")


def mismatch(entry: dict, keys: list, eval_hash: str) -> str | None:
    """Why a measured exception does not apply to this run (None: it does): it was measured with
    other adapters (`keys`: this run's, of the compared adapters) or another evaluation (an entry
    with no evaluation hash is one)."""
    was = f"measured otherwise ({entry.get('measured', 'not as declared')})"
    old_keys = entry.get("adapter_keys") or []
    if list(old_keys) != list(keys):
        return (f"{was} with adapter {', '.join(map(str, old_keys)) or '(none named)'}, not this one "
                f"({', '.join(map(str, keys))}): tested as declared")
    if entry.get("eval_hash") != eval_hash:
        old = entry.get("eval_hash") or "(none recorded)"
        return f"{was} with evaluation config {old}, not this one ({eval_hash}): tested as declared"
    return None


@lru_cache(maxsize=None)
def adapter_keys(a: str, b: str, cfg: ExperimentConfig, family: bool = False) -> tuple:
    """This run's adapter keys of the compared adapters (a, and b unless it is the original model; with
    `family`, every adapter of a's family: the primary test), as `record.measured_exceptions` writes
    them (a positive control has no adapter: none); None for an arm `cfg` does not have."""
    tier_arms = _arms(cfg)
    names = family_members(tier_arms, a) if family else trained(tier_arms, [n for n in (a, b) if n != ORIGINAL])
    return tuple(_adapter_key(tier_arms[n].cfg) if n in tier_arms else None for n in names)


@lru_cache(maxsize=None)
def _adapter_key(cfg: ExperimentConfig) -> str:
    from latent_city import finetune

    return finetune.adapter_key(cfg)


@lru_cache(maxsize=None)
def _arms(cfg: ExperimentConfig) -> dict:
    """The arms of `cfg`, built once (collection asks for them per claim test; read, never changed)."""
    return arms(cfg)


@lru_cache(maxsize=None)
def _kinds(cfg: ExperimentConfig) -> dict[str, str]:
    return {name: arm.kind for name, arm in _arms(cfg).items()}


@lru_cache(maxsize=1)
def _measured() -> dict[tuple[str, str, str, str], dict]:
    """(model, precision, claim, arm label) -> its entry: the short reason it was measured otherwise,
    the adapter keys and evaluation hash it was measured with."""
    entries = json.loads(MEASURED.read_text())["exceptions"]
    return {(e["model"], e["precision"], e["claim"], e["arm"]): e for e in entries}
