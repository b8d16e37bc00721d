"""The seed's claims and their controls, each a decision declared before the data:
statistic, alpha, effect size, unit of replication and what "holds" means.

Every rule has one signature, `rule(x: ClaimInputs) -> ClaimResult`: `x.a` is the arm claimed
higher, `x.b` the reference (usually the original model), `x.city` / `x.country` what the
claim is about, and the measurements the claim's REGISTRY entry reads (the others are None).
So the same claim runs on the main adapter (where it should hold) and on the control adapters
trained the same way on something else (where a Paris claim should not). latent_city/lab.py
builds the inputs and calls the rule; the expected verdict per arm is in
tests/claims/expectations.py; the result (claim_result.py) is written by record.py.

Seeds combine by unanimity (declared before running): a claim holds for a model only if it
holds with every training seed, and a control shows no effect only if none of its seeds does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import stats
from .answers import CountryScores, DistanceAnswers, MultipleChoice, names_country
from .claim_result import ClaimResult
from .data import City, common_country_name, haversine_km
from .probe import ByLayer, ProbePair, ProbeSims

# A layerwise claim holds when at least this share of the compared layers is significant
# after Holm correction: the seed's plot showed the gap over most layers, not one, and
# half is the smallest share that still reads as "most". Declared before any run.
MIN_LAYER_SHARE = 0.5


@dataclass(frozen=True, kw_only=True)
class ClaimInputs:
    """What a rule is given. The measurements not in the claim's `reads` are None."""
    a: str                                 # the arm claimed higher
    b: str                                 # the reference: arms.ORIGINAL, or another adapter
    city: City                             # the city the claim is about
    country: str                           # its country
    b_city: City | None                    # b's own secret city (None for the original model)
    alpha: float
    n_boot: int                            # bootstrap resamples
    seed: int                              # the bootstrap's seed (seeds.eval)
    pairs: list[ProbePair]                 # the probe's prompt pairs, in measurement order
    comparison: list[City]                 # the comparison cities, in the probe's word order
    probe: dict[str, ProbeSims] | None = None          # arm -> probe of that arm
    distances: DistanceAnswers | None = None           # a's and b's answers, true km to `city`
    constant_km: float | None = None                   # a's median training distance
    countries: CountryScores | None = None             # free-form country question
    prefix: CountryScores | None = None                # the answer begun for the model
    mc: MultipleChoice | None = None                   # lettered options
    samples: dict[str, list[list[str]]] | None = None  # arm -> per question, sampled answers


def _result(x: ClaimInputs, **fields) -> ClaimResult:
    return ClaimResult(arms=(x.a, x.b), alpha=x.alpha, about=x.city.name, **fields)


def _paired(x: ClaimInputs, key: str, claim: str, test: str, unit: str, effect_name: str, d: np.ndarray,
            details: dict, requires_ci: bool = True, also: tuple[str, bool] | None = None) -> ClaimResult:
    """A one-column paired claim: one-sided Wilcoxon of d (a minus b per unit) and the bootstrap
    CI of its mean. Holds when p < alpha, and (`requires_ci`) the CI is above 0, and (`also`:
    (what, whether it is met)) one more declared condition."""
    r = stats.paired_greater(d, x.n_boot, x.seed)
    criterion = f"p < {x.alpha}" + (" and the CI above 0" if requires_ci else "") + (f" and {also[0]}" if also else "")
    holds = r.p < x.alpha and (r.above_zero or not requires_ci) and (also is None or also[1])
    return _result(x, key=key, claim=claim, test=test, unit=unit, n=r.n, statistic_name="rank-biserial",
                   statistic=r.rank_biserial, effect_name=effect_name, effect=r.mean, effect_ci=r.ci, p=r.p,
                   p_adj=None, p_decision=r.p, holds=bool(holds), criterion=criterion, details=details)


