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
   ceiling): if a positive control that runs a claim does not support it, the instrument is blind to
   that question on this model, and a trained arm's verdict on it is inconclusive. Which positive
   control answers for which claim is `positive_counterpart`: the same claim on the positive control
   (against its own baseline), except the primary test, whose counterpart on an arm without adapters
   is its per-pair statistic `hidden_gain_specific` (same readout), and the double dissociation, whose
   counterpart is the alias arms' own dissociation (alias-paris against alias-tokyo). The ceiling runs
   the distance and country claims only (on it the probe is true by construction).

A trained arm's verdict is never changed by these conditions in the direction of an effect: they only
turn supported or contradicted into inconclusive, and they add their reason to an inconclusive one.
"""

from __future__ import annotations

from .claim_result import ClaimResult
from .stats import INCONCLUSIVE, SUPPORTED

NOT_ABOUT_THE_CITY = frozenset({"layer0_unchanged", "distance_format"})
REPRESENTATION_READS = frozenset({"probe"})
COUNTRY_READS = frozenset({"countries", "prefix", "mc", "samples"})


def base_key(key: str) -> str:
    """A claim's key without its readout ('hidden_gain_specific@centred' -> 'hidden_gain_specific') or
    its own-city suffix ('foo_became_city_own' -> 'foo_became_city')."""
    key = key.split("@")[0]
    return key[:-len("_own")] if key.endswith("_own") else key


def kind_of(key: str) -> str | None:
    """'representation', 'country' or 'distance' (what the claim reads), None for a claim that does not
    depend on the secret city or is not a claim of claims.REGISTRY / the primary test."""
    from .claims import PRIMARY, REGISTRY

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
    from .claims import PRIMARY

    readout = key.split("@", 1)[1] if "@" in key else None
    k = base_key(key)
    k = "hidden_gain_specific" if k == PRIMARY else k
    return f"{k}@{readout}" if readout else k


def _numbers(r: ClaimResult) -> str:
    ci = f" [{r.effect_ci[0]:.3g}, {r.effect_ci[1]:.3g}]" if r.effect_ci else ""
    p = f", p={r.p_decision:.3g}" if r.p_decision is not None else ""
    return f"{r.effect_name} {r.effect:.3g}{ci}{p}"


def not_learned(arm: str, check: ClaimResult) -> str | None:
    """The reason an arm's claims are inconclusive by the manipulation check, None if it learned."""
    if check.verdict == SUPPORTED:
        return None
    d = check.details
    rho = d.get("rho")
    share = d.get("share_beats_constant")
    beats = f", beats the constant on {share:.0%} of them" if share is not None else ""
    rho = f"{rho:.3g}" if rho is not None else "undefined"
    return (f"the finetune did not learn its task ({arm}: manipulation check {check.verdict}: Spearman rho "
            f"{rho} with its own training distances over {check.n} training capitals{beats})")


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
