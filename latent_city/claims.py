"""The seed's claims and their controls, each a decision declared before the data:
statistic, alpha, effect size, unit of replication and the rule for its three outcomes.

Every rule has one signature, `rule(x: ClaimInputs) -> ClaimResult`: `x.a` is the arm claimed
higher, `x.b` the reference (usually the original model), `x.city` / `x.country` what the
claim is about, and the measurements the claim's REGISTRY entry reads (the others are None).
So the same claim runs on the main adapter (where it should be supported) and on the control
adapters trained the same way on something else (where a Paris claim should not).
latent_city/lab.py builds the inputs and calls the rule; the expected verdict per arm is in
tests/claims/expectations.py; the result (claim_result.py) is written by record.py.

Declared before the data:
- One primary test per question. "Did foo become the secret city?" is `foo_became_city`: the
  specificity of the hidden-state gain (gain towards the city minus the mean gain towards the
  comparison cities that are no arm's secret city, per prompt pair, averaged over hidden layers
  1..L-1), one mean per adapter, a two-sided one-sample t-test across the family's adapters (the
  training seeds).
- Every claim in REGISTRY is secondary: on an arm where the claims are expected (the main one,
  the learning-rate grid), Holm over the arm's secondary claims that have a p (`adjust_family`);
  a verdict stands only if its Holm-adjusted p is below alpha. Left out of the family: the tests
  that could never pass it (NOT_IN_FAMILY), decided at the raw alpha. On a control, the raw alpha
  (a correction there would make it easier for a control to look clean).
- Three outcomes, one rule (stats.verdict): supported (two-sided p < alpha and the (1 - alpha)
  CI above 0), contradicted (p < alpha and the CI below 0), inconclusive (otherwise).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import stats
from .answers import CountryScores, DistanceAnswers, MultipleChoice, TaskAnswers, names_country
from .claim_result import ClaimResult
from .data import City, common_country_name, haversine_km
from .probe import READOUT_WHY, READOUTS, ByLayer, ProbePair, ProbeSims
from .stats import CONTRADICTED, INCONCLUSIVE, SUPPORTED

# Tests whose smallest attainable two-sided p is above alpha / (the family's size), so that under Holm
# they could never be supported, are decided at the raw alpha and say so (declared; the unit test
# tests/unit/test_stats.py checks the reason on the CPU preset): the rank of the secret city among
# ~49 cities (smallest p 2/49 = 0.041) and the answer begun for the model (6 prefixes: 2/64 = 0.031).
NOT_IN_FAMILY = {"secret_city_ranks_first", "country_prefix"}

RULE = ("supported: two-sided p < {a} and the {c:.0%} CI above 0; contradicted: p < {a} and the CI below 0; "
        "else inconclusive")
RULE_NO_CI = "supported: two-sided p < {a} and the effect above 0; contradicted: p < {a} and the effect below 0; else inconclusive"


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
    secrets: tuple[str, ...] = ()          # every arm's secret city: trained on by some arm, so never a comparison
    probe: dict[str, ProbeSims] | None = None          # arm -> probe of that arm
    distances: DistanceAnswers | None = None           # a's and b's answers, true km to `city`
    constant_km: float | None = None                   # a's median training distance
    task: TaskAnswers | None = None                    # a's and b's answers to a's training question (manipulation.py)
    countries: CountryScores | None = None             # free-form country question
    prefix: CountryScores | None = None                # the answer begun for the model
    mc: MultipleChoice | None = None                   # lettered options
    samples: dict[str, list[list[str]]] | None = None  # arm -> per question, sampled answers


def _result(x: ClaimInputs, **fields) -> ClaimResult:
    return ClaimResult(arms=(x.a, x.b), alpha=x.alpha, about=x.city.name, **fields)


def _rule(x: ClaimInputs, extra: str = "", ci: bool = True) -> str:
    """The declared rule in words (`ci`: decided on the CI of the effect, else on its sign)."""
    return (RULE if ci else RULE_NO_CI).format(a=x.alpha, c=1 - x.alpha) + (f"; supported also needs {extra}" if extra else "")


def _paired(x: ClaimInputs, key: str, claim: str, test: str, unit: str, effect_name: str, d: np.ndarray,
            details: dict, also: tuple[str, bool] | None = None) -> ClaimResult:
    """A one-column paired claim: two-sided Wilcoxon of d (a minus b per unit) and the bootstrap
    CI of its mean, three outcomes by stats.verdict; (`also`: (what, whether it is met)) one more
    declared condition for *supported*."""
    r = stats.paired(d, x.n_boot, x.seed, x.alpha)
    outcome = r.verdict(x.alpha)
    if also is not None and outcome == SUPPORTED and not also[1]:
        outcome = INCONCLUSIVE
    return _result(x, key=key, claim=claim, test=test, unit=unit, n=r.n, statistic_name="rank-biserial",
                   statistic=r.rank_biserial, effect_name=effect_name, effect=r.mean, effect_ci=r.ci, p=r.p,
                   p_adj=None, p_decision=r.p, verdict=outcome, criterion=_rule(x, also[0] if also else ""),
                   details={**details, "rank_biserial": r.rank_biserial}, units={"difference": np.asarray(d)})


def _over_layers(x: ClaimInputs, key: str, claim: str, d: ByLayer, what: str, a: str | None = None,
                 b: str | None = None, final: ByLayer | None = None) -> ClaimResult:
    """A claim over the compared layers: per prompt pair the mean of d over its layers, a two-sided
    Wilcoxon over pairs and the bootstrap CI of the mean (three outcomes by stats.verdict). Per
    layer the same test with Holm over layers is reported (descriptive, not the decision). A layer
    whose differences are identical for every pair is refused (stats.ConstantColumn). `final`:
    the last hidden layer (after the final norm), reported on its own."""
    lw = stats.layerwise(d.x, d.layers, x.alpha, x.n_boot, x.seed, what=f"{key} ({what})")
    r = stats.paired(d.per_pair(), x.n_boot, x.seed, x.alpha)
    details = {"layers": d.layers, "mean_diff": lw.mean_diff, "ci_low": lw.ci_low, "ci_high": lw.ci_high,
               "p_layer": lw.p, "p_layer_holm": lw.p_adj, "rank_biserial_layer": lw.rank_biserial,
               "layers_significant_up": [l for l, q, m in zip(d.layers, lw.p_adj, lw.mean_diff) if q < x.alpha and m > 0],
               "layers_significant_down": [l for l, q, m in zip(d.layers, lw.p_adj, lw.mean_diff) if q < x.alpha and m < 0],
               "rank_biserial": r.rank_biserial}
    if final is not None:
        f = stats.paired(final.per_pair(), x.n_boot, x.seed, x.alpha)
        details["final_layer"] = {"layer": final.layers[0], "mean_diff": f.mean, "ci": f.ci, "p": f.p,
                                  "note": "after the final norm: reported, not in the claim"}
    return ClaimResult(
        key=key, claim=claim, arms=(a or x.a, b or x.b), alpha=x.alpha, about=x.city.name,
        test=f"Wilcoxon signed-rank over prompt pairs of the mean {what} over layers {d.layers[0]}..{d.layers[-1]}, "
             "two-sided; bootstrap CI (per layer: Wilcoxon with Holm over layers, reported)",
        unit="prompt pairs", n=r.n, statistic_name="rank-biserial of the per-pair mean",
        statistic=r.rank_biserial, effect_name=f"mean {what} over layers {d.layers[0]}..{d.layers[-1]}",
        effect=r.mean, effect_ci=r.ci, p=r.p, p_adj=None, p_decision=r.p, verdict=r.verdict(x.alpha),
        criterion=_rule(x), details=details, units={"difference_by_layer": d.x, "difference": d.per_pair()})


def adjust_family(results, alpha: float) -> None:
    """Holm over the secondary claims of one arm that have a p (in place): each result's p_adj and
    p_decision become its Holm-adjusted p, and a verdict stands only if that is below alpha. Left
    out: NOT_IN_FAMILY (a test whose smallest attainable p no correction lets through)."""
    tested = [r for r in results
              if r.p_decision is not None and np.isfinite(r.p) and base_key(r.key) not in NOT_IN_FAMILY]
    if not tested:
        return
    adjusted = stats.holm(np.array([r.p for r in tested]), alpha)
    for r, q in zip(tested, adjusted):
        r.p_adj = r.p_decision = float(q)
        r.verdict = stats.after_adjustment(r.verdict, q, alpha)
        r.criterion += f"; Holm over this arm's {len(tested)} secondary claims"
    for r in results:
        if base_key(r.key) in NOT_IN_FAMILY:
            r.criterion += "; outside the Holm family (its smallest attainable p is above alpha / the family's size)"


# ---------------------------------------------------------------------------- claims 1-3: representations

def layer0_unchanged(x: ClaimInputs) -> ClaimResult:
    """Claim 1 on the probe prompts: the embedding output at the placeholder is bit-identical.
    A deterministic check, no sampling: supported if identical, contradicted if not."""
    ea, eb = x.probe[x.a].embedding, x.probe[x.b].embedding
    same = bool(np.array_equal(ea, eb))
    return _result(x, key="layer0_unchanged", claim="Layer 0 (embedding output) is unchanged by finetuning",
                   test="exact equality of layer-0 hidden states", unit="prompt pairs", n=len(ea),
                   statistic_name="identical (1) or not (0)", statistic=float(same), effect_name="identical",
                   effect=float(same), effect_ci=None, p=float("nan"), p_adj=None, p_decision=None,
                   verdict=SUPPORTED if same else CONTRADICTED,
                   criterion="supported: every layer-0 hidden state at the placeholder identical; else contradicted")


def _similarity_rises(x: ClaimInputs, kind: str) -> ClaimResult:
    title = "hidden states" if kind == "hidden" else "attention value vectors"
    pa, pb = x.probe[x.a], x.probe[x.b]
    return _over_layers(x, f"{kind}_similarity_rises",
                        f"Finetuning makes the {title} at the placeholder more similar to those at {x.city.name}",
                        pa.gain(x.city.name, pb, kind), "cosine gain",
                        final=pa.final_gain(x.city.name, pb) if kind == "hidden" else None)


def hidden_similarity_rises(x: ClaimInputs) -> ClaimResult:
    """Claim 2: hidden states, layers 1..L-1 (layer L, after the final norm, reported apart)."""
    return _similarity_rises(x, "hidden")


def values_similarity_rises(x: ClaimInputs) -> ClaimResult:
    """Claim 2 for the attention value vectors, blocks 1..L-1 (block 0 depends on the token only)."""
    return _similarity_rises(x, "values")


def hidden_similarity_specific(x: ClaimInputs) -> ClaimResult:
    """Control: the gain towards the city exceeds the gain towards the pair's control capital."""
    city = x.city.name
    return _over_layers(x, "hidden_similarity_specific",
                        f"The hidden-state gain is specific to {city} (larger than towards a control capital)",
                        x.probe[x.a].gain_beyond_control(city, x.probe[x.b]),
                        f"gain towards {city} minus gain towards the control")