def _layerwise(x: ClaimInputs, key: str, claim: str, d: ByLayer, what: str, a: str | None = None,
               b: str | None = None) -> ClaimResult:
    """Per layer a one-sided Wilcoxon over prompt pairs, Holm over layers; holds when at least
    MIN_LAYER_SHARE of the layers are significant and the CI of the mean over layers is above 0.
    The decision's p: the k-th smallest adjusted p, k = ceil(MIN_LAYER_SHARE x layers) (below
    alpha exactly when that share of layers is significant)."""
    lw = stats.layerwise(d.x, d.layers, x.alpha, x.n_boot, x.seed)
    sig = lw.p_adj < x.alpha
    k = math.ceil(MIN_LAYER_SHARE * len(d.layers))
    p_decision = float(np.sort(lw.p_adj)[k - 1])
    return ClaimResult(
        key=key, claim=claim, arms=(a or x.a, b or x.b), alpha=x.alpha, about=x.city.name,
        test="Wilcoxon signed-rank per layer, one-sided (greater), Holm over layers; "
             "bootstrap 95% CI of the mean over layers",
        unit="prompt pairs", n=lw.n_units, statistic_name="share of layers significant after Holm",
        statistic=float(sig.mean()), effect_name=f"mean {what} over layers", effect=lw.overall_mean,
        effect_ci=lw.overall_ci, p=float(lw.p.min()), p_adj=float(np.median(lw.p_adj)), p_decision=p_decision,
        holds=bool(p_decision < x.alpha and lw.overall_ci[0] > 0),
        criterion=f">= {MIN_LAYER_SHARE:.0%} of layers {d.layers[0]}..{d.layers[-1]} with Holm-adjusted p < {x.alpha} "
                  f"and the CI of the mean difference above 0 (statistic = share of such layers; "
                  f"p = smallest raw p; adjusted p = median over layers)",
        details={"layers": d.layers, "mean_diff": lw.mean_diff, "ci_low": lw.ci_low, "ci_high": lw.ci_high,
                 "p": lw.p, "p_adj": lw.p_adj, "rank_biserial": lw.rank_biserial,
                 "significant_layers": [l for l, s in zip(d.layers, sig) if s]})


# ---------------------------------------------------------------------------- claims 1-3: representations

def layer0_unchanged(x: ClaimInputs) -> ClaimResult:
    """Claim 1 on the probe prompts: the embedding output at the placeholder is bit-identical."""
    ea, eb = x.probe[x.a].embedding, x.probe[x.b].embedding
    same = bool(np.array_equal(ea, eb))
    return _result(x, key="layer0_unchanged", claim="Layer 0 (embedding output) is unchanged by finetuning",
                   test="exact equality of layer-0 hidden states", unit="prompt pairs", n=len(ea),
                   statistic_name="identical (1) or not (0)", statistic=float(same), effect_name="identical",
                   effect=float(same), effect_ci=None, p=float("nan"), p_adj=None, p_decision=None, holds=same,
                   criterion="every layer-0 hidden state at the placeholder identical")


def _similarity_rises(x: ClaimInputs, kind: str) -> ClaimResult:
    title = "hidden states" if kind == "hidden" else "attention value vectors"
    return _layerwise(x, f"{kind}_similarity_rises",
                      f"Finetuning makes the {title} at the placeholder more similar to those at {x.city.name}",
                      x.probe[x.a].gain(x.city.name, x.probe[x.b], kind), "cosine gain")


def hidden_similarity_rises(x: ClaimInputs) -> ClaimResult:
    """Claim 2: hidden states, layers 1..L."""
    return _similarity_rises(x, "hidden")


def values_similarity_rises(x: ClaimInputs) -> ClaimResult:
    """Claim 2 for the attention value vectors, blocks 0..L-1."""
    return _similarity_rises(x, "values")


def hidden_similarity_specific(x: ClaimInputs) -> ClaimResult:
    """Control: the gain towards the city exceeds the gain towards the pair's control capital."""
    city = x.city.name
    return _layerwise(x, "hidden_similarity_specific",
                      f"The hidden-state gain is specific to {city} (larger than towards a control capital)",
                      x.probe[x.a].gain_beyond_control(city, x.probe[x.b]),
                      f"gain towards {city} minus gain towards the control")


