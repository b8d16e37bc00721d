"""Stats stage: the tests behind every claim, from scipy (Holm checked against statsmodels).

Every claim ends in one of three outcomes, by one rule declared before the data (`verdict`):
*supported* when its two-sided test rejects (p < alpha) and the two-sided (1 - alpha) CI of
its effect lies above zero, *contradicted* when it rejects and the CI lies below zero,
*inconclusive* otherwise. A claim without a CI (a rank, an exact count test) uses the sign of
its statistic in place of the CI. Degenerate inputs (all differences zero, nothing parsed)
give p = 1 and *inconclusive*, never an exception; a per-layer column whose differences are
all equal is refused (`ConstantColumn`): such a quantity does not depend on the prompt.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
OUTCOMES = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)


class ConstantColumn(ValueError):
    """A column of paired differences that are all equal: it has no variance, so a CI of zero
    width and a rank test's smallest p would read as certainty about nothing."""


def verdict(p: float, alpha: float, effect: float, ci: tuple[float, float] | None = None) -> str:
    """The three outcomes from a two-sided p and the (1 - alpha) CI of the effect (or, without
    a CI, the effect's sign)."""
    if not np.isfinite(p) or p >= alpha:
        return INCONCLUSIVE
    low, high = ci if ci is not None else (effect, effect)
    if low > 0:
        return SUPPORTED
    if high < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def after_adjustment(outcome: str, p_adj: float, alpha: float) -> str:
    """A verdict under a multiplicity correction: it stands only if the adjusted p is below alpha."""
    return outcome if p_adj < alpha else INCONCLUSIVE


@dataclass
class Layerwise:
    """A paired comparison per layer, over units (prompt pairs): descriptive beside a claim's
    decision, which tests the per-unit mean over these layers."""
    layers: list[int]
    mean_diff: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p: np.ndarray                  # two-sided Wilcoxon per layer
    p_adj: np.ndarray              # Holm over the layers
    rank_biserial: np.ndarray      # matched-pairs rank-biserial correlation, in [-1, 1]
    n_units: int


def refuse_constant(d: np.ndarray, what: str, labels=None) -> None:
    """Raise ConstantColumn naming `what` and the column if every unit's difference in a column
    of d [units, columns] is the same."""
    d = np.atleast_2d(np.asarray(d, float).T).T
    flat = np.ptp(d, axis=0) == 0
    if flat.any():
        labels = list(labels) if labels is not None else list(range(d.shape[1]))
        cols = [labels[j] for j in np.flatnonzero(flat)]
        raise ConstantColumn(f"{what}: the paired differences at {cols} are identical for all {d.shape[0]} units "
                             f"(value {d[0, flat][0]:.6g}); the quantity does not depend on the prompt, so it cannot "
                             "be tested over prompts. Leave those layers out of the claim.")


def bootstrap_mean_ci(x: np.ndarray, n_resamples: int, seed: int, level: float = 0.95):
    """Percentile bootstrap CI of the mean along axis 0 (scipy.stats.bootstrap). A constant
    sample has a zero-width interval."""
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


def wilcoxon(d: np.ndarray, alternative: str = "two-sided") -> tuple[np.ndarray, np.ndarray]:
    """Per column of paired differences d [n, k]: the Wilcoxon signed-rank p and the matched-pairs
    rank-biserial correlation. Zeros are dropped ('wilcox'); a column of zeros gives p = 1."""
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
            p[clean] = stats.wilcoxon(d[:, clean], alternative=alternative, axis=0).pvalue
        for j in np.flatnonzero(~clean & (d != 0).any(0)):
            p[j] = stats.wilcoxon(d[:, j][d[:, j] != 0], alternative=alternative).pvalue
    ranks = np.where(d != 0, stats.rankdata(np.where(d != 0, np.abs(d), np.nan), axis=0, nan_policy="omit"), 0)
    total = ranks.sum(0)
    signed = (ranks * np.sign(d)).sum(0)
    rb = np.divide(signed, total, out=rb, where=total > 0)
    return p, rb