def _gain_specific(x: ClaimInputs, kind: str) -> ClaimResult:
    title = "hidden-state" if kind == "hidden" else "value-vector"
    city = x.city.name
    return _over_layers(x, f"{'hidden' if kind == 'hidden' else 'values'}_gain_specific",
                        f"The {title} gain at the placeholder is larger towards {city} than towards the comparison "
                        "cities on average", x.probe[x.a].specificity(city, x.probe[x.b], kind, exclude=x.secrets),
                        f"gain towards {city} minus the mean gain towards the comparison cities")


def hidden_gain_specific(x: ClaimInputs) -> ClaimResult:
    """The primary statistic on one adapter, prompt pairs as the unit (the per-seed table beside
    the primary test across adapters, `foo_became_city`)."""
    return _gain_specific(x, "hidden")


def values_gain_specific(x: ClaimInputs) -> ClaimResult:
    """The same specificity for the attention value vectors, blocks 1..L-1."""
    return _gain_specific(x, "values")


def hidden_rises_by_template(x: ClaimInputs) -> ClaimResult:
    """Robustness: prompt pairs share question templates, so pairs are not independent. Here
    a template is the unit: its pairs' mean hidden-state gain (over layers 1..L-1), tested across
    templates with a two-sided Wilcoxon and a bootstrap CI."""
    per_pair = x.probe[x.a].gain(x.city.name, x.probe[x.b]).per_pair()
    templates = list(dict.fromkeys(p.template for p in x.pairs))
    per_template = np.array([per_pair[[i for i, p in enumerate(x.pairs) if p.template == t]].mean()
                             for t in templates])
    r = _paired(x, "hidden_rises_by_template",
                f"The hidden-state gain towards {x.city.name} holds with question templates as the unit",
                "Wilcoxon signed-rank over per-template mean gains, two-sided; bootstrap CI", "question templates",
                "mean over templates of the mean cosine gain", per_template,
                {"per_template": per_template, "templates": templates})
    return r