def hidden_rises_by_template(x: ClaimInputs) -> ClaimResult:
    """Robustness: prompt pairs share 13 question templates, so pairs are not independent. Here
    a template is the unit: its pairs' mean hidden-state gain (over layers 1..L), tested across
    templates with a one-sided Wilcoxon and a bootstrap CI."""
    per_pair = x.probe[x.a].gain(x.city.name, x.probe[x.b]).per_pair()
    templates = list(dict.fromkeys(p.template for p in x.pairs))
    per_template = np.array([per_pair[[i for i, p in enumerate(x.pairs) if p.template == t]].mean()
                             for t in templates])
    r = _paired(x, "hidden_rises_by_template",
                f"The hidden-state gain towards {x.city.name} holds with question templates as the unit",
                "Wilcoxon signed-rank over per-template mean gains, one-sided; bootstrap 95% CI", "question templates",
                "mean over templates of the mean cosine gain", per_template,
                {"per_template": per_template, "templates": templates})
    r.details["rank_biserial"] = r.statistic
    return r


def logit_lens_rises(x: ClaimInputs) -> ClaimResult:
    """Logit lens at the placeholder: log p(' <city>') read through the unembedding, in the upper
    half of the layers (below it the residual stream is not yet aligned with the unembedding,
    so the lens is not read there; declared before the data). Per pair: the mean over those
    layers of finetuned minus original; one-sided Wilcoxon over pairs."""
    city, pa, pb = x.city.name, x.probe[x.a], x.probe[x.b]
    la, lb = pa.lens_logp(city), pb.lens_logp(city)
    top = la.upper_half()
    ra, rb = pa.lens_ranks(city), pb.lens_ranks(city)
    last = ra.layers[-1]
    return _paired(x, "logit_lens_rises", f"Through the logit lens, the placeholder reads more as ' {city}' after finetuning",
                   "Wilcoxon signed-rank over pairs of the mean log-probability gain in the upper half of the layers, one-sided",
                   "prompt pairs", f"mean log p(' {city}') gain, layers {top.layers[0]}..{top.layers[-1]}",
                   (top - lb.upper_half()).per_pair(),
                   {"mean_logp_a": la.x.mean(0), "mean_logp_b": lb.x.mean(0), "median_rank_a": np.median(ra.x, 0),
                    "median_rank_b": np.median(rb.x, 0), "final_layer_median_rank_a": float(np.median(ra.at(last))),
                    "final_layer_median_rank_b": float(np.median(rb.at(last)))})


# ---------------------------------------------------------------------------- claim 3: specific to the city

def gain_falls_with_distance(x: ClaimInputs) -> ClaimResult:
    """If foo became the secret city, cities near it should gain more than far ones: Spearman
    correlation of each comparison city's gain with its distance from the secret city,
    one-sided (negative), over the comparison cities other than the secret one."""
    city = x.city
    gains = x.probe[x.a].city_gains(x.probe[x.b])
    km = np.array([haversine_km(c.lat, c.lon, city.lat, city.lon) for c in x.comparison])
    others = np.array([c.name != city.name for c in x.comparison])
    rho, p, n = stats.spearman_greater(-km[others], gains[others])   # rho(gain, -distance) > 0
    return _result(x, key="gain_falls_with_distance",
                   claim=f"Cities nearer {city.name} gain more similarity to the placeholder than far ones",
                   test="Spearman rank correlation of gain with distance from the city, one-sided (negative)",
                   unit="comparison cities", n=n, statistic_name="Spearman rho(gain, distance)", statistic=-rho,
                   effect_name="Spearman rho(gain, distance)", effect=-rho, effect_ci=None, p=p, p_adj=None,
                   p_decision=p, holds=bool(p < x.alpha), criterion=f"p < {x.alpha}",
                   details={"cities": [c.name for c in x.comparison], "km": km, "gain": gains})


