"""The manipulation check (issue 16, section 3): did an arm learn its own training task?

Each arm (and the original model, the reference) is asked its own training question, word for
word and in the training's chat format (answers.task_questions), about eval.n_task_capitals of
the capitals every arm trains on (data.task_capitals), greedy. The truth is the arm's own
training targets: the completion of its training example for that capital (`task_targets`), so
for the shuffled control its permuted distance (its task is to reproduce what it was trained on).
lab.Lab.manipulation(arm) measures and calls `task_learned`.

The rule, declared before any answer was looked at. "Learned its task" iff both:
1. The answers order the capitals as the targets do: Spearman rho between the parsed answers and
   the targets, two-sided, supported (p < alpha and the Fisher-z (1 - alpha) CI above 0).
   Unparsed answers are dropped from the rho (its n is the number parsed, reported): an answer
   without a number has no place in an order, and put at either end it would add agreement or
   disagreement according to where its capital's target lies, not to what the model knows. What
   an unparsed answer costs is counted in (2), which a learned arm must pass too.
2. The answers beat the best constant: per capital, is |log(answer / target)| below
   |log(constant / target)|, the constant being the median of the arm's training targets
   (Lab.training_median_km: the one number that minimises the summed |log| error over the
   training set without reading the city)? An unparsed answer, and a tie (an answer exactly as
   far off as the constant), is a loss. A two-sided sign test of the share of wins against one
   half (stats.sign_test), supported when the share is above 1/2 and p < alpha.
Why: a model that learned to map a capital to its distance must order the capitals (1) and beat
the number that minimises the error without reading the city (2); a model that learned the
answer's format and one number passes neither (issue 16: the tier's recipe answers one number).
Outcome: supported iff (1) and (2) are both supported, contradicted iff both are contradicted (the
answers run against the targets and lose to the constant), else inconclusive. Both tests must
reject, an intersection-union test, so the decision p is the larger of the two and no multiplicity
correction applies. It is a check at the raw alpha, in no arm's Holm family (not in
claims.REGISTRY): it decides whether an arm's other claims can be read, it is not one of them.
Reported, not in the decision: |log(answer / target)| against the original model's (two-sided
Wilcoxon over capitals, an unparsed answer the worst error as in claims.distance_error_falls), and
the same rho and share for the original model.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy import stats as sps

from . import stats
from .answers import parse_km, task_questions
from .claim_result import ClaimResult
from .claims import Claim, ClaimInputs
from .config import ExperimentConfig
from .data import City, training_examples
from .stats import INCONCLUSIVE

KEY = "task_learned"
UNIT = "training capitals"


def task_targets(cfg: ExperimentConfig, cities: list[City]) -> np.ndarray:
    """The arm's own training target for each city: the completion of the training example whose
    prompt is the arm's training question about it, parsed (the shuffled control: its permuted
    distance). A city the arm did not train on is refused."""
    examples = training_examples(cfg.data, seed=cfg.seeds.data)
    by_prompt = {e["prompt"]: parse_km(e["completion"]) for e in examples}
    if len(by_prompt) != len(examples):
        raise ValueError("two training examples share a prompt: the target of a question would be ambiguous")
    missing = [q for q in task_questions(cfg, cities) if q not in by_prompt]
    if missing:
        raise ValueError(f"{len(missing)} of the check's questions are not in the arm's training set, e.g. {missing[0]!r}")
    return np.array([by_prompt[q] for q in task_questions(cfg, cities)], float)


def log_errors(km: np.ndarray, target: np.ndarray) -> np.ndarray:
    """|log(answer / target)| per capital; +inf where the answer is unparsed (NaN) or not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.abs(np.log(np.asarray(km, float) / target))
    return np.where(np.isfinite(e), e, np.inf)


def beats_constant(km: np.ndarray, target: np.ndarray, constant_km: float) -> np.ndarray:
    """Per capital: is the answer's |log| error strictly below the constant's (unparsed: False)?"""
    return log_errors(km, target) < log_errors(np.full(len(target), constant_km), target)


def _median(e: np.ndarray) -> float | None:
    e = e[np.isfinite(e)]
    return float(np.median(e)) if len(e) else None


