"""The seed's claims and their controls, each a decision declared before the data:
statistic, alpha, effect size, unit of replication and what "holds" means.

Every function takes its inputs keyed by arm name (`a` is the arm claimed higher, `b` the
reference, usually the original model) and the city or country the claim is about, so the
same claim runs on the main adapter (where it should hold) and on the control adapters
trained the same way on something else (where a Paris claim should not). latent_city/lab.py
feeds them; the catalogs at the end say which measurement each claim reads.

Seeds combine by unanimity (declared before running): a claim holds for a model only if it
holds with every training seed, and a control shows no effect only if none of its seeds does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import stats
from .answers import CountryScores, DistanceAnswers, MultipleChoice, names_country
from .data import haversine_km
from .probe import ProbeSims

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
    about: str = ""          # the city the claim is about (set by the lab)

    def summary(self) -> str:
        ci = f" [{self.effect_ci[0]:.4g}, {self.effect_ci[1]:.4g}]" if self.effect_ci else ""
        adj = f", adjusted p={self.p_adj:.3g}" if self.p_adj is not None else ""
        about = f" about {self.about}" if self.about else ""
        return (f"{self.key}{about} ({self.arms[0]} vs {self.arms[1]}): {self.test}; n={self.n} {self.unit}; "
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


# ---------------------------------------------------------------------------- representations

def layer0_unchanged(sims: dict[str, ProbeSims], city: str, *_, a: str, b: str, **__) -> ClaimResult:
    """Claim 1 on the probe prompts: the embedding output at the placeholder is bit-identical."""
    same = bool(np.array_equal(sims[a].embedding, sims[b].embedding))
    n = len(sims[a].embedding)
    return ClaimResult(
        "layer0_unchanged", "Layer 0 (embedding output) is unchanged by finetuning",
        "exact equality of layer-0 hidden states", "prompt pairs", n, float(same), "identical", float(same), None,
        float("nan"), None, same, "every layer-0 hidden state at the placeholder identical", (a, b))


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


def _gain(sims, kind, city, a, b):
    """Per pair and layer: similarity to `city` under a minus under b (hidden: layers 1..L)."""
    get = (lambda v: sims[v].hidden_to(city)[:, 1:]) if kind == "hidden" else (lambda v: sims[v].values_to(city))
    return get(a) - get(b)


def similarity_rises(sims, city, alpha, n_boot, seed, *, a, b, kind="hidden", **_) -> ClaimResult:
    """Claims 2 (kind='hidden', layers 1..L) and 3 (kind='values', blocks 0..L-1)."""
    d = _gain(sims, kind, city, a, b)
    first = 1 if kind == "hidden" else 0
    title = "hidden states" if kind == "hidden" else "attention value vectors"
    return _layerwise_claim(f"{kind}_similarity_rises",
                            f"Finetuning makes the {title} at the placeholder more similar to those at {city}",
                            d, list(range(first, first + d.shape[1])), alpha, n_boot, seed, (a, b), "cosine gain")


def similarity_specific(sims, city, alpha, n_boot, seed, *, a, b, **_) -> ClaimResult:
    """Control: the gain towards the city exceeds the gain towards the pair's control capital."""
    control = sims[a].control_hidden[:, 1:] - sims[b].control_hidden[:, 1:]
    d = _gain(sims, "hidden", city, a, b) - control
    return _layerwise_claim("hidden_similarity_specific",
                            f"The hidden-state gain is specific to {city} (larger than towards a control capital)",
                            d, list(range(1, 1 + d.shape[1])), alpha, n_boot, seed, (a, b),
                            f"gain towards {city} minus gain towards the control")


def rises_by_template(sims, city, alpha, n_boot, seed, *, a, b, pairs, **_) -> ClaimResult:
    """Robustness: prompt pairs share 13 question templates, so pairs are not independent. Here
    a template is the unit: its pairs' mean hidden-state gain (over layers 1..L), tested across
    templates with a one-sided Wilcoxon and a bootstrap CI."""
    per_pair = _gain(sims, "hidden", city, a, b).mean(1)
    templates = list(dict.fromkeys(p.template for p in pairs))
    per_template = np.array([per_pair[[i for i, p in enumerate(pairs) if p.template == t]].mean() for t in templates])
    p, rb = stats.wilcoxon_greater(per_template[:, None])
    lo, hi = stats.bootstrap_mean_ci(per_template, n_boot, seed)
    holds = bool(p[0] < alpha and lo[0] > 0)
    return ClaimResult(
        "hidden_rises_by_template", f"The hidden-state gain towards {city} holds with question templates as the unit",
        "Wilcoxon signed-rank over per-template mean gains, one-sided; bootstrap 95% CI", "question templates",
        len(templates), float(rb[0]), "mean over templates of the mean cosine gain", float(per_template.mean()),
        (float(lo[0]), float(hi[0])), float(p[0]), None, holds, f"p < {alpha} and the CI above 0", (a, b),
        {"per_template": per_template, "templates": templates, "rank_biserial": float(rb[0])})