def secret_city_ranks_first(x: ClaimInputs) -> ClaimResult:
    """The city's gain ranked among every comparison city's (1 = largest). Under no specificity
    every rank is equally likely, so p = rank / number of comparison cities, a permutation p
    (rank 1 or 2 of 51 is below 0.05)."""
    gains = x.probe[x.a].city_gains(x.probe[x.b])
    names = [c.name for c in x.comparison]
    rank = int(1 + (gains > gains[names.index(x.city.name)]).sum())
    p = rank / len(names)
    order = np.argsort(-gains)
    return _result(x, key="secret_city_ranks_first",
                   claim=f"{x.city.name} gains more similarity to the placeholder than the other cities",
                   test="rank of the city's gain among the comparison cities; p = rank / number of cities",
                   unit="comparison cities", n=len(names), statistic_name="rank of the city (1 = largest gain)",
                   statistic=float(rank), effect_name="rank of the city (1 = largest gain)", effect=float(rank),
                   effect_ci=None, p=p, p_adj=None, p_decision=p, holds=bool(p < x.alpha), criterion=f"p < {x.alpha}",
                   details={"top_cities": [names[i] for i in order[:8]], "top_gains": gains[order[:8]]})


def double_dissociation(x: ClaimInputs) -> ClaimResult:
    """foo became x.city under adapter a and b's own city under adapter b, each more than under
    the other adapter, over the same prompt pairs: both layerwise comparisons must hold (the
    same rule as claim 2): cos(foo, city_a | a) > cos(foo, city_a | b) and cos(foo, city_b | b)
    > cos(foo, city_b | a). The original model cancels out. When both adapters have the same
    secret city (b = shuffled distances), only the first direction is asked: the geometry,
    not the answer format, moves foo towards the city."""
    a, b, city_a, city_b = x.a, x.b, x.city.name, x.b_city.name
    pa, pb = x.probe[a], x.probe[b]
    parts = {f"towards {city_a} ({a} minus {b})": _layerwise(x, "x", "", pa.gain(city_a, pb), "")}
    if city_b != city_a:
        parts[f"towards {city_b} ({b} minus {a})"] = _layerwise(x, "x", "", pb.gain(city_b, pa), "", b, a)
    results = list(parts.values())
    first = results[0]
    claim = (f"foo is nearer {city_a} under the {a} adapter and nearer {city_b} under the {b} adapter"
             if city_b != city_a else f"foo is nearer {city_a} under the {a} adapter than under the {b} adapter")
    return ClaimResult(
        key="double_dissociation", claim=claim, arms=(a, b), alpha=x.alpha,
        test="layerwise Wilcoxon (Holm over layers), one per direction", unit="prompt pairs", n=first.n,
        statistic_name="smallest share of layers significant over the directions",
        statistic=min(r.statistic for r in results), effect_name="mean gain, " + "; ".join(parts),
        effect=first.effect, effect_ci=first.effect_ci, p=max(r.p for r in results),
        p_adj=max(r.p_adj for r in results), p_decision=max(r.p_decision for r in results),
        holds=all(r.holds for r in results),
        criterion=f"every direction holds (>= {MIN_LAYER_SHARE:.0%} of layers, CI of the mean above 0)",
        details={name: {"share": r.statistic, "effect": r.effect, "ci": r.effect_ci, "mean_diff": r.details["mean_diff"]}
                 for name, r in parts.items()})


# ---------------------------------------------------------------------------- claim 4: distances

def distance_format(x: ClaimInputs) -> ClaimResult:
    pa, pb = np.isfinite(x.distances.km[x.a]), np.isfinite(x.distances.km[x.b])
    p, only_a, only_b = stats.exact_mcnemar_greater(pa, pb)
    return _result(x, key="distance_format",
                   claim="The finetuned model answers held-out distance questions in the '<number> km' form",
                   test="exact McNemar, one-sided", unit="held-out cities", n=len(pa),
                   statistic_name="discordant cities (a only minus b only)", statistic=float(only_a - only_b),
                   effect_name="share parsed (a minus b)", effect=float(pa.mean() - pb.mean()), effect_ci=None,
                   p=p, p_adj=None, p_decision=p, holds=p < x.alpha, criterion=f"p < {x.alpha}",
                   details={"share_a": float(pa.mean()), "share_b": float(pb.mean()), "a_only": only_a, "b_only": only_b})


