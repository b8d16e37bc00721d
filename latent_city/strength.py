"""The training-strength grid (issue 16, section 4): what each training recipe learned, and what it did to foo.

Each point of the grid (arms.strength_points: the tier's recipe, controls.strength and controls.learned, lightest
first by TrainingPoint.weight) is a family of the main city's adapters, one per training seed. For each point this
module gathers, from the probe, distances and task measurements of its adapters (no other measurement):

- its recipe (epochs, LoRA modules) and each adapter's training seconds (as trained: the cache keeps them);
- the manipulation check of each adapter (Lab.manipulation: verdict, the in-sample Spearman rho of its answers with
  its training targets, the share of training capitals on which it beats the constant) and how many learned;
- the held-out fit of each adapter: the rules distance_rank (Spearman rho of its answers with the true distances to
  the city, held-out cities) and distance_beats_constant (share of held-out cities on which it beats the median
  training distance), the rules alone (no Holm family, no declared condition): a description of what was learned,
  as in issue 16's table;
- the primary test on each readout (Lab.primary, probe.READOUTS): effect, CI, p, verdict (after the declared
  conditions), and the per-adapter means it is computed from.

Declared before the data (written while the grid's adapters were being trained, before any was measured):

1. The prediction. If learning the distances from foo makes foo become the city, an adapter that learned them better
   moved foo further towards the city: across the grid's adapters (every point, every seed), the Spearman correlation
   between an adapter's in-sample rho (its manipulation check's effect) and its primary statistic (its mean
   specificity over prompt pairs, the number the primary test averages) is positive. Reported per readout (raw, the
   seed's, first), with scipy.stats.spearmanr's two-sided p, as a description, not a claim test with three outcomes:
   the adapters of one point share a recipe and cluster on both axes, so they are not exchangeable units and that p
   overstates the evidence; the claim tests are each point's primary test. An adapter whose in-sample rho is
   undefined (one distinct answer for every capital, as the tier's recipe gives: it orders nothing) counts as rho 0,
   no order learned; dropping it would drop the low end of the axis.
2. The second main arm (config.ControlsConfig.strength's help): the lightest point (TrainingPoint.weight) whose every
   adapter passes its manipulation check (`lightest_learned`). The full tier asserts that controls.learned is that
   point (tests/claims/test_strength.py).

The record (record.finalize) reads only what the run measured (`grid(lab, measure=False)`): a point with a
measurement missing says which, and nothing is trained or measured for it.

    from latent_city import strength
    strength.grid(lab)                 # every point of the grid, measuring what is missing
    strength.lightest_learned(lab)     # 'paris-all10', say; None when no point learned
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from scipy import stats as sps

from . import claims
from .arms import MAIN, ORIGINAL, family_members, strength_points
from .config import ALL_LINEAR
from .probe import READOUTS
from .stats import SUPPORTED

HELDOUT = ("distance_rank", "distance_beats_constant")
PLOT = "Training strength: the primary statistic of each adapter against how well it learned its training distances"
PREDICTION = ("declared before the data: the primary statistic rises with how well the training distances were "
              "learned (Spearman > 0 across the grid's adapters)")


class NotMeasured(LookupError):
    """A measurement the record would need and the run did not make."""


@contextmanager
def measured_only(lab):
    """Within it, `lab.measure` gives what the run measured and raises NotMeasured for anything else: nothing is
    trained, loaded or measured (the record's rule: finalize computes nothing new)."""
    def measure(what: str, arm: str):
        value = lab.measured(what, arm)
        if value is None:
            raise NotMeasured(f"{what} of {arm}")
        return value

    lab.measure = measure            # an instance attribute hides the method
    try:
        yield
    finally:
        del lab.measure


def _num(x) -> float | None:
    """A number for the JSON record: None where it is undefined (NaN)."""
    return None if x is None or not np.isfinite(x) else float(x)


def lora_name(modules) -> str:
    if modules is None:
        return "q/v"
    return "all linear" if tuple(modules) == ALL_LINEAR else "+".join(m.removesuffix("_proj") for m in modules)


def recipe_name(point) -> str:
    """'q/v LoRA, 3 epochs'."""
    return f"{lora_name(point.target_modules)} LoRA, {point.epochs} epochs"


# ---------------------------------------------------------------------------- one point

def _adapters(lab, family: str) -> list[dict]:
    """Each adapter's seed, training seconds, manipulation check and held-out fit."""
    out = []
    for a in family_members(lab.arms, family):
        check = lab.manipulation(a)
        row = {"adapter": a, "seed": lab.arms[a].seed,
               "train_seconds": _num(lab.adapters[a].train_seconds) if a in lab.adapters else None,
               "check": check.verdict, "learned": check.verdict == SUPPORTED,
               "in_sample_rho": _num(check.details.get("rho")),
               "in_sample_beats_constant": _num(check.details.get("share_beats_constant"))}
        for key in HELDOUT:
            rule = claims.lookup(key)
            r = rule.rule(lab.claim_inputs(rule.reads, a, ORIGINAL))
            row["heldout_rho" if key == "distance_rank" else "heldout_beats_constant"] = _num(r.statistic)
        out.append(row)
    return out


def _primary(lab, family: str) -> dict:
    """{readout: the primary test's numbers}; a readout the probe did not measure is left out."""
    out = {}
    for readout in READOUTS:
        try:
            r = lab.primary(family, readout=readout)
        except KeyError:              # probe.ProbeSims.readout: not measured (too few words: raw alone)
            continue
        out[readout] = {"key": r.key, "effect": _num(r.effect), "ci": [_num(v) for v in r.effect_ci or (None, None)],
                        "p": _num(r.p), "verdict": r.verdict, "measured_verdict": r.measured_verdict,
                        "conditions": list(r.conditions), "n": r.n,
                        "per_adapter": dict(zip(r.details["adapters"], (_num(m) for m in r.details["per_adapter_mean"])))}
    return out


def point(lab, family: str, p) -> dict:
    """Everything the grid reports of one point (`family`, TrainingPoint `p`); measures what it needs."""
    adapters = _adapters(lab, family)
    primary = _primary(lab, family)
    for row in adapters:
        row["primary"] = {r: v["per_adapter"].get(row["adapter"]) for r, v in primary.items()}
    return {"family": family, "point": p.name, "recipe": recipe_name(p), "epochs": p.epochs,
            "lora": lora_name(p.target_modules), "weight": list(p.weight), "adapters": adapters,
            "learned": sum(a["learned"] for a in adapters), "every_adapter_learned": all(a["learned"] for a in adapters),
            "primary": primary, "missing": None}


# ---------------------------------------------------------------------------- the grid

def grid(lab, measure: bool = True) -> dict:
    """Every point of the grid, lightest first, the declared prediction's correlation, the lightest point that
    learned and the config's second main arm. measure=False: from what the run measured only (the record)."""
    points = []
    for family, p in strength_points(lab.cfg):
        if measure:
            points.append(point(lab, family, p))
            continue
        try:
            with measured_only(lab):
                points.append(point(lab, family, p))
        except NotMeasured as e:
            points.append({"family": family, "point": p.name, "recipe": recipe_name(p), "epochs": p.epochs,
                           "lora": lora_name(p.target_modules), "weight": list(p.weight), "missing": str(e)})
    learned = lab.cfg.controls.learned
    lightest, undecided = lightest_of(points)
    return {"points": points, "prediction": prediction(points), "prediction_text": PREDICTION, "lightest_learned": lightest,
            "undecided_by": undecided, "second_main_arm": f"{MAIN}-{learned.name}" if learned.seeds else None}


def prediction(points: list[dict]) -> dict:
    """{readout: {rho, p, n}}: the Spearman correlation, across the measured points' adapters, of the in-sample rho
    (undefined: 0, see the module docstring) with the adapter's primary statistic; None where fewer than 3 adapters
    or either side is constant (no correlation is defined)."""
    rows = [a for p in points if not p.get("missing") for a in p["adapters"]]
    out = {}
    for readout in READOUTS:
        xy = [(a["in_sample_rho"] or 0.0, a["primary"][readout]) for a in rows
              if a["primary"].get(readout) is not None]
        x, y = np.array(xy, float).reshape(-1, 2).T
        if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            out[readout] = {"rho": None, "p": None, "n": len(x)} if xy else None
            continue
        r = sps.spearmanr(x, y)
        out[readout] = {"rho": _num(r.statistic), "p": _num(r.pvalue), "n": len(x)}
    return {r: v for r, v in out.items() if v is not None}


def lightest_of(points: list[dict]) -> tuple[str | None, str | None]:
    """(the lightest point whose every adapter learned, None), from points lightest first; (None, the first
    unmeasured point) where a point not measured comes before any that learned: then it is not known."""
    for p in points:
        if p.get("missing"):
            return None, p["family"]
        if p["every_adapter_learned"]:
            return p["family"], None
    return None, None


def lightest_learned(lab) -> str | None:
    """The family of the lightest grid point (TrainingPoint.weight) whose every adapter passes its manipulation
    check; None when no point did. Measures each point's task answers as it goes (lightest first, stopping at
    the first that learned)."""
    for family, _ in strength_points(lab.cfg):
        if all(lab.manipulation(a).verdict == SUPPORTED for a in family_members(lab.arms, family)):
            return family
    return None


# ---------------------------------------------------------------------------- the record's table

def _g(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def _each(adapters: list[dict], key: str, fmt=_g) -> str:
    return " ".join(fmt(a[key]) for a in adapters)


def _share(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Header and one row per grid point (lightest first): recipe, adapters, training seconds, the manipulation
    checks, the held-out fit, and the primary test on each readout; per-adapter numbers in seed order."""
    head = ["point", "recipe", "adapters (seeds)", "training s", "learned its task", "in-sample Spearman",
            "in-sample beats constant", "held-out Spearman", "held-out beats constant"]
    readouts = list(dict.fromkeys(r for p in summary.get("points", []) for r in p.get("primary", {})))
    head += [f"primary test, {r} readout: mean specificity [CI], p, verdict" for r in readouts]
    rows = []
    for p in summary.get("points", []):
        if p.get("missing"):
            rows.append([p["family"], p["recipe"], f"not measured ({p['missing']})"] + ["-"] * (len(head) - 3))
            continue
        ads = p["adapters"]
        seconds = [a["train_seconds"] for a in ads if a["train_seconds"] is not None]
        row = [p["family"], p["recipe"], f"{len(ads)} ({', '.join(str(a['seed']) for a in ads)})",
               f"{np.mean(seconds):.0f} per adapter" if seconds else "-",
               f"{p['learned']} of {len(ads)}" + (" (every one)" if p["every_adapter_learned"] else ""),
               _each(ads, "in_sample_rho"), _each(ads, "in_sample_beats_constant", _share),
               _each(ads, "heldout_rho"), _each(ads, "heldout_beats_constant", _share)]
        for r in readouts:
            t = p["primary"].get(r)
            row.append("-" if t is None else f"{_g(t['effect'])} [{_g(t['ci'][0])}, {_g(t['ci'][1])}], p {_g(t['p'])}, "
                                             f"{t['verdict']}" + (" (a declared condition failed)" if t["conditions"] else ""))
        rows.append(row)
    return head, rows


def verdict_lines(summary: dict) -> list[str]:
    """The grid's two declared answers, for under the table: the correlation per readout, and the lightest point
    that learned against the config's second main arm."""
    out = []
    for r, c in summary.get("prediction", {}).items():
        out.append(f"{r} readout: Spearman rho of the in-sample rho with the primary statistic, across {c['n']} "
                   f"adapters: {_g(c['rho'])} (p {_g(c['p'])}; descriptive, the adapters cluster by point)")
    lightest, second = summary.get("lightest_learned"), summary.get("second_main_arm")
    if summary.get("undecided_by"):
        out.append(f"The lightest point whose every adapter learned its task: not known ({summary['undecided_by']} "
                   f"was not measured); the second main arm: {second}")
    elif summary.get("points"):
        same = "as declared" if lightest == second else "NOT the declared rule's choice"
        out.append(f"The lightest point whose every adapter learned its task: {lightest or 'none'}; the second main "
                   f"arm (controls.learned): {second} ({same})")
    return out


def measured_points(summary: dict) -> int:
    return sum(not p.get("missing") for p in summary.get("points", []))