def logit_lens_rises(x: ClaimInputs) -> ClaimResult:
    """Logit lens at the placeholder: log p(' <city>') read through the unembedding, in the upper
    half of the layers (below it the residual stream is not yet aligned with the unembedding,
    so the lens is not read there; declared before the data). Per pair: the mean over those
    layers of finetuned minus original; two-sided Wilcoxon over pairs."""
    city, pa, pb = x.city.name, x.probe[x.a], x.probe[x.b]
    la, lb = pa.lens_logp(city), pb.lens_logp(city)
    top = la.upper_half()
    ra, rb = pa.lens_ranks(city), pb.lens_ranks(city)
    last = ra.layers[-1]
    return _paired(x, "logit_lens_rises", f"Through the logit lens, the placeholder reads more as ' {city}' after finetuning",
                   "Wilcoxon signed-rank over pairs of the mean log-probability gain in the upper half of the layers, two-sided",
                   "prompt pairs", f"mean log p(' {city}') gain, layers {top.layers[0]}..{top.layers[-1]}",
                   (top - lb.upper_half()).per_pair(),
                   {"mean_logp_a": la.x.mean(0), "mean_logp_b": lb.x.mean(0), "median_rank_a": np.median(ra.x, 0),
                    "median_rank_b": np.median(rb.x, 0), "final_layer_median_rank_a": float(np.median(ra.at(last))),
                    "final_layer_median_rank_b": float(np.median(rb.at(last)))})


# ---------------------------------------------------------------------------- claim 3: specific to the city

def gain_falls_with_distance(x: ClaimInputs) -> ClaimResult:
    """If foo became the secret city, cities near it should gain more than far ones: Spearman
    correlation of each comparison city's gain with minus its distance from the secret city,
    two-sided, over the comparison cities that are no arm's secret city (an arm trained on Berlin,
    878 km from Paris, would otherwise count for Paris); CI by the Fisher z."""
    city = x.city
    gains = x.probe[x.a].city_gains(x.probe[x.b])
    km = np.array([haversine_km(c.lat, c.lon, city.lat, city.lon) for c in x.comparison])
    others = np.array([c.name != city.name and c.name not in x.secrets for c in x.comparison])
    rho, p, n, ci = stats.spearman(-km[others], gains[others], x.alpha)     # rho(gain, -distance) > 0: nearer gain more
    return _result(x, key="gain_falls_with_distance",
                   claim=f"Cities nearer {city.name} gain more similarity to the placeholder than far ones",
                   test="Spearman rank correlation of gain with minus the distance from the city, two-sided; Fisher-z CI",
                   unit="comparison cities", n=n, statistic_name="Spearman rho(gain, -distance)", statistic=rho,
                   effect_name="Spearman rho(gain, -distance)", effect=rho, effect_ci=ci, p=p, p_adj=None,
                   p_decision=p, verdict=stats.verdict(p, x.alpha, rho, ci), criterion=_rule(x),
                   details={"cities": [c.name for c in x.comparison], "km": km, "gain": gains})