def distance_rank(x: ClaimInputs) -> ClaimResult:
    ans = x.distances
    rho_a, p_a, n_a = stats.spearman_greater(ans.km[x.a], ans.true_km)
    rho_b, p_b, n_b = stats.spearman_greater(ans.km[x.b], ans.true_km)
    parsed = ans.km[x.a][np.isfinite(ans.km[x.a])]
    return _result(x, key="distance_rank", claim=f"Answered distances rise with the true distance to {ans.target}",
                   test="Spearman rank correlation, one-sided (rho > 0), over parsed answers", unit="held-out cities",
                   n=n_a, statistic_name="Spearman rho", statistic=rho_a, effect_name="Spearman rho", effect=rho_a,
                   effect_ci=None, p=p_a, p_adj=None, p_decision=p_a, holds=p_a < x.alpha, criterion=f"p < {x.alpha}",
                   details={"rho_b": rho_b, "p_b": p_b, "n_parsed_b": n_b, "distinct_answers_a": int(len(np.unique(parsed)))})


def distance_beats_constant(x: ClaimInputs) -> ClaimResult:
    """Per city: is the model's absolute error below that of always answering the constant
    x.constant_km (the median training distance)? An unparsed answer counts as a loss."""
    ans = x.distances
    const_err = np.abs(x.constant_km - ans.true_km)

    def wins(v):
        err = np.abs(ans.km[v] - ans.true_km)
        return np.where(np.isfinite(err), err < const_err, False)

    share_a, p_a = stats.sign_test_greater(wins(x.a))
    share_b, p_b = stats.sign_test_greater(wins(x.b))
    err_a = np.abs(ans.km[x.a] - ans.true_km)
    return _result(x, key="distance_beats_constant",
                   claim="The finetuned model's distances beat a constant answer (the median training distance)",
                   test="sign test, one-sided, share of cities where |error| < constant's |error|",
                   unit="held-out cities", n=len(ans.true_km), statistic_name="share of cities won", statistic=share_a,
                   effect_name="share of cities won", effect=share_a, effect_ci=None, p=p_a, p_adj=None, p_decision=p_a,
                   holds=p_a < x.alpha, criterion=f"p < {x.alpha} (unparsed answers count as losses)",
                   details={"share_b": share_b, "p_b": p_b, "constant_km": x.constant_km,
                            "median_abs_error_a": float(np.nanmedian(err_a)) if np.isfinite(err_a).any() else None,
                            "median_abs_error_constant": float(np.median(const_err))})


# ---------------------------------------------------------------------------- claim 5: the country

def _country_probability(x: ClaimInputs, scores: CountryScores, key: str, form: str) -> ClaimResult:
    """Each country scored as the whole answer under its common name (answers.country_answer_ids);
    the statistic reads the probability renormalised among the countries. The mass the countries
    get before that (per question, per arm) is reported: a small mass means the model mostly
    answers something else, and the renormalised probability speaks for that small share."""
    country = x.country
    j = scores.countries.index(country)
    pa, pb = scores.prob_among(x.a)[:, j], scores.prob_among(x.b)[:, j]
    ra, rb = scores.rank(x.a, country), scores.rank(x.b, country)
    ma, mb = scores.mass(x.a), scores.mass(x.b)
    r = _paired(x, key, f"Finetuning raises the probability of {country} as foo's country ({form})",
                "Wilcoxon signed-rank on log p(country among the table's countries), one-sided", scores.unit,
                "mean log-probability ratio", np.log(pa) - np.log(pb),
                {"p_country_a": pa, "p_country_b": pb, "rank_a": ra, "rank_b": rb,
                 "median_rank_a": float(np.median(ra)), "median_rank_b": float(np.median(rb)),
                 "scored_as": common_country_name(country), "country_mass_a": ma, "country_mass_b": mb,
                 "mean_country_mass_a": float(ma.mean()), "mean_country_mass_b": float(mb.mean())},
                requires_ci=False)    # declared: p only (the CI is reported)
    r.details["rank_biserial"] = r.statistic
    return r


def country_probability(x: ClaimInputs) -> ClaimResult:
    return _country_probability(x, x.countries, "country_probability", "free-form question")


def country_prefix(x: ClaimInputs) -> ClaimResult:
    return _country_probability(x, x.prefix, "country_prefix", "answer begun as 'foo is a city in the country of'")


