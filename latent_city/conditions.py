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
2. The positive controls (arms where foo is Paris by construction: the in-context alias, the
   ceiling): if a positive control that runs a representation or country claim does not support it,
   the instrument is blind to that question on this model, and a trained arm's verdict on it is
   inconclusive. Not the distance claims: a positive control asks the original model for distances
   zero-shot, which tests the base model's knowledge, not the instrument (the ceiling's distance
   claims are reported). A positive control that passes is necessary, not sufficient: in the
   in-context alias the sentence names the city, so in the prompt with the city in the compared slot
   that token is repeated (and foo is repeated in both the alias and the neutral prompts): repetition
   features can raise the cosine of foo with the city without any aliasing (README, "Readouts"). Which positive
   control answers for which claim is `positive_counterpart`: the same claim on the positive control
   (against its own baseline), except the primary test, whose counterpart on an arm without adapters
   is its per-pair statistic `hidden_gain_specific` (same readout), and the double dissociation, whose
   counterpart is the alias arms' own dissociation (alias-paris against alias-tokyo). The ceiling runs
   the distance and country claims only (on it the probe is true by construction).

A trained arm's verdict is never changed by these conditions in the direction of an effect: they only
turn supported or contradicted into inconclusive, and they add their reason to an inconclusive one.
They apply only where the hypothesis predicts the claim holds (a main or learning-rate arm, a pair
with one, a claim about an arm's own city): a negative control's verdict about the main city is kept
as the rule gave it, since there a supported verdict is evidence against the hypothesis.
"""

from __future__ import annotations

import copy

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
    with it): no adapter, and not the neutral baseline."""
    from .arms import NEUTRAL

    from .arms import STEERED     # the detection threshold's arms: a known dose, reported, gating no verdict

    return [n for n, a in tier_arms.items() if not a.trained and n != NEUTRAL and a.kind != STEERED and a.secret[0] == city]


def positive_results(lab, key: str, city: str) -> dict[str, ClaimResult]:
    """{label: result} of the counterpart of claim `key` about `city` on each positive control of `city`
    that runs it (against its baseline; the double dissociation: each pair of alias arms, `city`'s first)."""
    from .arms import IN_CONTEXT, MAIN, label

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


EXPECTED_KINDS = ("main", "learning-rate")      # arms on which the hypothesis predicts a claim about the city holds


def judge(lab, result: ClaimResult, key: str, adapters: list[str], city: str) -> ClaimResult:
    """The declared conditions applied to `result`, a claim `key` about `city` on the trained `adapters` (the
    arms it compares that have one, or a family's for the primary test): a copy, inconclusive where the
    manipulation check of an adapter (representation and country claims) or a positive control of `city`
    (the same) fails. Only where the hypothesis predicts the claim holds: a comparison involving a main or
    learning-rate arm, or a claim about an arm's own city. On a negative control's claim about the main city
    (tokyo, shuffled about Paris) a supported verdict is evidence against the hypothesis whatever the arm
    learned, so it is kept; the manipulation check is noted in its details. A result on no adapter (a
    positive control itself) is left as the rule gave it."""
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
    own_city = city != lab.target(adapters[0])[0].name
    if not own_city and not any(lab.arms[a].kind in EXPECTED_KINDS for a in adapters):
        if learned:
            result.details["manipulation_check"] = learned + "; a control's verdict is kept as the rule gave it"
        return apply(result, [])
    reasons = [learned]
    if kind_of(key) in ("representation", "country"):
        reasons.append(positive_control_failed(positive_results(lab, key, city)))
    return apply(result, reasons)
