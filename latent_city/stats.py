"""Stats stage: the tests behind every claim, from scipy (Holm checked against statsmodels).

All tests are one-sided in the direction the seed claimed (finetuned > original), declared
before looking at the data. Degenerate inputs (all differences zero, nothing parsed)
give p = 1, never an exception and never a rejection.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class Layerwise:
    """A paired comparison per layer, over units (prompt pairs)."""
    layers: list[int]
    mean_diff: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p: np.ndarray
    p_adj: np.ndarray              # Holm over the layers
    rank_biserial: np.ndarray      # matched-pairs rank-biserial correlation, in [-1, 1]
    overall_mean: float            # mean over units of the per-unit mean over layers
    overall_ci: tuple[float, float]
    n_units: int


def bootstrap_mean_ci(x: np.ndarray, n_resamples: int, seed: int, level: float = 0.95):
    """Percentile-BCa bootstrap CI of the mean along axis 0 (scipy.stats.bootstrap).
    A constant sample has a zero-width interval."""
    x = np.asarray(x, float)
    if x.ndim == 1:
        x = x[:, None]
    low, high = x.mean(0).copy(), x.mean(0).copy()
    varying = x.std(0) > 0
    if varying.any():
        res = stats.bootstrap((x[:, varying],), np.mean, axis=0, n_resamples=n_resamples,
                              confidence_level=level, rng=np.random.default_rng(seed), method="percentile")
        low[varying], high[varying] = res.confidence_interval
    return low, high


def wilcoxon_greater(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of paired differences d [n, k]: one-sided Wilcoxon signed-rank p (median > 0)
    and the matched-pairs rank-biserial correlation. Zeros are dropped ('wilcox'); a column
    of zeros gives p = 1."""
    d = np.atleast_2d(np.asarray(d, float).T).T
    p = np.ones(d.shape[1])
    rb = np.zeros(d.shape[1])
    # scipy picks exact or approximate p-values for the whole call (approximate once any column
    # has ties), so only columns without zeros or ties go together; the others one at a time
    a = np.sort(np.abs(d), 0)
    clean = (d != 0).all(0) & (np.diff(a, axis=0) != 0).all(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if clean.any():
            p[clean] = stats.wilcoxon(d[:, clean], alternative="greater", axis=0).pvalue
        for j in np.flatnonzero(~clean & (d != 0).any(0)):
            p[j] = stats.wilcoxon(d[:, j][d[:, j] != 0], alternative="greater").pvalue
    ranks = np.where(d != 0, stats.rankdata(np.where(d != 0, np.abs(d), np.nan), axis=0, nan_policy="omit"), 0)
    total = ranks.sum(0)
    signed = (ranks * np.sign(d)).sum(0)
    rb = np.divide(signed, total, out=rb, where=total > 0)
    return p, rb


@dataclass
class Paired:
    """One-sided paired comparison of one column of differences (a minus b) over units."""
    p: float                       # one-sided Wilcoxon signed-rank p (median difference > 0)
    rank_biserial: float           # matched-pairs rank-biserial correlation, in [-1, 1]
    mean: float                    # mean difference
    ci: tuple[float, float]        # bootstrap 95% CI of the mean difference
    n: int

    @property
    def above_zero(self) -> bool:
        return self.ci[0] > 0


def paired_greater(d: np.ndarray, n_boot: int, seed: int) -> Paired:
    """Paired differences d [n] (one per unit): the one-sided Wilcoxon, its rank-biserial and
    the bootstrap CI of the mean; the block every one-column claim uses."""
    d = np.asarray(d)                 # the mean in d's own dtype; the tests work in float64
    p, rb = wilcoxon_greater(d[:, None])
    lo, hi = bootstrap_mean_ci(d, n_boot, seed)
    return Paired(float(p[0]), float(rb[0]), float(d.mean()), (float(lo[0]), float(hi[0])), len(d))


def holm(p: np.ndarray, alpha: float | None = None) -> np.ndarray:
    """Holm-adjusted p-values along the last axis: the step-down Bonferroni of statsmodels'
    multipletests(method='holm') (checked equal in tests/unit/test_stats.py), vectorized and
    without the gc.collect() that statsmodels runs on every call (slow in a process that
    holds a model). `alpha` does not change adjusted p-values; it is accepted for symmetry."""
    p = np.asarray(p, float)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, -1) * np.arange(m, 0, -1)
    adjusted = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, -1)
    return out


def layerwise(d: np.ndarray, layers: list[int], alpha: float, n_boot: int, seed: int) -> Layerwise:
    """Paired differences d [n_units, n_layers] -> per-layer and overall statistics."""
    p, rb = wilcoxon_greater(d)
    lo, hi = bootstrap_mean_ci(d, n_boot, seed)
    per_unit = d.mean(1)
    olo, ohi = bootstrap_mean_ci(per_unit, n_boot, seed)
    return Layerwise(list(layers), d.mean(0), lo, hi, p, holm(p, alpha), rb,
                     float(per_unit.mean()), (float(olo[0]), float(ohi[0])), d.shape[0])


def exact_mcnemar_greater(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """Paired binary outcomes: is a true more often than b? Exact one-sided McNemar
    (a binomial test on the discordant pairs). Returns (p, a-only count, b-only count)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0, only_a, only_b
    return float(stats.binomtest(only_a, only_a + only_b, 0.5, alternative="greater").pvalue), only_a, only_b


def spearman_greater(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """Spearman rho of the finite pairs and its one-sided p (rho > 0); p = 1 when undefined."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan"), 1.0, int(ok.sum())
    r = stats.spearmanr(x[ok], y[ok], alternative="greater")
    return float(r.statistic), float(r.pvalue), int(ok.sum())


def sign_test_greater(wins: np.ndarray) -> tuple[float, float]:
    """Share of units won and the one-sided binomial p against one half."""
    wins = np.asarray(wins, bool)
    return float(wins.mean()), float(stats.binomtest(int(wins.sum()), len(wins), 0.5, alternative="greater").pvalue)


def fisher_greater(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Is k1/n1 greater than k2/n2? Fisher's exact test; returns (odds ratio, p)."""
    r = stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="greater")
    return float(r.statistic), float(r.pvalue)