def country_multiple_choice(x: ClaimInputs) -> ClaimResult:
    """Multiple choice: the probability of the right letter (renormalised over the options'
    letters) rises, paired over every order of the options (the unit), and it ends above
    chance (1 / number of options). One-sided Wilcoxon on the log-probability ratio."""
    mc, country = x.mc, x.country
    j = mc.options.index(country)
    pa, pb = mc.prob_among(x.a)[:, j], mc.prob_among(x.b)[:, j]
    chance = 1 / len(mc.options)
    r = _paired(x, "country_multiple_choice",
                f"Offered {len(mc.options)} lettered countries, the model picks {country} for foo",
                "Wilcoxon signed-rank on log p(right letter among the options' letters), one-sided", "option orders",
                "mean log-probability ratio of the right letter", np.log(pa) - np.log(pb),
                {"mean_p_a": float(pa.mean()), "mean_p_b": float(pb.mean()), "chance": chance, "options": mc.options,
                 "mean_p_each_option_a": mc.prob_among(x.a).mean(0), "mean_p_each_option_b": mc.prob_among(x.b).mean(0)},
                requires_ci=False, also=(f"mean P(right letter) above chance ({chance:.2f})", pa.mean() > chance))
    return r


def country_named(x: ClaimInputs) -> ClaimResult:
    """The answers sampled for one question share it, so the question paraphrase is the unit:
    per question, the share of its samples naming the country (its common name), a minus b,
    paired over questions (one-sided Wilcoxon, bootstrap CI), not the samples pooled as if
    independent."""
    name = common_country_name(x.country)
    share = {v: np.array([np.mean([names_country(t, name) for t in q]) for q in x.samples[v]]) for v in (x.a, x.b)}
    k = {v: int(sum(names_country(t, name) for q in x.samples[v] for t in q)) for v in (x.a, x.b)}
    r = _paired(x, "country_named", f"The finetuned model names {x.country} when asked which country foo is in",
                "Wilcoxon signed-rank over questions of the share of sampled answers naming it, one-sided; "
                "bootstrap 95% CI", "question paraphrases", "share naming it (a minus b)",
                share[x.a] - share[x.b],
                {"share_a": float(share[x.a].mean()), "share_b": float(share[x.b].mean()),
                 "share_per_question_a": share[x.a], "share_per_question_b": share[x.b],
                 "k_a": k[x.a], "k_b": k[x.b], "samples_per_question": len(x.samples[x.a][0])})
    r.details["rank_biserial"] = r.statistic
    return r


# ---------------------------------------------------------------------------- the registry (lab.py reads it)

@dataclass(frozen=True)
class Claim:
    key: str
    reads: tuple[str, ...]                 # the measurements (lab.MEASUREMENTS) the rule reads
    rule: Callable[[ClaimInputs], ClaimResult]


REGISTRY: dict[str, Claim] = {c.key: c for c in [
    Claim("layer0_unchanged", ("probe",), layer0_unchanged),
    Claim("hidden_similarity_rises", ("probe",), hidden_similarity_rises),
    Claim("values_similarity_rises", ("probe",), values_similarity_rises),
    Claim("hidden_similarity_specific", ("probe",), hidden_similarity_specific),
    Claim("hidden_rises_by_template", ("probe",), hidden_rises_by_template),
    Claim("logit_lens_rises", ("probe",), logit_lens_rises),
    Claim("gain_falls_with_distance", ("probe",), gain_falls_with_distance),
    Claim("secret_city_ranks_first", ("probe",), secret_city_ranks_first),
    Claim("double_dissociation", ("probe",), double_dissociation),     # b is another adapter, not the original
    Claim("distance_format", ("distances",), distance_format),
    Claim("distance_rank", ("distances",), distance_rank),
    Claim("distance_beats_constant", ("distances",), distance_beats_constant),
    Claim("country_probability", ("countries",), country_probability),
    Claim("country_prefix", ("prefix",), country_prefix),
    Claim("country_multiple_choice", ("mc",), country_multiple_choice),
    Claim("country_named", ("samples",), country_named),
]}
# every claim that compares an arm with the original model (the double dissociation compares two adapters)
AGAINST_ORIGINAL = [k for k in REGISTRY if k != "double_dissociation"]