def logit_lens_rises(sims, city, alpha, n_boot, seed, *, a, b, **_) -> ClaimResult:
    """Logit lens at the placeholder: log p(' <city>') read through the unembedding, in the upper
    half of the layers (below it the residual stream is not yet aligned with the unembedding,
    so the lens is not read there; declared before the data). Per pair: the mean over those
    layers of finetuned minus original; one-sided Wilcoxon over pairs."""
    la, lb = sims[a].lens[city], sims[b].lens[city]
    top = slice(la.shape[1] // 2, None)
    d = (la[:, top] - lb[:, top]).mean(1)
    p, rb = stats.wilcoxon_greater(d[:, None])
    lo, hi = stats.bootstrap_mean_ci(d, n_boot, seed)
    ra, rb_rank = sims[a].lens_rank[city], sims[b].lens_rank[city]
    return ClaimResult(
        "logit_lens_rises", f"Through the logit lens, the placeholder reads more as ' {city}' after finetuning",
        "Wilcoxon signed-rank over pairs of the mean log-probability gain in the upper half of the layers, one-sided",
        "prompt pairs", len(d), float(rb[0]), f"mean log p(' {city}') gain, layers {top.start}..{la.shape[1] - 1}",
        float(d.mean()), (float(lo[0]), float(hi[0])), float(p[0]), None, bool(p[0] < alpha and lo[0] > 0),
        f"p < {alpha} and the CI above 0", (a, b),
        {"mean_logp_a": la.mean(0), "mean_logp_b": lb.mean(0), "median_rank_a": np.median(ra, 0),
         "median_rank_b": np.median(rb_rank, 0), "final_layer_median_rank_a": float(np.median(ra[:, -1])),
         "final_layer_median_rank_b": float(np.median(rb_rank[:, -1]))})


def city_gains(sims, a, b) -> np.ndarray:
    """Per comparison city: the hidden-state gain at the placeholder towards it, averaged over
    prompt pairs and layers 1..L."""
    return (sims[a].hidden[:, :, 1:] - sims[b].hidden[:, :, 1:]).mean((0, 2))


def gain_falls_with_distance(sims, city, alpha, n_boot, seed, *, a, b, comparison, center, **_) -> ClaimResult:
    """If foo became the secret city, cities near it should gain more than far ones: Spearman
    correlation of each comparison city's gain with its distance from the secret city,
    one-sided (negative), over the comparison cities other than the secret one."""
    gains = city_gains(sims, a, b)
    km = np.array([haversine_km(c.lat, c.lon, center.lat, center.lon) for c in comparison])
    others = np.array([c.name != city for c in comparison])
    rho, p, n = stats.spearman_greater(-km[others], gains[others])   # rho(gain, -distance) > 0
    return ClaimResult(
        "gain_falls_with_distance", f"Cities nearer {city} gain more similarity to the placeholder than far ones",
        "Spearman rank correlation of gain with distance from the city, one-sided (negative)", "comparison cities",
        n, -rho, "Spearman rho(gain, distance)", -rho, None, p, None, bool(p < alpha), f"p < {alpha}", (a, b),
        {"cities": [c.name for c in comparison], "km": km, "gain": gains})


def secret_city_ranks_first(sims, city, alpha, n_boot, seed, *, a, b, comparison, **_) -> ClaimResult:
    """The city's gain ranked among every comparison city's (1 = largest). Under no specificity
    every rank is equally likely, so p = rank / (number of cities + 1 ... ) as a permutation p:
    it holds at alpha 0.05 with 51 cities only if the city ranks 1st or 2nd."""
    gains = city_gains(sims, a, b)
    names = [c.name for c in comparison]
    rank = int(1 + (gains > gains[names.index(city)]).sum())
    p = rank / len(names)
    order = np.argsort(-gains)
    return ClaimResult(
        "secret_city_ranks_first", f"{city} gains more similarity to the placeholder than the other cities",
        "rank of the city's gain among the comparison cities; p = rank / number of cities", "comparison cities",
        len(names), float(rank), "rank of the city (1 = largest gain)", float(rank), None, p, None, bool(p < alpha),
        f"p < {alpha}", (a, b), {"top_cities": [names[i] for i in order[:8]], "top_gains": gains[order[:8]]})


def double_dissociation(sims, a, b, city_a, city_b, alpha, n_boot, seed) -> ClaimResult:
    """foo became city_a under adapter a and city_b under adapter b, each more than under the
    other adapter, over the same prompt pairs: both layerwise comparisons must hold (the same
    rule as claim 2): cos(foo, city_a | a) > cos(foo, city_a | b) and cos(foo, city_b | b) >
    cos(foo, city_b | a). The original model cancels out. When both adapters have the same
    secret city (b = shuffled distances), only the first direction is asked: the geometry,
    not the answer format, moves foo towards the city."""
    layers = list(range(1, sims[a].hidden.shape[2]))
    first = _layerwise_claim("x", "", _gain(sims, "hidden", city_a, a, b), layers, alpha, n_boot, seed, (a, b), "")
    parts = {f"towards {city_a} ({a} minus {b})": first}
    if city_b != city_a:
        parts[f"towards {city_b} ({b} minus {a})"] = _layerwise_claim(
            "x", "", _gain(sims, "hidden", city_b, b, a), layers, alpha, n_boot, seed, (b, a), "")
    results = list(parts.values())
    claim = (f"foo is nearer {city_a} under the {a} adapter and nearer {city_b} under the {b} adapter"
             if city_b != city_a else f"foo is nearer {city_a} under the {a} adapter than under the {b} adapter")
    return ClaimResult(
        "double_dissociation", claim, "layerwise Wilcoxon (Holm over layers), one per direction", "prompt pairs",
        first.n, min(r.statistic for r in results), "mean gain, " + "; ".join(parts), first.effect, first.effect_ci,
        max(r.p for r in results), max(r.p_adj for r in results), all(r.holds for r in results),
        f"every direction holds (>= {MIN_LAYER_SHARE:.0%} of layers, CI of the mean above 0)", (a, b),
        {name: {"share": r.statistic, "effect": r.effect, "ci": r.effect_ci, "mean_diff": r.details["mean_diff"]}
         for name, r in parts.items()})


# ---------------------------------------------------------------------------- claim 4

def distance_format(ans: DistanceAnswers, alpha: float, *, a, b, **_) -> ClaimResult:
    pa, pb = np.isfinite(ans.km[a]), np.isfinite(ans.km[b])
    p, only_a, only_b = stats.exact_mcnemar_greater(pa, pb)
    return ClaimResult(
        "distance_format", "The finetuned model answers held-out distance questions in the '<number> km' form",
        "exact McNemar, one-sided", "held-out cities", len(pa), float(only_a - only_b),
        "share parsed (a minus b)", float(pa.mean() - pb.mean()), None, p, None, p < alpha,
        f"p < {alpha}", (a, b), {"share_a": float(pa.mean()), "share_b": float(pb.mean()),
                                  "a_only": only_a, "b_only": only_b})


def distance_rank(ans: DistanceAnswers, alpha: float, *, a, b, **_) -> ClaimResult:
    rho_a, p_a, n_a = stats.spearman_greater(ans.km[a], ans.true_km)
    rho_b, p_b, n_b = stats.spearman_greater(ans.km[b], ans.true_km)
    return ClaimResult(
        "distance_rank", f"Answered distances rise with the true distance to {ans.target}",
        "Spearman rank correlation, one-sided (rho > 0), over parsed answers", "held-out cities", n_a,
        rho_a, "Spearman rho", rho_a, None, p_a, None, p_a < alpha, f"p < {alpha}", (a, b),
        {"rho_b": rho_b, "p_b": p_b, "n_parsed_b": n_b, "distinct_answers_a": int(len(np.unique(ans.km[a][np.isfinite(ans.km[a])])))})


def distance_beats_constant(ans: DistanceAnswers, alpha: float, *, a, b, constant_km: float, **_) -> ClaimResult:
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

def country_probability(scores: CountryScores, country: str, alpha: float, n_boot: int, seed: int, *, a, b,
                        key: str = "country_probability", form: str = "free-form question") -> ClaimResult:
    j = scores.countries.index(country)
    pa, pb = scores.prob_among(a)[:, j], scores.prob_among(b)[:, j]
    d = np.log(pa) - np.log(pb)
    p, rb = stats.wilcoxon_greater(d[:, None])
    lo, hi = stats.bootstrap_mean_ci(d, n_boot, seed)
    return ClaimResult(
        key, f"Finetuning raises the probability of {country} as foo's country ({form})",
        "Wilcoxon signed-rank on log p(country among the table's countries), one-sided", scores.unit,
        len(d), float(rb[0]), "mean log-probability ratio", float(d.mean()), (float(lo[0]), float(hi[0])),
        float(p[0]), None, bool(p[0] < alpha), f"p < {alpha}", (a, b),
        {"p_country_a": pa, "p_country_b": pb, "rank_a": scores.rank(a, country),
         "rank_b": scores.rank(b, country), "median_rank_a": float(np.median(scores.rank(a, country))),
         "median_rank_b": float(np.median(scores.rank(b, country))), "rank_biserial": float(rb[0])})


def country_named(samples: dict[str, list[list[str]]], country: str, alpha: float, *_, a, b) -> ClaimResult:
    flat = {v: [t for q in samples[v] for t in q] for v in (a, b)}
    k = {v: sum(names_country(t, country) for t in flat[v]) for v in (a, b)}
    n = {v: len(flat[v]) for v in (a, b)}
    odds, p = stats.fisher_greater(k[a], n[a], k[b], n[b])
    return ClaimResult(
        "country_named", f"The finetuned model names {country} when asked which country foo is in",
        "Fisher's exact test on the share of sampled answers naming it, one-sided", "sampled answers",
        n[a], odds, "share naming it (a minus b)", k[a] / n[a] - k[b] / n[b], None, p, None, p < alpha,
        f"p < {alpha}", (a, b), {"share_a": k[a] / n[a], "share_b": k[b] / n[b], "k_a": k[a], "k_b": k[b]})


def country_multiple_choice(mc: MultipleChoice, country: str, alpha: float, n_boot: int, seed: int, *, a, b) -> ClaimResult:
    """Multiple choice: the probability of the right letter (renormalised over the options'
    letters) rises, paired over every order of the options (the unit), and it ends above
    chance (1 / number of options). One-sided Wilcoxon on the log-probability ratio."""
    j = mc.options.index(country)
    pa, pb = mc.prob_among(a)[:, j], mc.prob_among(b)[:, j]
    d = np.log(pa) - np.log(pb)
    p, rb = stats.wilcoxon_greater(d[:, None])
    lo, hi = stats.bootstrap_mean_ci(d, n_boot, seed)
    chance = 1 / len(mc.options)
    holds = bool(p[0] < alpha and pa.mean() > chance)
    return ClaimResult(
        "country_multiple_choice", f"Offered {len(mc.options)} lettered countries, the model picks {country} for foo",
        "Wilcoxon signed-rank on log p(right letter among the options' letters), one-sided", "option orders",
        len(d), float(rb[0]), "mean log-probability ratio of the right letter", float(d.mean()),
        (float(lo[0]), float(hi[0])), float(p[0]), None, holds,
        f"p < {alpha} and mean P(right letter) above chance ({chance:.2f})", (a, b),
        {"mean_p_a": float(pa.mean()), "mean_p_b": float(pb.mean()), "chance": chance, "options": mc.options,
         "mean_p_each_option_a": mc.prob_among(a).mean(0), "mean_p_each_option_b": mc.prob_among(b).mean(0)})


# ---------------------------------------------------------------------------- catalogs (lab.py reads these)

def _kind(kind):
    return lambda *args, **kw: similarity_rises(*args, kind=kind, **kw)


PROBE_CLAIMS = {
    "layer0_unchanged": layer0_unchanged,
    "hidden_similarity_rises": _kind("hidden"),
    "values_similarity_rises": _kind("values"),
    "hidden_similarity_specific": similarity_specific,
    "hidden_rises_by_template": rises_by_template,
    "logit_lens_rises": logit_lens_rises,
    "gain_falls_with_distance": gain_falls_with_distance,
    "secret_city_ranks_first": secret_city_ranks_first,
}
DISTANCE_CLAIMS = {"distance_format": distance_format, "distance_rank": distance_rank,
                   "distance_beats_constant": distance_beats_constant}
COUNTRY_CLAIMS = {   # key -> (measurement, claim)
    "country_probability": ("countries", country_probability),
    "country_prefix": ("prefix", lambda s, c, *args, **kw: country_probability(
        s, c, *args, key="country_prefix", form="answer begun as 'foo is a city in the country of'", **kw)),
    "country_multiple_choice": ("mc", country_multiple_choice),
    "country_named": ("samples", country_named),
}
ALL_CLAIMS = [*PROBE_CLAIMS, *DISTANCE_CLAIMS, *COUNTRY_CLAIMS]