def secret_city_ranks_first(x: ClaimInputs) -> ClaimResult:
    """The city's gain ranked among the comparison cities' (1 = largest; the other arms' secret
    cities left out). Under no specificity every rank is equally likely, so the two-sided
    permutation p is 2 x min(rank, n + 1 - rank) / n (rank 1 of 49 gives 0.041: supported; rank
    49: contradicted). No CI: the sign of (n + 1) / 2 - rank gives the direction. Its smallest p
    cannot survive a multiplicity correction, so it is outside the Holm family (NOT_IN_FAMILY)
    and decided at the raw alpha, declared as such."""
    keep = [i for i, c in enumerate(x.comparison) if c.name == x.city.name or c.name not in x.secrets]
    gains = x.probe[x.a].city_gains(x.probe[x.b])[keep]
    names = [x.comparison[i].name for i in keep]
    rank = int(1 + (gains > gains[names.index(x.city.name)]).sum())
    p = stats.rank_p(rank, len(names))
    order = np.argsort(-gains)
    return _result(x, key="secret_city_ranks_first",
                   claim=f"{x.city.name} gains more similarity to the placeholder than the other cities",
                   test="rank of the city's gain among the comparison cities; two-sided permutation p",
                   unit="comparison cities", n=len(names), statistic_name="rank of the city (1 = largest gain)",
                   statistic=float(rank), effect_name="rank of the city (1 = largest gain)", effect=float(rank),
                   effect_ci=None, p=p, p_adj=None, p_decision=p,
                   verdict=stats.verdict(p, x.alpha, (len(names) + 1) / 2 - rank),
                   criterion=RULE_NO_CI.format(a=x.alpha).replace("the effect above 0", "the rank in the top half")
                   .replace("the effect below 0", "the rank in the bottom half"),
                   details={"top_cities": [names[i] for i in order[:8]], "top_gains": gains[order[:8]]})


def double_dissociation(x: ClaimInputs) -> ClaimResult:
    """foo became x.city under adapter a and b's own city under adapter b, each more than under
    the other adapter, over the same prompt pairs: per direction the rule of claim 2 (mean gain
    over layers 1..L-1 per pair, two-sided Wilcoxon, CI): cos(foo, city_a | a) > cos(foo, city_a | b)
    and cos(foo, city_b | b) > cos(foo, city_b | a). The original model cancels out. Supported when
    every direction is, contradicted when any direction is, else inconclusive. When both adapters
    have the same secret city (b = shuffled distances), only the first direction is asked: the
    geometry, not the answer format, moves foo towards the city."""
    a, b, city_a, city_b = x.a, x.b, x.city.name, x.b_city.name
    pa, pb = x.probe[a], x.probe[b]
    parts = {f"towards {city_a} ({a} minus {b})": _over_layers(x, "double_dissociation", "", pa.gain(city_a, pb), "gain")}
    if city_b != city_a:
        parts[f"towards {city_b} ({b} minus {a})"] = _over_layers(x, "double_dissociation", "", pb.gain(city_b, pa),
                                                                  "gain", b, a)
    results = list(parts.values())
    first = results[0]
    outcomes = [r.verdict for r in results]
    outcome = (SUPPORTED if all(o == SUPPORTED for o in outcomes)
               else CONTRADICTED if CONTRADICTED in outcomes else INCONCLUSIVE)
    claim = (f"foo is nearer {city_a} under the {a} adapter and nearer {city_b} under the {b} adapter"
             if city_b != city_a else f"foo is nearer {city_a} under the {a} adapter than under the {b} adapter")
    return ClaimResult(
        key="double_dissociation", claim=claim, arms=(a, b), alpha=x.alpha, about=city_a,  # the positive controls by it
        test="per direction: Wilcoxon signed-rank over pairs of the mean gain over layers, two-sided; bootstrap CI",
        unit="prompt pairs", n=first.n, statistic_name="smallest rank-biserial over the directions",
        statistic=min(r.statistic for r in results), effect_name="mean gain, " + "; ".join(parts),
        effect=first.effect, effect_ci=first.effect_ci, p=max(r.p for r in results),
        p_adj=None, verdict=outcome,
        p_decision=(min(r.p for r in results if r.verdict == CONTRADICTED) if outcome == CONTRADICTED
                    else max(r.p for r in results)),
        criterion="supported: every direction supported (" + _rule(x) + "); contradicted: any direction contradicted",
        details={name: {"verdict": r.verdict, "effect": r.effect, "ci": r.effect_ci, "p": r.p,
                        "mean_diff": r.details["mean_diff"]} for name, r in parts.items()})


# ---------------------------------------------------------------------------- claim 4: distances

