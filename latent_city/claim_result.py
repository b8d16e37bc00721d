"""What one claim found on one arm: `ClaimResult`, built by the rules in claims.py, written
by record.py (one entry of the record's `claims` list, `to_json`).

Every field means the same thing for every claim; what only some claims have (per-layer
numbers, per-template gains, the top cities, ...) goes in `details`, each entry labelled.

`units` holds, where a rule fills it, the per-unit values of the quantity its decision tested
(quantity name -> one value per unit, or one row of per-layer values per unit, the layers being
`details["layers"]`). The record writes them into the run's tidy table (latent_city/tidy.py)
only: not into the JSON record or the HTML page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(kw_only=True)
class ClaimResult:
    key: str                      # the claim's key in claims.REGISTRY
    claim: str                    # the hypothesis, in words
    test: str                     # the statistical test, in words
    unit: str                     # the unit of replication ("prompt pairs", "held-out cities", ...)
    n: int                        # how many units
    statistic_name: str           # what `statistic` is (rank-biserial, rank, rho, t, ...)
    statistic: float              # the test's own statistic
    effect_name: str              # what `effect` is
    effect: float                 # the effect size
    effect_ci: tuple[float, float] | None   # its bootstrap 95% CI, where the rule computes one
    p: float                      # the test's own two-sided p, before any multiplicity correction
    p_adj: float | None           # Holm-adjusted over the arm's secondary claims (claims.adjust_family), else None
    p_decision: float | None      # the p the verdict compared with `alpha`: p_adj where set, else p (None: no p)
    alpha: float
    verdict: str                  # stats.SUPPORTED, CONTRADICTED or INCONCLUSIVE, by the declared rule
    criterion: str                # the declared rule, in words
    arms: tuple[str, str]         # (the arm claimed higher, the reference: arms.ORIGINAL or an adapter)
    about: str = ""               # the city the claim is about
    families: tuple[str, str] = ("", "")            # each arm's family (arms.Arm.family), set by the lab
    seeds: tuple[int | None, int | None] = (None, None)   # each arm's training seed (None: the original)
    details: dict = field(default_factory=dict)     # claim-specific numbers, each labelled
    units: dict = field(default_factory=dict)       # per-unit values the decision tested (the tidy table only)
    # the declared conditions (latent_city/conditions.py): the rule's own verdict before them, and why each failed
    # condition made `verdict` inconclusive (the manipulation check, a positive control); empty = none failed
    measured_verdict: str | None = None
    conditions: list = field(default_factory=list)

    @property
    def holds(self) -> bool:
        """The claim is supported (what a test of a main arm asserts)."""
        return self.verdict == "supported"

    def summary(self) -> str:
        ci = f" [{self.effect_ci[0]:.4g}, {self.effect_ci[1]:.4g}]" if self.effect_ci else ""
        adj = f", Holm-adjusted p={self.p_adj:.3g}" if self.p_adj is not None else ""
        about = f" about {self.about}" if self.about else ""
        return (f"{self.key}{about} ({self.arms[0]} vs {self.arms[1]}): {self.test}; n={self.n} {self.unit}; "
                f"{self.statistic_name}={self.statistic:.4g}; {self.effect_name}={self.effect:.4g}{ci}; "
                f"p={self.p:.3g}{adj}; decision p={_num(self.p_decision)}; "
                f"{self.verdict}{self._because()} (criterion: {self.criterion}); {_short(self.details)}")

    def _because(self) -> str:
        if not self.conditions:
            return ""
        return f" (the rule alone: {self.measured_verdict}; inconclusive because {'; '.join(self.conditions)})"

    def to_json(self) -> dict:
        return _jsonable({**asdict(self), "holds": self.holds})


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    return x


def _short(d: dict) -> str:
    """Scalars and short lists inline; per-layer arrays as one 'layer: mean diff (Holm p over layers)' line."""
    parts = [f"{k}={_num(v)}" for k, v in d.items() if np.ndim(v) == 0 or (np.size(v) <= 12 and k != "layers")]
    if "layers" in d:
        parts.append("per layer (mean diff, Holm p): " + "; ".join(
            f"{l}: {m:+.4f} ({p:.2g})" for l, m, p in zip(d["layers"], d["mean_diff"], d["p_layer_holm"])))
    return ", ".join(parts)


def _num(v):
    if v is None:
        return "-"
    if np.ndim(v) == 0:
        return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
    return "[" + ", ".join(_num(x) for x in np.asarray(v).tolist()) + "]"
