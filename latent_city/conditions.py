"""When a verdict cannot speak: the manipulation check and the positive controls (issue 16).

A claim's rule gives supported, contradicted or inconclusive from its own numbers. Two conditions,
declared before the data, decide whether those numbers can answer the question at all; where one
fails, the verdict becomes *inconclusive* and the result says why (`ClaimResult.conditions`), while
the rule's own verdict stays beside it (`ClaimResult.measured_verdict`) with every number:

1. The manipulation check (claims.task_learned): an arm that did not learn its training task (it
   answers its own training question for its own training capitals no better than a constant)
   gives no evidence either way about what that training did to foo. Applies to every
   representation claim (those that read the probe, the primary test included) and every country
   claim on a trained arm; a claim comparing two adapters needs both to have learned; the primary
   test needs every adapter of its family to have learned. Not to the distance claims: the held-out
   distances are themselves a read-out of what was learned, and not to the claims that do not depend
   on the secret city (tests/claims/expectations.py NOT_ABOUT_THE_CITY).
2. The positive controls (arms where foo is Paris by construction): if a positive control that runs a
   representation or country claim does not support it, the instrument is blind to that question on this
   model, and a trained arm's verdict on it is inconclusive. Which positive controls answer for a claim:
   the ones with no adapter (the in-context alias, the ceiling: `positive_results`) for every arm, and
   the trained alias of the claim's city (an adapter trained on answers that name the city, "1088.45 km
   from foo, which is Paris": arms.TRAINED_ALIAS) of the arm's own recipe (Arm.recipe: the tier's, or
   controls.learned's) where that recipe has one (`trained_alias_results`); a point of the
   training-strength grid has none, so only the ones with no adapter answer for it. Not the distance
   claims: a positive control asks the original model for distances zero-shot, which tests the base
   model's knowledge, not the instrument (the ceiling's distance claims are reported). A positive
   control that passes is necessary, not sufficient: in the in-context alias the sentence names the
   city, so in the prompt with the city in the compared slot that token is repeated (and foo is repeated
   in both the alias and the neutral prompts): repetition features can raise the cosine of foo with the
   city without any aliasing (README, "Readouts"). Which claim answers on a positive control with no
   adapter is `positive_counterpart`: the same claim (against its own baseline), except the primary
   test, whose counterpart on an arm without adapters is its per-pair statistic `hidden_gain_specific`
   (same readout), and the double dissociation, whose counterpart is the alias arms' own dissociation
   (alias-paris against alias-tokyo). On the trained alias: the same claim on the trained alias of the
   same recipe and seed (against the original model), the primary test on the trained-alias family of
   that recipe (same readout), and for the double dissociation the trained aliases' own of that recipe
   and seed (trained-alias-paris-s43 against trained-alias-tokyo-s43). The ceiling runs the distance and
   country claims only (on it the probe is true by construction).

The order (declared): the manipulation check first; the positive controls are consulted only when every
adapter the claim compares learned its task. An arm that did not learn is inconclusive already, whatever a
positive control would say; not consulting them also keeps a run from training trained aliases that could
decide nothing (on the CPU tier the seed's recipe fails its manipulation check, so CI never trains them).

A trained arm's verdict is never changed by these conditions in the direction of an effect: they only
turn supported or contradicted into inconclusive, and they add their reason to an inconclusive one.
They apply only where the hypothesis predicts the claim holds (a main, learning-rate or training-strength
arm, a pair with one, a claim about an arm's own city): a negative control's verdict about the main city
is kept as the rule gave it, since there a supported verdict is evidence against the hypothesis. A
trained alias's own verdicts are positive-control results: no positive control gates them (that would be
circular); like a negative control's, they are kept as the rule gave them, the manipulation check noted
in their details.
"""

from __future__ import annotations

import copy

from .arms import IN_CONTEXT, MAIN, NEUTRAL, ORIGINAL, STEERED, STRENGTH, TRAINED_ALIAS, label
from .claim_result import ClaimResult
from . import claims
from .claims import NOT_ABOUT_THE_CITY       # the claims that do not depend on the secret city
from .stats import INCONCLUSIVE, SUPPORTED
REPRESENTATION_READS = frozenset({"probe"})
COUNTRY_READS = frozenset({"countries", "prefix", "mc", "samples"})


def base_key(key: str) -> str:
    """A claim's key without its readout ('hidden_gain_specific@centred' -> 'hidden_gain_specific') or
    its own-city suffix ('foo_became_city_own' -> 'foo_became_city')."""
    return claims.base_key(key).removesuffix("_own")


def kind_of(key: str) -> str | None:
    """'representation', 'country' or 'distance' (what the claim reads), None for a claim that does not
    depend on the secret city or is not a claim of claims.REGISTRY / the primary test."""
    PRIMARY, REGISTRY = claims.PRIMARY, claims.REGISTRY
    k = base_key(key)
    if k in NOT_ABOUT_THE_CITY:
        return None
    if k == PRIMARY:
        return "representation"
    if k not in REGISTRY:
        return None
    reads = set(REGISTRY[k].reads)
    if reads & REPRESENTATION_READS:
        return "representation"
    if reads & COUNTRY_READS:
        return "country"
    if "distances" in reads:
        return "distance"
    return None