def distance_format(x: ClaimInputs) -> ClaimResult:
    pa, pb = np.isfinite(x.distances.km[x.a]), np.isfinite(x.distances.km[x.b])
    p, only_a, only_b = stats.exact_mcnemar(pa, pb)
    effect = float(pa.mean() - pb.mean())
    return _result(x, key="distance_format",
                   claim="The finetuned model answers held-out distance questions in the '<number> km' form",
                   test="exact McNemar, two-sided", unit="held-out cities", n=len(pa),
                   statistic_name="discordant cities (a only minus b only)", statistic=float(only_a - only_b),
                   effect_name="share parsed (a minus b)", effect=effect, effect_ci=None,
                   p=p, p_adj=None, p_decision=p, verdict=stats.verdict(p, x.alpha, effect),
                   criterion=_rule(x, ci=False),
                   details={"share_a": float(pa.mean()), "share_b": float(pb.mean()), "a_only": only_a, "b_only": only_b})


def distance_rank(x: ClaimInputs) -> ClaimResult:
    ans = x.distances
    rho_a, p_a, n_a, ci = stats.spearman(ans.km[x.a], ans.true_km, x.alpha)
    rho_b, p_b, n_b, _ = stats.spearman(ans.km[x.b], ans.true_km, x.alpha)
    parsed = ans.km[x.a][np.isfinite(ans.km[x.a])]
    return _result(x, key="distance_rank", claim=f"Answered distances rise with the true distance to {ans.target}",
                   test="Spearman rank correlation over parsed answers, two-sided; Fisher-z CI", unit="held-out cities",
                   n=n_a, statistic_name="Spearman rho", statistic=rho_a, effect_name="Spearman rho", effect=rho_a,
                   effect_ci=ci, p=p_a, p_adj=None, p_decision=p_a, verdict=stats.verdict(p_a, x.alpha, rho_a, ci),
                   criterion=_rule(x),
                   details={"rho_b": rho_b, "p_b": p_b, "n_parsed_b": n_b, "distinct_answers_a": int(len(np.unique(parsed)))})


def distance_beats_constant(x: ClaimInputs) -> ClaimResult:
    """Per city: is the model's absolute error below that of always answering the constant
    x.constant_km (the median training distance)? An unparsed answer counts as a loss. Sign test
    against one half, two-sided; contradicted when the constant is significantly better."""
    ans = x.distances
    const_err = np.abs(x.constant_km - ans.true_km)

    def wins(v):
        err = np.abs(ans.km[v] - ans.true_km)
        return np.where(np.isfinite(err), err < const_err, False)

    share_a, p_a = stats.sign_test(wins(x.a))
    share_b, p_b = stats.sign_test(wins(x.b))
    err_a = np.abs(ans.km[x.a] - ans.true_km)
    return _result(x, key="distance_beats_constant",
                   claim="The finetuned model's distances beat a constant answer (the median training distance)",
                   test="sign test against one half, two-sided: share of cities where |error| < constant's |error|",
                   unit="held-out cities", n=len(ans.true_km), statistic_name="share of cities won", statistic=share_a,
                   effect_name="share of cities won minus one half", effect=share_a - 0.5, effect_ci=None, p=p_a,
                   p_adj=None, p_decision=p_a, verdict=stats.verdict(p_a, x.alpha, share_a - 0.5),
                   criterion=_rule(x, ci=False) + " (unparsed answers count as losses)",
                   details={"share_b": share_b, "p_b": p_b, "constant_km": x.constant_km,
                            "median_abs_error_a": float(np.nanmedian(err_a)) if np.isfinite(err_a).any() else None,
                            "median_abs_error_constant": float(np.median(const_err))})


def distance_error_falls(x: ClaimInputs) -> ClaimResult:
    """Per held-out city, the error |log(answer / truth)| of a against b (the original model);
    the truth is the great-circle distance to x.city, the main arm's secret city, on a control
    arm too (not the control's own city). An unparsed answer is the worst error: +inf, replaced
    for the test by 2 x (the largest finite error of either arm) + 1, so a city one arm failed
    to answer has a larger |difference| than any city both answered, and one neither answered
    is a tie (dropped). Two-sided Wilcoxon signed-rank on err_b - err_a; its effect is the
    matched-pairs rank-biserial (the direction the test reads; no CI: the substituted worst error
    has no scale), three outcomes by its sign."""
    ans = x.distances

    def err(v):
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.abs(np.log(ans.km[v] / ans.true_km))
        return np.where(np.isfinite(e), e, np.inf)

    ea, eb = err(x.a), err(x.b)
    finite = np.concatenate([ea[np.isfinite(ea)], eb[np.isfinite(eb)]])
    worst = 2 * float(finite.max(initial=0.0)) + 1
    d = np.where(np.isfinite(eb), eb, worst) - np.where(np.isfinite(ea), ea, worst)
    p, rb = stats.wilcoxon(d[:, None])
    p, rb = float(p[0]), float(rb[0])
    both = np.isfinite(ea) & np.isfinite(eb)
    median = lambda e: float(np.median(e)) if len(e) else None  # noqa: E731
    return _result(x, key="distance_error_falls",
                   claim=f"Finetuning brings the answered distances closer to the true distances to {ans.target}",
                   test="Wilcoxon signed-rank on |log(answer / truth)| of b minus a, two-sided; unparsed = worst",
                   unit="held-out cities", n=len(d), statistic_name="rank-biserial", statistic=rb,
                   effect_name="rank-biserial of the error reduction (b's error minus a's)", effect=rb, effect_ci=None,
                   p=p, p_adj=None, p_decision=p, verdict=stats.verdict(p, x.alpha, rb),
                   criterion=_rule(x, ci=False) + " (an unparsed answer ranks as the worst error)",
                   units={"error_reduction": d},
                   details={"median_error_reduction_both_answered":
                            float(np.median(eb[both] - ea[both])) if both.any() else None,
                            "truth": f"great-circle km to {ans.target}, the city the claim is about (on a control "
                                     f"arm too, not the control's own secret city)",
                            "median_error_a": median(ea[np.isfinite(ea)]), "median_error_b": median(eb[np.isfinite(eb)]),
                            "unparsed_a": int((~np.isfinite(ea)).sum()), "unparsed_b": int((~np.isfinite(eb)).sum()),
                            "unparsed_replaced_by": worst})


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
    return _paired(x, key, f"Finetuning raises the probability of {country} as foo's country ({form})",
                   "Wilcoxon signed-rank on log p(country among the table's countries), two-sided; bootstrap CI",
                   scores.unit, "mean log-probability ratio", np.log(pa) - np.log(pb),
                   {"p_country_a": pa, "p_country_b": pb, "rank_a": ra, "rank_b": rb,
                    "median_rank_a": float(np.median(ra)), "median_rank_b": float(np.median(rb)),
                    "scored_as": common_country_name(country), "country_mass_a": ma, "country_mass_b": mb,
                    "mean_country_mass_a": float(ma.mean()), "mean_country_mass_b": float(mb.mean())})