def _describe(km: np.ndarray, target: np.ndarray, constant_km: float, alpha: float) -> dict:
    """The rule's two tests and the answers' spread, for one variant (the arm or the original)."""
    rho, p_rho, n_parsed, ci = stats.spearman(km, target, alpha)
    wins = beats_constant(km, target, constant_km)
    share, p_sign = stats.sign_test(wins)
    parsed = km[np.isfinite(km)]
    common = Counter(parsed.tolist()).most_common(1)
    return {"rho": rho, "rho_p": p_rho, "rho_ci": ci, "rho_verdict": stats.verdict(p_rho, alpha, rho, ci),
            "share_beats_constant": share, "sign_p": p_sign,
            "share_ci": tuple(float(v) for v in sps.binomtest(int(wins.sum()), len(wins)).proportion_ci(1 - alpha)),
            "sign_verdict": stats.verdict(p_sign, alpha, share - 0.5), "wins": wins,
            "n_parsed": n_parsed, "distinct_answers": int(len(np.unique(parsed))),
            "most_common_answer_km": common[0][0] if common else None,
            "most_common_answer_share": common[0][1] / len(km) if common else 0.0,
            "median_abs_log_error": _median(log_errors(km, target))}


def task_learned(x: ClaimInputs) -> ClaimResult:
    """The manipulation check of arm x.a (x.b: the original model, asked the same questions); the
    rule and its reasons are in the module docstring."""
    t, alpha, const = x.task, x.alpha, x.constant_km
    a, o = _describe(t.km[x.a], t.target_km, const, alpha), _describe(t.km[x.b], t.target_km, const, alpha)
    outcome = a["rho_verdict"] if a["rho_verdict"] == a["sign_verdict"] else INCONCLUSIVE
    p = max(a["rho_p"], a["sign_p"])
    # reported: the arm's error against the original model's, an unparsed answer the worst error
    ea, eo = log_errors(t.km[x.a], t.target_km), log_errors(t.km[x.b], t.target_km)
    worst = 2 * float(np.concatenate([ea[np.isfinite(ea)], eo[np.isfinite(eo)]]).max(initial=0.0)) + 1
    p_orig, rb_orig = stats.wilcoxon((np.where(np.isfinite(eo), eo, worst) - np.where(np.isfinite(ea), ea, worst))[:, None])
    details = {
        "targets": "the arm's own training completions for these capitals (the shuffled control: its permuted "
                   "distances)", "constant_km": const,
        "median_abs_log_error_constant": _median(log_errors(np.full(len(t.target_km), const), t.target_km)),
        **{k: v for k, v in a.items() if k != "wins"},
        "unparsed": len(t.target_km) - a["n_parsed"],
        "vs_original_wilcoxon_p": float(p_orig[0]), "vs_original_rank_biserial": float(rb_orig[0]),
        **{f"original_{k}": v for k, v in o.items() if k not in ("wins", "rho_ci", "share_ci")},
    }
    return ClaimResult(
        key=KEY, arms=(x.a, x.b), alpha=alpha, about=x.city.name,
        claim=f"The {x.a} adapter learned its task: asked its training question about its training capitals, "
              "it orders them as its training targets and beats the best constant answer",
        test="Spearman rho of the parsed answers with the arm's training targets (two-sided, Fisher-z CI) and a sign "
             "test of |log(answer / target)| below the median target's (two-sided); both must reject "
             "(intersection-union: the decision p is the larger)",
        unit=UNIT, n=len(t.target_km), statistic_name="share of capitals beating the constant",
        statistic=a["share_beats_constant"], effect_name="Spearman rho with the training targets",
        effect=a["rho"], effect_ci=a["rho_ci"], p=p, p_adj=None, p_decision=p, verdict=outcome,
        criterion=f"learned (supported): the Spearman rho supported (p < {alpha} and its {1 - alpha:.0%} CI above 0; "
                  f"unparsed answers dropped) and the share beating the constant supported (above 1/2, p < {alpha}; "
                  "unparsed answers and ties are losses); contradicted: both contradicted; else inconclusive. "
                  "A check at the raw alpha, outside every Holm family",
        details=details,
        units={"answer_km": t.km[x.a], "target_km": t.target_km, "beats_constant": a["wins"].astype(float)})


# the check's entry, in claims.REGISTRY's form (and deliberately not in it: see the module docstring)
CHECK = Claim(KEY, ("task",), task_learned)