def needs_learning(key: str) -> bool:
    """Whether the manipulation check conditions this claim (representation and country claims)."""
    return kind_of(key) in ("representation", "country")


def positive_counterpart(key: str) -> str:
    """The claim a positive control must support for `key` to be readable on a trained arm."""
    readout = key.split("@", 1)[1] if "@" in key else None
    k = base_key(key)
    k = claims.PRIMARY_ON_POSITIVE_CONTROL if k == claims.PRIMARY else k
    return f"{k}@{readout}" if readout else k


def _numbers(r: ClaimResult) -> str:
    ci = f" [{r.effect_ci[0]:.3g}, {r.effect_ci[1]:.3g}]" if r.effect_ci else ""
    p = f", p={r.p_decision:.3g}" if r.p_decision is not None else ""
    return f"{r.effect_name} {r.effect:.3g}{ci}{p}"


def not_learned(arm: str, check: ClaimResult) -> str | None:
    """The reason an arm's claims are inconclusive by the manipulation check, None if it learned."""
    return not_learned_any({arm: check})


def not_learned_any(checks: dict[str, ClaimResult]) -> str | None:
    """One reason for the adapters ({arm: its manipulation check}) that did not learn their task, None if
    every one learned."""
    failed = {a: c for a, c in checks.items() if c.verdict != SUPPORTED}
    if not failed:
        return None

    def numbers(a, c):
        rho, share = c.details.get("rho"), c.details.get("share_beats_constant")
        return (f"{a}: {c.verdict}, Spearman rho {'undefined' if rho is None else f'{rho:.3g}'} with its own training "
                f"distances" + (f", beats the constant on {share:.0%}" if share is not None else ""))

    n = next(iter(failed.values())).n
    of = f"{len(failed)} of {len(checks)} adapters failed the manipulation check" if len(checks) > 1 else "manipulation check"
    return f"the finetune did not learn its task ({of}, {n} training capitals: " + "; ".join(
        numbers(a, c) for a, c in failed.items()) + ")"


def positive_control_failed(results: dict[str, ClaimResult]) -> str | None:
    """The reason a claim is inconclusive by its positive controls ({positive control label: its result of
    the counterpart claim}), None if every one supports it."""
    failed = {name: r for name, r in results.items() if r.verdict != SUPPORTED}
    if not failed:
        return None
    return "the positive control failed (" + "; ".join(f"{name}: {r.key} {r.verdict}, {_numbers(r)}"
                                                      for name, r in failed.items()) + ")"


def apply(result: ClaimResult, reasons: list[str | None]) -> ClaimResult:
    """Turn `result` inconclusive for each failed condition in `reasons` (None = the condition holds), in
    place; the rule's own verdict is kept in `measured_verdict`. Returns `result`."""
    reasons = [r for r in reasons if r]
    if result.measured_verdict is None:
        result.measured_verdict = result.verdict
    if reasons:
        result.conditions = list(dict.fromkeys([*result.conditions, *reasons]))
        result.verdict = INCONCLUSIVE
        result.criterion += "; inconclusive when a declared condition fails (latent_city/conditions.py)"
    return result


# ---------------------------------------------------------------------------- applied by the lab

def positive_controls_of(tier_arms: dict, city: str) -> list[str]:
    """The arms where foo is `city` by construction (an in-context alias naming it, the ceiling asked
    with it): no adapter, not the neutral baseline, and not a steered arm (the detection threshold's: a known
    dose, reported, gating no verdict). The trained alias, a positive control with an adapter: `trained_aliases`."""
    return [n for n, a in tier_arms.items() if not a.trained and n != NEUTRAL and a.kind != STEERED and a.secret[0] == city]


def positive_results(lab, key: str, city: str) -> dict[str, ClaimResult]:
    """{label: result} of the counterpart of claim `key` about `city` on each positive control of `city`
    that runs it (against its baseline; the double dissociation: each pair of alias arms, `city`'s first): the
    positive controls with no adapter, the same for every arm (the trained alias: `trained_alias_results`)."""
    counterpart = positive_counterpart(key)
    own = city != lab.target(MAIN)[0].name        # a claim about a control's own city (alias-tokyo about Tokyo)
    memo = lab.__dict__.setdefault("_positive_memo", {})
    if (counterpart, city) in memo:
        return memo[(counterpart, city)]
    out = {}
    if base_key(key) == "double_dissociation":
        alias = {a.secret[0]: n for n, a in lab.arms.items() if n in positive_controls_of(lab.arms, a.secret[0])
                 and a.kind == IN_CONTEXT}
        if city in alias:
            for other, partner in alias.items():
                if other != city:
                    out[label(alias[city], partner)] = lab.claim(counterpart, alias[city], against=partner, own=own)
    else:
        for pc in positive_controls_of(lab.arms, city):
            known = counterpart in claims.REGISTRY or counterpart in claims.READOUT_REGISTRY
            if known and base_key(counterpart) in claims.runs_on(lab.arms[pc].kind):
                out[label(pc, lab.baseline(pc))] = lab.claim(counterpart, pc, own=own)
    memo[(counterpart, city)] = out
    return out