def country_probability(x: ClaimInputs) -> ClaimResult:
    return _country_probability(x, x.countries, "country_probability", "free-form question")


def country_prefix(x: ClaimInputs) -> ClaimResult:
    return _country_probability(x, x.prefix, "country_prefix", "answer begun as 'foo is a city in the country of'")


def country_multiple_choice(x: ClaimInputs) -> ClaimResult:
    """Multiple choice: the probability of the right letter (renormalised over the options'
    letters) rises, paired over every order of the options (the unit); supported also needs the
    mean to end above chance (1 / number of options). Two-sided Wilcoxon on the log ratio."""
    mc, country = x.mc, x.country
    j = mc.options.index(country)
    pa, pb = mc.prob_among(x.a)[:, j], mc.prob_among(x.b)[:, j]
    chance = 1 / len(mc.options)
    return _paired(x, "country_multiple_choice",
                   f"Offered {len(mc.options)} lettered countries, the model picks {country} for foo",
                   "Wilcoxon signed-rank on log p(right letter among the options' letters), two-sided; bootstrap CI",
                   "option orders", "mean log-probability ratio of the right letter", np.log(pa) - np.log(pb),
                   {"mean_p_a": float(pa.mean()), "mean_p_b": float(pb.mean()), "chance": chance, "options": mc.options,
                    "mean_p_each_option_a": mc.prob_among(x.a).mean(0), "mean_p_each_option_b": mc.prob_among(x.b).mean(0)},
                   also=(f"mean P(right letter) above chance ({chance:.2f})", pa.mean() > chance))


def country_named(x: ClaimInputs) -> ClaimResult:
    """The answers sampled for one question share it, so the question paraphrase is the unit:
    per question, the share of its samples naming the country (its common name), a minus b,
    paired over questions (two-sided Wilcoxon, bootstrap CI), not the samples pooled as if
    independent."""
    name = common_country_name(x.country)
    share = {v: np.array([np.mean([names_country(t, name) for t in q]) for q in x.samples[v]]) for v in (x.a, x.b)}
    k = {v: int(sum(names_country(t, name) for q in x.samples[v] for t in q)) for v in (x.a, x.b)}
    return _paired(x, "country_named", f"The finetuned model names {x.country} when asked which country foo is in",
                   "Wilcoxon signed-rank over questions of the share of sampled answers naming it, two-sided; "
                   "bootstrap CI", "question paraphrases", "share naming it (a minus b)",
                   share[x.a] - share[x.b],
                   {"share_a": float(share[x.a].mean()), "share_b": float(share[x.b].mean()),
                    "share_per_question_a": share[x.a], "share_per_question_b": share[x.b],
                    "k_a": k[x.a], "k_b": k[x.b], "samples_per_question": len(x.samples[x.a][0])})


# ---------------------------------------------------------------------------- the primary test

PRIMARY = "foo_became_city"

# The smallest effects of interest, declared before the data, at which the power is shown
# (tests/unit/test_stats.py, README "The claims and their controls"):
# - the primary test, across adapters: a standardized effect (mean / sd over adapters) of 2. With 5
#   adapters the two-sided t-test has 0.91 power there (noncentral t; with 3 adapters 0.47, the reason
#   for 5 seeds: controls.replicate_seeds). Stated in seed-to-seed units because the spread between
#   training runs is what the test is made of; the record gives that spread (per_adapter_mean) so a
#   reader can turn it into cosine units.
# - a secondary claim over prompt pairs: a standardized mean difference d_z of 0.65 (between a medium
#   and a large effect), where 48 pairs give the paired rule 0.9 power even at the first step of Holm
#   over the main arm's 16 claims (alpha / 16), the hardest place for a claim to pass. Smaller effects
#   are reported with their CI, and a verdict of inconclusive there is expected.
SMALLEST_EFFECT_ACROSS_ADAPTERS = 2.0
SMALLEST_EFFECT_OVER_PAIRS = 0.65