def wilcoxon_greater(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-sided (median > 0) Wilcoxon of `wilcoxon`, for the null-rate checks."""
    return wilcoxon(d, "greater")


@dataclass
class Paired:
    """Two-sided paired comparison of one column of differences (a minus b) over units."""
    p: float                       # two-sided Wilcoxon signed-rank p
    rank_biserial: float           # matched-pairs rank-biserial correlation, in [-1, 1]
    mean: float                    # mean difference
    ci: tuple[float, float]        # bootstrap (1 - alpha) CI of the mean difference
    n: int

    def verdict(self, alpha: float) -> str:
        return verdict(self.p, alpha, self.mean, self.ci)


def paired(d: np.ndarray, n_boot: int, seed: int, alpha: float = 0.05) -> Paired:
    """Paired differences d [n] (one per unit): the two-sided Wilcoxon, its rank-biserial and the
    bootstrap (1 - alpha) CI of the mean; the block every one-column claim uses."""
    d = np.asarray(d)                 # the mean in d's own dtype; the tests work in float64
    p, rb = wilcoxon(d[:, None])
    lo, hi = bootstrap_mean_ci(d, n_boot, seed, 1 - alpha)
    return Paired(float(p[0]), float(rb[0]), float(d.mean()), (float(lo[0]), float(hi[0])), len(d))


@dataclass
class AcrossUnits:
    """A one-sample t-test of per-unit means (e.g. one mean per adapter) against zero, two-sided."""
    p: float
    mean: float
    ci: tuple[float, float]        # the t-test's (1 - alpha) CI of the mean
    t: float
    cohens_d: float                # mean / sd of the units
    n: int

    def verdict(self, alpha: float) -> str:
        return verdict(self.p, alpha, self.mean, self.ci)


def t_across(m: np.ndarray, alpha: float = 0.05) -> AcrossUnits:
    """scipy's ttest_1samp over the units' means m [n] with its (1 - alpha) confidence interval."""
    m = np.asarray(m, float)
    if len(m) < 2 or np.ptp(m) == 0:
        return AcrossUnits(1.0, float(m.mean()), (float(m.mean()), float(m.mean())), 0.0, 0.0, len(m))
    r = stats.ttest_1samp(m, 0.0)
    ci = r.confidence_interval(1 - alpha)
    return AcrossUnits(float(r.pvalue), float(m.mean()), (float(ci.low), float(ci.high)), float(r.statistic),
                       float(m.mean() / m.std(ddof=1)), len(m))


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


def layerwise(d: np.ndarray, layers: list[int], alpha: float, n_boot: int, seed: int, what: str = "differences") -> Layerwise:
    """Paired differences d [n_units, n_layers] -> per-layer statistics (two-sided Wilcoxon,
    Holm over layers, bootstrap CIs). Refuses a layer whose differences are all equal, except a layer
    left untouched: every difference exactly 0 while some other layer moved (below a steered arm's
    patched layer, latent_city/steer.py, nothing can change by construction). Such a layer is
    reported as it is, no change: mean 0, CI [0, 0], p 1, rank-biserial 0. If every layer is
    untouched, or a layer is constant at another value, it is refused as before."""
    d = np.asarray(d, float)
    untouched = np.all(d == 0, axis=0)
    if untouched.all() or not untouched.any():
        untouched[:] = False
    tested = ~untouched
    refuse_constant(d[:, tested], what, [f"layer {l}" for l, t in zip(layers, tested) if t])
    p, rb = np.ones(d.shape[1]), np.zeros(d.shape[1])
    lo, hi = np.zeros(d.shape[1]), np.zeros(d.shape[1])
    p[tested], rb[tested] = wilcoxon(d[:, tested])
    lo[tested], hi[tested] = bootstrap_mean_ci(d[:, tested], n_boot, seed, 1 - alpha)
    return Layerwise(list(layers), d.mean(0), lo, hi, p, holm(p, alpha), rb, d.shape[0])


def exact_mcnemar(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """Paired binary outcomes: is a true more (or less) often than b? Exact two-sided McNemar
    (a binomial test on the discordant pairs). Returns (p, a-only count, b-only count)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0, only_a, only_b
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue), only_a, only_b


def spearman(x: np.ndarray, y: np.ndarray, alpha: float = 0.05) -> tuple[float, float, int, tuple[float, float] | None]:
    """Spearman rho of the finite pairs, its two-sided p and a (1 - alpha) CI by the Fisher z
    transform with the Bonett-Wright standard error; (nan, 1, n, None) when undefined."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 4 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan"), 1.0, n, None
    r = stats.spearmanr(x[ok], y[ok])
    rho = float(r.statistic)
    z, se = np.arctanh(np.clip(rho, -0.999999, 0.999999)), np.sqrt((1 + rho ** 2 / 2) / (n - 3))
    q = stats.norm.ppf(1 - alpha / 2)
    return rho, float(r.pvalue), n, (float(np.tanh(z - q * se)), float(np.tanh(z + q * se)))


def sign_test(wins: np.ndarray) -> tuple[float, float]:
    """Share of units won and the two-sided binomial p against one half."""
    wins = np.asarray(wins, bool)
    return float(wins.mean()), float(stats.binomtest(int(wins.sum()), len(wins), 0.5).pvalue)


def rank_p(rank: int, n: int) -> float:
    """Two-sided permutation p of a rank among n under no specificity (every rank equally likely):
    2 x the smaller tail, at most 1."""
    return float(min(1.0, 2 * min(rank, n + 1 - rank) / n))


# ---------------------------------------------------------------------------- power at declared effects

def power_paired(d_z: float, n: int, alpha: float, reps: int = 400, seed: int = 0, n_boot: int = 300) -> float:
    """Share of `reps` simulated samples of n normal paired differences with standardized mean d_z
    (mean / sd) that the paired rule calls *supported*."""
    rng = np.random.default_rng(seed)
    return float(np.mean([paired(rng.normal(d_z, 1.0, n), n_boot, i, alpha).verdict(alpha) == SUPPORTED
                          for i in range(reps)]))


def power_t(d: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample t-test at standardized effect d with n units, in the
    claimed direction (the noncentral t)."""
    df, nc = n - 1, d * np.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc))

