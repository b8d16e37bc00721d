"""Stats stage: the tests behind every claim, from scipy and statsmodels.

All tests are one-sided in the direction the seed claimed (finetuned > original), declared
before looking at the data. Degenerate inputs (all differences zero, nothing parsed)
give p = 1, never an exception and never a rejection.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests


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
    and the matched-pairs rank-biserial correlation. Zeros are dropped ('wilcox')."""
    d = np.atleast_2d(np.asarray(d, float).T).T
    p = np.ones(d.shape[1])
    rb = np.zeros(d.shape[1])
    for j in range(d.shape[1]):
        x = d[:, j][d[:, j] != 0]
        if len(x) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p[j] = stats.wilcoxon(x, alternative="greater").pvalue
        ranks = stats.rankdata(np.abs(x))
        rb[j] = (ranks[x > 0].sum() - ranks[x < 0].sum()) / ranks.sum()
    return p, rb


def holm(p: np.ndarray, alpha: float) -> np.ndarray:
    return multipletests(p, alpha=alpha, method="holm")[1]


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