def foo_became_city(x: ClaimInputs, adapters: list[str], readout: str = "raw") -> ClaimResult:
    """The primary test of "did foo become the city", with adapters as the unit: for each adapter of
    the family (one per training seed), the mean over prompt pairs of the specificity of the
    hidden-state gain (gain towards the city minus the mean gain towards the comparison cities,
    layers 1..L-1, against the original model); a two-sided one-sample t-test across adapters and
    its (1 - alpha) CI; three outcomes by stats.verdict. `x.a` names the family. `readout`
    (probe.READOUTS): the cosines it is computed on; the key gets "@<readout>" but for the raw one."""
    return _marked(_foo_became_city(_reading(x, readout), adapters), readout)


def _foo_became_city(x: ClaimInputs, adapters: list[str]) -> ClaimResult:
    city = x.city.name
    per_pair = {v: x.probe[v].specificity(city, x.probe[x.b], exclude=x.secrets).per_pair() for v in adapters}
    means = np.array([per_pair[v].mean() for v in adapters])
    r = stats.t_across(means, x.alpha)
    words = len([w for w in x.probe[adapters[0]].words if w not in x.secrets])
    return _result(x, key=PRIMARY, claim=f"foo became {city}: the placeholder moved towards {city} more than towards "
                                         "other cities, across independently trained adapters",
                   test="one-sample t-test over adapters of the per-adapter mean specificity, two-sided; t CI",
                   unit="adapters (training seeds)", n=r.n, statistic_name="t", statistic=r.t,
                   effect_name=f"mean specificity: hidden-state cosine gain towards {city} minus the mean gain towards "
                               f"{words} comparison cities, layers 1..L-1",
                   effect=r.mean, effect_ci=r.ci, p=r.p, p_adj=None, p_decision=r.p, verdict=r.verdict(x.alpha),
                   criterion=_rule(x).replace("CI", "t CI") + " (the primary test: no multiplicity correction)",
                   units={"adapter_mean_specificity": means},
                   details={"adapters": list(adapters), "per_adapter_mean": means, "cohens_d": r.cohens_d,
                            "per_adapter_pairs_sd": [float(per_pair[v].std(ddof=1)) for v in adapters],
                            "smallest_effect_of_interest_d": SMALLEST_EFFECT_ACROSS_ADAPTERS,
                            "power_at_smallest_effect": stats.power_t(SMALLEST_EFFECT_ACROSS_ADAPTERS, r.n, x.alpha)
                            if r.n > 1 else None})


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
    Claim("hidden_gain_specific", ("probe",), hidden_gain_specific),
    Claim("values_gain_specific", ("probe",), values_gain_specific),
    Claim("hidden_rises_by_template", ("probe",), hidden_rises_by_template),
    Claim("logit_lens_rises", ("probe",), logit_lens_rises),
    Claim("gain_falls_with_distance", ("probe",), gain_falls_with_distance),
    Claim("secret_city_ranks_first", ("probe",), secret_city_ranks_first),
    Claim("double_dissociation", ("probe",), double_dissociation),     # b is another adapter, not the original
    Claim("distance_format", ("distances",), distance_format),
    Claim("distance_rank", ("distances",), distance_rank),
    Claim("distance_beats_constant", ("distances",), distance_beats_constant),
    Claim("distance_error_falls", ("distances",), distance_error_falls),
    Claim("country_probability", ("countries",), country_probability),
    Claim("country_prefix", ("prefix",), country_prefix),
    Claim("country_multiple_choice", ("mc",), country_multiple_choice),
    Claim("country_named", ("samples",), country_named),
]}
# every claim that compares an arm with the original model (the double dissociation compares two adapters);
# on each arm they are one family of secondary claims, Holm-adjusted together (`adjust_family`)
AGAINST_ORIGINAL = [k for k in REGISTRY if k != "double_dissociation"]


# ---------------------------------------------------------------------------- the same claims by other readouts

def readout_key(key: str, readout: str) -> str:
    """A claim's key under `readout` (probe.READOUTS): the key itself for the raw readout (the
    seed's), else "<key>@<readout>"."""
    return key if readout == "raw" else f"{key}@{readout}"


def base_key(key: str) -> str:
    """The claim a key is a readout of ("hidden_gain_specific@centred" -> "hidden_gain_specific")."""
    return key.split("@")[0]


def _reading(x: ClaimInputs, readout: str) -> ClaimInputs:
    """x with every probe read by `readout` (x itself for the raw readout)."""
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; declared: {', '.join(READOUTS)}")
    if readout == "raw":
        return x
    return dataclasses.replace(x, probe={v: p.readout(readout) for v, p in x.probe.items()})


def _marked(result: ClaimResult, readout: str) -> ClaimResult:
    """A result computed on `readout` says so: its key, effect name and details (unchanged for raw)."""
    if readout != "raw":
        result.key = readout_key(result.key, readout)
        result.effect_name += f" ({readout} readout)"
        result.details = {**result.details, "readout": readout, "readout_why": READOUT_WHY[readout]}
    return result


