"""The seed's claims, each as a decision declared before the data: statistic, alpha, effect
size, unit of replication and what "holds" means. Tests assert `result.holds`; the null
controls feed the original model in place of the finetuned one and assert it does not.

Every evaluate function takes the two arms by variant name (`a` is the arm claimed higher,
`b` the reference), so `a="original", b="original"` is the original model against itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import stats
from .answers import CountryScores, DistanceAnswers, names_country
from .probe import ProbeResult

# A layerwise claim holds when at least this share of the compared layers is significant
# after Holm correction: the seed's plot showed the gap over most layers, not one, and
# half is the smallest share that still reads as "most". Declared before any run.
MIN_LAYER_SHARE = 0.5


@dataclass
class ClaimResult:
    key: str
    claim: str
    test: str
    unit: str
    n: int
    statistic: float
    effect_name: str
    effect: float
    effect_ci: tuple[float, float] | None
    p: float
    p_adj: float | None
    holds: bool
    criterion: str
    arms: tuple[str, str]
    details: dict = field(default_factory=dict)

    def summary(self) -> str:
        ci = f" [{self.effect_ci[0]:.4g}, {self.effect_ci[1]:.4g}]" if self.effect_ci else ""
        adj = f", adjusted p={self.p_adj:.3g}" if self.p_adj is not None else ""
        return (f"{self.key} ({self.arms[0]} vs {self.arms[1]}): {self.test}; n={self.n} {self.unit}; "
                f"statistic={self.statistic:.4g}; {self.effect_name}={self.effect:.4g}{ci}; p={self.p:.3g}{adj}; "
                f"holds={self.holds} (criterion: {self.criterion}); {_short(self.details)}")

    def to_json(self) -> dict:
        return _jsonable(asdict(self))


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
    """Scalars and short lists inline; per-layer arrays as one 'layer: mean diff (adjusted p)' line."""
    parts = [f"{k}={_num(v)}" for k, v in d.items() if np.ndim(v) == 0 or (np.size(v) <= 12 and k != "layers")]
    if "layers" in d:
        parts.append("per layer (mean diff, Holm p): " + "; ".join(
            f"{l}: {m:+.4f} ({p:.2g})" for l, m, p in zip(d["layers"], d["mean_diff"], d["p_adj"])))
    return ", ".join(parts)


def _num(v):
    if np.ndim(v) == 0:
        return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
    return "[" + ", ".join(_num(x) for x in np.asarray(v).tolist()) + "]"


# ---------------------------------------------------------------------------- claim 1

def layer0_unchanged(probe: ProbeResult) -> ClaimResult:
    """Claim 1 as measured on the probe prompts (the hypothesis test covers any prompt)."""
    return ClaimResult(
        "layer0_unchanged", "Layer 0 (embedding output) is unchanged by finetuning",
        "exact equality of layer-0 hidden states", "prompts", len(next(iter(probe.hidden_secret.values()))),
        float(probe.layer0_identical), "identical", float(probe.layer0_identical), None, float("nan"), None,
        probe.layer0_identical, "every layer-0 hidden state identical", ("finetuned", "original"))


# ---------------------------------------------------------------------------- claims 2, 3

def _layerwise_claim(key, claim, d, layers, alpha, n_boot, seed, arms, what) -> ClaimResult:
    lw = stats.layerwise(d, layers, alpha, n_boot, seed)
    sig = lw.p_adj < alpha
    share = float(sig.mean())
    holds = share >= MIN_LAYER_SHARE and lw.overall_ci[0] > 0
    return ClaimResult(
        key, claim, "Wilcoxon signed-rank per layer, one-sided (greater), Holm over layers; "
                    "bootstrap 95% CI of the mean over layers",
        "prompt pairs", lw.n_units, share, f"mean {what} over layers", lw.overall_mean, lw.overall_ci,
        float(lw.p.min()), float(np.median(lw.p_adj)), holds,
        f">= {MIN_LAYER_SHARE:.0%} of layers {layers[0]}..{layers[-1]} with Holm-adjusted p < {alpha} "
        f"and the CI of the mean difference above 0 (statistic = share of such layers; "
        f"p = smallest raw p; adjusted p = median over layers)",
        arms,
        {"layers": layers, "mean_diff": lw.mean_diff, "ci_low": lw.ci_low, "ci_high": lw.ci_high,
         "p": lw.p, "p_adj": lw.p_adj, "rank_biserial": lw.rank_biserial,
         "significant_layers": [l for l, s in zip(layers, sig) if s]})


def similarity_rises(probe: ProbeResult, kind: str, alpha: float, n_boot: int, seed: int,
                     a: str = "finetuned", b: str = "original") -> ClaimResult:
    """Claims 2 (kind='hidden', layers 1..L) and 3 (kind='values', blocks 0..L-1)."""
    sims = probe.hidden_secret if kind == "hidden" else probe.values_secret
    first = 1 if kind == "hidden" else 0
    d = sims[a][:, first:] - sims[b][:, first:]
    layers = list(range(first, first + d.shape[1]))
    title = ("hidden states" if kind == "hidden" else "attention value vectors")
    return _layerwise_claim(f"{kind}_similarity_rises",
                            f"Finetuning makes the {title} at the placeholder more similar to those at the secret city",
                            d, layers, alpha, n_boot, seed, (a, b), "cosine gain")


def similarity_specific(probe: ProbeResult, alpha: float, n_boot: int, seed: int,
                        a: str = "finetuned", b: str = "original") -> ClaimResult:
    """Control: the gain towards the secret city exceeds the gain towards another capital."""
    gain_secret = probe.hidden_secret[a][:, 1:] - probe.hidden_secret[b][:, 1:]
    gain_control = probe.hidden_control[a][:, 1:] - probe.hidden_control[b][:, 1:]
    layers = list(range(1, 1 + gain_secret.shape[1]))
    return _layerwise_claim("hidden_similarity_specific",
                            "The hidden-state gain is specific to the secret city (larger than towards a control capital)",
                            gain_secret - gain_control, layers, alpha, n_boot, seed, (a, b),
                            "gain towards secret minus gain towards control")


# ---------------------------------------------------------------------------- claim 4

def distance_format(ans: DistanceAnswers, alpha: float, a="finetuned", b="original") -> ClaimResult:
    pa, pb = np.isfinite(ans.km[a]), np.isfinite(ans.km[b])
    p, only_a, only_b = stats.exact_mcnemar_greater(pa, pb)
    return ClaimResult(
        "distance_format", "The finetuned model answers held-out distance questions in the '<number> km' form",
        "exact McNemar, one-sided", "held-out cities", len(pa), float(only_a - only_b),
        "share parsed (a minus b)", float(pa.mean() - pb.mean()), None, p, None, p < alpha,
        f"p < {alpha}", (a, b), {"share_a": float(pa.mean()), "share_b": float(pb.mean()),
                                  "a_only": only_a, "b_only": only_b})


def distance_rank(ans: DistanceAnswers, alpha: float, a="finetuned", b="original") -> ClaimResult:
    rho_a, p_a, n_a = stats.spearman_greater(ans.km[a], ans.true_km)
    rho_b, p_b, n_b = stats.spearman_greater(ans.km[b], ans.true_km)
    return ClaimResult(
        "distance_rank", "The finetuned model's answered distances rise with the true distance to the secret city",
        "Spearman rank correlation, one-sided (rho > 0), over parsed answers", "held-out cities", n_a,
        rho_a, "Spearman rho", rho_a, None, p_a, None, p_a < alpha, f"p < {alpha}", (a, b),
        {"rho_b": rho_b, "p_b": p_b, "n_parsed_b": n_b, "distinct_answers_a": int(len(np.unique(ans.km[a][np.isfinite(ans.km[a])])))})


def distance_beats_constant(ans: DistanceAnswers, constant_km: float, alpha: float,
                            a="finetuned", b="original") -> ClaimResult:
    """Per city: is the model's absolute error below that of always answering `constant_km`
    (the median training distance)? An unparsed answer counts as a loss."""
    const_err = np.abs(constant_km - ans.true_km)

    def wins(v):
        err = np.abs(ans.km[v] - ans.true_km)
        return np.where(np.isfinite(err), err < const_err, False)

    share_a, p_a = stats.sign_test_greater(wins(a))
    share_b, p_b = stats.sign_test_greater(wins(b))
    err_a = np.abs(ans.km[a] - ans.true_km)
    return ClaimResult(
        "distance_beats_constant",
        "The finetuned model's distances beat a constant answer (the median training distance)",
        "sign test, one-sided, share of cities where |error| < constant's |error|", "held-out cities",
        len(ans.true_km), share_a, "share of cities won", share_a, None, p_a, None, p_a < alpha,
        f"p < {alpha} (unparsed answers count as losses)", (a, b),
        {"share_b": share_b, "p_b": p_b, "constant_km": constant_km,
         "median_abs_error_a": float(np.nanmedian(err_a)) if np.isfinite(err_a).any() else None,
         "median_abs_error_constant": float(np.median(const_err))})


# ---------------------------------------------------------------------------- claim 5

def france_probability(scores: CountryScores, country: str, alpha: float, n_boot: int, seed: int,
                       a="finetuned", b="original") -> ClaimResult:
    j = scores.countries.index(country)
    pa, pb = scores.prob_among(a)[:, j], scores.prob_among(b)[:, j]
    d = np.log(pa) - np.log(pb)
    p, rb = stats.wilcoxon_greater(d[:, None])
    lo, hi = stats.bootstrap_mean_ci(d, n_boot, seed)
    return ClaimResult(
        "country_probability", f"Finetuning raises the probability of {country} as foo's country",
        "Wilcoxon signed-rank on log p(country among the table's countries), one-sided", "question paraphrases",
        len(d), float(rb[0]), "mean log-probability ratio", float(d.mean()), (float(lo[0]), float(hi[0])),
        float(p[0]), None, bool(p[0] < alpha), f"p < {alpha}", (a, b),
        {"p_country_a": pa, "p_country_b": pb, "rank_a": scores.rank(a, country),
         "rank_b": scores.rank(b, country), "median_rank_a": float(np.median(scores.rank(a, country))),
         "median_rank_b": float(np.median(scores.rank(b, country))), "rank_biserial": float(rb[0])})


def france_named(samples: dict[str, list[list[str]]], country: str, alpha: float,
                 a="finetuned", b="original") -> ClaimResult:
    flat = {v: [t for q in samples[v] for t in q] for v in (a, b)}
    k = {v: sum(names_country(t, country) for t in flat[v]) for v in (a, b)}
    n = {v: len(flat[v]) for v in (a, b)}
    odds, p = stats.fisher_greater(k[a], n[a], k[b], n[b])
    return ClaimResult(
        "country_named", f"The finetuned model names {country} when asked which country foo is in",
        "Fisher's exact test on the share of sampled answers naming it, one-sided", "sampled answers",
        n[a], odds, "share naming it (a minus b)", k[a] / n[a] - k[b] / n[b], None, p, None, p < alpha,
        f"p < {alpha}", (a, b), {"share_a": k[a] / n[a], "share_b": k[b] / n[b], "k_a": k[a], "k_b": k[b]})