def trained_aliases(tier_arms: dict, city: str, recipe: str, seed: int | None = None) -> list[str]:
    """The trained aliases of `city` (arms.TRAINED_ALIAS: adapters taught that foo is `city`) trained with
    `recipe` (Arm.recipe; "" the tier's) and, where given, `seed`, in the tier's order."""
    return [n for n, a in tier_arms.items() if a.kind == TRAINED_ALIAS and a.secret[0] == city
            and a.recipe == recipe and (seed is None or a.seed == seed)]


def trained_alias_results(lab, key: str, city: str, adapters: list[str]) -> dict[str, ClaimResult]:
    """{label: result} of the counterpart of claim `key` about `city` on the trained alias of `city` of the recipe
    of `adapters` (the first one's; empty where that recipe has none: a training-strength point):
    - the primary test (`adapters` a family): the primary test on the trained-alias family of that recipe, on
      the same readout (Lab.primary);
    - the double dissociation (a pair): the trained alias of `city` of the first adapter's recipe and seed
      against each trained alias of another city of that recipe and seed;
    - any other claim (one adapter): the same claim on the trained alias of its recipe and seed, against the
      original model."""
    first = lab.arms[adapters[0]]
    k, readout = base_key(key), (key.split("@", 1)[1] if "@" in key else "raw")
    seed = None if k == claims.PRIMARY else first.seed
    memo = lab.__dict__.setdefault("_positive_memo", {})
    at = (TRAINED_ALIAS, key, city, first.recipe, seed)
    if at in memo:
        return memo[at]
    own = city != lab.target(MAIN)[0].name
    names, out = trained_aliases(lab.arms, city, first.recipe, seed), {}
    if names and k == claims.PRIMARY:
        family = lab.arms[names[0]].family
        out[family] = lab.primary(family, own=own, readout=readout)
    elif names and k == "double_dissociation":
        for partner in (n for n, a in lab.arms.items() if a.kind == TRAINED_ALIAS and a.secret[0] != city
                        and (a.recipe, a.seed) == (first.recipe, first.seed)):
            out[label(names[0], partner)] = lab.claim(key, names[0], against=partner, own=own)
    elif names:
        out[names[0]] = lab.claim(key, names[0], against=ORIGINAL, own=own)
    memo[at] = out
    return out


EXPECTED_KINDS = ("main", "learning-rate", STRENGTH)   # arms on which the hypothesis predicts a claim about the city holds


def judge(lab, result: ClaimResult, key: str, adapters: list[str], city: str) -> ClaimResult:
    """The declared conditions applied to `result`, a claim `key` about `city` on the trained `adapters` (the
    arms it compares that have one, or a family's for the primary test): a copy, inconclusive where the
    manipulation check of an adapter (representation and country claims) or a positive control of `city`
    (the same) fails. The manipulation check first: where an adapter did not learn its task the claim is
    inconclusive already, and the positive controls are not consulted (nothing is measured or trained for
    them). The positive controls: those with no adapter, and the trained alias of `city` of the adapters'
    recipe (`trained_alias_results`). Only where the hypothesis predicts the claim holds: a comparison
    involving a main, learning-rate or training-strength arm, or a claim about an arm's own city. On a
    negative control's claim about the main city (tokyo, shuffled about Paris) a supported verdict is evidence
    against the hypothesis whatever the arm learned, so it is kept; the manipulation check is noted in its
    details. A trained alias's own result (every adapter compared a trained alias) is a positive-control
    result: kept as the rule gave it, its manipulation check noted in its details (gating it by positive
    controls would be circular). A result on no adapter (a positive control itself) is left as the rule gave it."""
    if not adapters:
        return result
    result = copy.copy(result)          # the lab's cached result stays the rule's own
    result.details = dict(result.details)
    if kind_of(key) is None:
        return apply(result, [])
    learned = None
    if needs_learning(key):
        memo = lab.__dict__.setdefault("_manipulation_memo", {})
        for a in adapters:
            if a not in memo:
                memo[a] = lab.manipulation(a)
        learned = not_learned_any({a: memo[a] for a in adapters})
    kinds = {lab.arms[a].kind for a in adapters}
    if kinds == {TRAINED_ALIAS}:
        if learned:
            result.details["manipulation_check"] = learned + "; a positive control's own verdict is kept as the rule gave it"
        return apply(result, [])
    own_city = city != lab.target(adapters[0])[0].name
    if not own_city and not kinds & set(EXPECTED_KINDS):
        if learned:
            result.details["manipulation_check"] = learned + "; a control's verdict is kept as the rule gave it"
        return apply(result, [])
    if learned:
        return apply(result, [learned])      # inconclusive already: the positive controls are not consulted
    if kind_of(key) not in ("representation", "country"):     # a distance claim: no positive control answers for it
        return apply(result, [])
    return apply(result, [positive_control_failed({**positive_results(lab, key, city),
                                                   **trained_alias_results(lab, key, city, adapters)})])