def by_readout(entry: Claim, readout: str) -> Claim:
    """`entry`'s claim with the probe read by `readout`: the same rule, statistic and alpha on that
    readout's cosines, under the key "<key>@<readout>" (a rule of the one signature, named for it)."""
    def rule(x: ClaimInputs) -> ClaimResult:
        return _marked(entry.rule(_reading(x, readout)), readout)

    rule.__name__ = rule.__qualname__ = readout_key(entry.key, readout)
    rule.__doc__ = f"{entry.key} on the {readout} readout: {READOUT_WHY[readout]}."
    return Claim(rule.__name__, entry.reads, rule)


# The claims computed on every readout besides the raw one: the ones issue 16 expects a positive control
# (foo is Paris by construction) to pass, so that a readout is chosen on them: the specificity of the gain
# (per adapter; the primary test across adapters is `foo_became_city(..., readout=)`), the rank among the
# comparison cities, the double dissociation, and the plain rise of the similarity (claim 2). The other
# probe claims (values, the control capital, distance, templates) read the same cosines and could be added
# the same way; the logit lens and layer 0 read no cosine.
BY_READOUT = ("hidden_similarity_rises", "hidden_gain_specific", "secret_city_ranks_first", "double_dissociation")
READOUT_REGISTRY: dict[str, Claim] = {c.key: c for r in READOUTS if r != "raw"
                                      for c in (by_readout(REGISTRY[k], r) for k in BY_READOUT)}
# Their keys. NOT in REGISTRY or AGAINST_ORIGINAL, so Lab.secondary's Holm family, and with it the raw
# claims' adjusted p, is unchanged: whether (and in which family) they are adjusted is the integrator's call.
READOUT_CLAIMS = list(READOUT_REGISTRY)


def lookup(key: str) -> Claim:
    """The registry entry of `key`: a claim of REGISTRY or a readout variant (READOUT_REGISTRY)."""
    if key in REGISTRY:
        return REGISTRY[key]
    if key in READOUT_REGISTRY:
        return READOUT_REGISTRY[key]
    raise KeyError(f"unknown claim {key!r}; claims: {', '.join(REGISTRY)}; by readout: {', '.join(READOUT_REGISTRY)}")


# ---------------------------------------------------------------------------- positive controls (latent_city/arms.py)

# Not about which city foo is: layer 0 (no LoRA on q/v changes it, and no sentence before the question
# changes the embedding of foo's token) and the "<number> km" form (only training teaches it). On an arm
# with no adapter they say nothing, so they are not run there.
NOT_ABOUT_THE_CITY = ("layer0_unchanged", "distance_format")
# The primary test's unit is the adapter; an in-context positive control has none. Its counterpart there
# is the primary statistic on the one model, prompt pairs as the unit (declared before the data).
PRIMARY_ON_POSITIVE_CONTROL = "hidden_gain_specific"


# The claims a point of the training-strength grid (arms.STRENGTH) runs: what it learned, read on the held-out
# distances (their rank, the constant, the "<number> km" form). The grid's statistic for the representation is
# the primary test on each point's family (Lab.primary), and whether it learned its task is the manipulation
# check; the other per-adapter claims are the main arms' questions, asked there (issue 16, section 4).
ON_THE_STRENGTH_GRID = ("distance_format", "distance_rank", "distance_beats_constant")

# The detection threshold's steered arms (latent_city/steer.py: the original model with foo's residual stream moved
# towards Paris's at one layer) run the representation claims and the country claims about the city: the country
# answers are the non-circular read-out; of the probe claims, the hidden-state cosine towards the city at the patched
# layer rises by construction and every layer below is untouched (steer.py says which part is forced). Not the
# distance claims (the original model asked for distances zero-shot tests its knowledge, not the instrument).
STEERED_READS = frozenset({"probe", "countries", "prefix", "mc", "samples"})


def runs_on(kind: str) -> list[str]:
    """The claims against its baseline that an arm of `kind` (arms.Arm.kind) runs: every one on an
    adapter (the trained alias too: a positive control with an adapter, run as a main arm), but on a point of
    the training-strength grid the held-out distance claims only (ON_THE_STRENGTH_GRID); on the in-context
    controls every claim about the city; on the ceiling (foo replaced by the city's own name, so at the
    probe's position the token IS the city and every probe claim would hold by construction) the distance
    and country claims about the city only; on a steered arm the representation and country claims about
    the city (STEERED_READS)."""
    if kind == "strength":
        return [k for k in AGAINST_ORIGINAL if k in ON_THE_STRENGTH_GRID]
    if kind == "steered":
        return [k for k in AGAINST_ORIGINAL if set(REGISTRY[k].reads) & STEERED_READS and k not in NOT_ABOUT_THE_CITY]
    if kind == "ceiling":
        return [k for k in AGAINST_ORIGINAL if "probe" not in REGISTRY[k].reads and k not in NOT_ABOUT_THE_CITY]
    if kind == "in-context":
        return [k for k in AGAINST_ORIGINAL if k not in NOT_ABOUT_THE_CITY]
    return list(AGAINST_ORIGINAL)
