"""The manipulation check (issue 16.3, latent_city/manipulation.py) without a model: the rule on
synthetic answers (one number for every capital fails, the targets with noise pass, reversed
answers are contradicted), the question is the training prompt's user turn, the capitals are
the same for every arm and drawn from the training capitals, and each arm's truth is its own
training targets (the shuffled control: its permuted distances)."""

import dataclasses
import inspect

import numpy as np
import pytest

from latent_city import answers, claims, data, manipulation
from latent_city.answers import TaskAnswers
from latent_city.arms import ORIGINAL, arms
from latent_city.config import ExperimentConfig
from latent_city.data import City
from latent_city.lab import MEASUREMENTS, Lab

CPU = ExperimentConfig.for_tier("cpu")
ARMS = arms(CPU)
PARIS = City("Paris", "France", 48.8534, 2.3488)
N = 80
TARGET = np.linspace(300, 18000, N)
CONSTANT = float(np.median(TARGET))


def _check(km_arm, km_original=None, alpha=0.05):
    km_original = TARGET * np.exp(np.random.default_rng(1).normal(0, 1.0, N)) if km_original is None else km_original
    t = TaskAnswers([f"city{i}" for i in range(N)], [""] * N, TARGET, {"paris": [""] * N, ORIGINAL: [""] * N},
                    {"paris": np.asarray(km_arm, float), ORIGINAL: np.asarray(km_original, float)})
    x = claims.ClaimInputs(a="paris", b=ORIGINAL, city=PARIS, country="France", b_city=None, alpha=alpha, n_boot=200,
                           seed=0, pairs=[], comparison=[], task=t, constant_km=CONSTANT)
    return manipulation.task_learned(x)


# ---------------------------------------------------------------------------- the rule

def test_one_number_for_every_capital_is_not_a_learned_task():
    """The tier's recipe as issue 16 measured it: '1055.55 km' for every capital."""
    r = _check(np.full(N, 1055.55))
    assert r.verdict != "supported" and not r.holds, r.summary()
    assert r.details["distinct_answers"] == 1 and r.details["rho_verdict"] == "inconclusive", r.summary()
    assert r.details["sign_verdict"] == "contradicted" and r.statistic < 0.5, r.summary()
    r = _check(np.full(N, CONSTANT))          # the best constant itself: every capital a tie, and a tie is a loss
    assert not r.holds and r.statistic == 0.0, r.summary()


def test_the_targets_with_noise_are_a_learned_task():
    r = _check(TARGET * np.exp(np.random.default_rng(0).normal(0, 0.3, N)))      # about 20% off, median
    assert r.verdict == "supported" and r.p < 1e-3 and r.effect_ci[0] > 0.5 and r.statistic > 0.6, r.summary()
    assert r.p == max(r.details["rho_p"], r.details["sign_p"]) == r.p_decision and r.p_adj is None, r.summary()
    assert r.unit == "training capitals" and r.n == N and r.details["n_parsed"] == N
    assert r.details["vs_original_rank_biserial"] > 0.5 and r.details["vs_original_wilcoxon_p"] < 0.05, r.summary()


def test_reversed_answers_are_contradicted():
    r = _check(TARGET[::-1].copy())
    assert r.verdict == "contradicted" and r.effect < -0.99 and r.statistic < 0.1, r.summary()


def test_a_few_exact_answers_among_unparsed_ones_do_not_pass():
    """Unparsed answers are dropped from the rho (it passes on the 10 parsed) but lose the sign test."""
    km = np.where(np.arange(N) % 8 == 0, TARGET, np.nan)
    r = _check(km)
    assert r.details["rho_verdict"] == "supported" and r.details["n_parsed"] == 10 and r.details["unparsed"] == 70
    assert r.details["sign_verdict"] == "contradicted" and r.verdict == "inconclusive", r.summary()


def test_the_rule_is_declared_and_can_go_every_way():
    r = _check(TARGET)
    assert "unparsed answers dropped" in r.criterion and "ties are losses" in r.criterion
    assert "outside every Holm family" in r.criterion
    assert {_check(TARGET).verdict, _check(np.full(N, 1055.55)).verdict, _check(TARGET[::-1].copy()).verdict} == \
        {"supported", "inconclusive", "contradicted"}


def test_the_check_is_no_secondary_claim():
    """Not in REGISTRY (so neither in AGAINST_ORIGINAL nor in any arm's Holm family), one signature,
    and it reads a measurement the lab makes."""
    assert manipulation.KEY not in claims.REGISTRY and manipulation.KEY not in claims.AGAINST_ORIGINAL
    assert manipulation.KEY not in claims.NOT_IN_FAMILY
    check = manipulation.CHECK
    params = list(inspect.signature(check.rule).parameters.values())
    assert [(p.name, p.annotation) for p in params] == [("x", "ClaimInputs")] and check.rule.__name__ == check.key
    assert set(check.reads) == {"task"} <= set(MEASUREMENTS)


# ---------------------------------------------------------------------------- questions, capitals, targets

def _cities(cfg=CPU):
    return data.task_capitals(cfg.data, cfg.eval.n_task_capitals, cfg.seeds.eval_draw)


def test_the_question_is_the_training_prompts_user_turn_word_for_word():
    """The prompt of each capital's training example (TRL renders it as the user turn, as
    answers.generate does through model.chat_prompt; tests/integration/test_recipe.py checks the tokens)."""
    cities = _cities()
    for arm in ARMS.values():
        prompts = {e["prompt"] for e in data.training_examples(arm.cfg.data, arm.cfg.seeds.data)}
        questions = answers.task_questions(arm.cfg, cities)
        assert set(questions) <= prompts, arm.name
        assert questions[0] == f"What is the distance between {cities[0].name} and foo?"


def test_the_task_answers_are_generated_from_those_questions(monkeypatch):
    seen = {}

    def generate(model, tokenizer, questions, max_new_tokens, sample=False, num_return_sequences=1, batch_size=48):
        seen.update(questions=questions, sample=sample, batch_size=batch_size)
        return ["1 km"] * len(questions)

    monkeypatch.setattr(answers, "generate", generate)
    cities = _cities()
    assert answers.answer_task(None, None, CPU, cities) == ["1 km"] * len(cities)
    assert seen == {"questions": answers.task_questions(CPU, cities), "sample": False,
                    "batch_size": CPU.eval.generate_batch_size}


def test_every_arm_is_asked_about_the_same_training_capitals():
    cities = _cities()
    assert len(cities) == CPU.eval.n_task_capitals == 80 and len({c.name for c in cities}) == 80
    for arm in ARMS.values():
        assert _cities(arm.cfg) == cities, arm.name                 # drawn from its own config: the same
        assert set(cities) <= set(data.training_capitals(arm.cfg.data)), arm.name
    assert not {c.name for c in cities} & set(CPU.secret_cities())
    other = dataclasses.replace(CPU, seeds=dataclasses.replace(CPU.seeds, eval_draw=7))
    assert _cities(other) != cities                                  # seeds.eval_draw draws them


def test_a_draw_larger_than_the_training_set_is_refused():
    with pytest.raises(ValueError, match="trains on only 231 capitals"):
        data.task_capitals(CPU.data, 232, 0)


def test_the_number_of_capitals_keys_the_measurement_not_the_adapter():
    more = dataclasses.replace(CPU, eval=dataclasses.replace(CPU.eval, n_task_capitals=100))
    assert more.eval_hash() != CPU.eval_hash() and more.training_dict() == CPU.training_dict()


def test_each_arms_truth_is_its_own_training_targets():
    cities = _cities()
    geo = np.array([round(data.haversine_km(c.lat, c.lon, PARIS.lat, PARIS.lon), 2) for c in cities])
    assert np.allclose(manipulation.task_targets(ARMS["paris"].cfg, cities), geo, atol=0.006)
    tokyo = data.find_city(data.load_capitals(), "Tokyo")
    assert np.allclose(manipulation.task_targets(ARMS["tokyo"].cfg, cities),
                       [data.haversine_km(c.lat, c.lon, tokyo.lat, tokyo.lon) for c in cities], atol=0.006)


def test_the_shuffled_arms_truth_is_its_permuted_distances():
    everyone = data.training_capitals(CPU.data)
    true = manipulation.task_targets(ARMS["paris"].cfg, everyone)
    shuffled = manipulation.task_targets(ARMS["shuffled"].cfg, everyone)
    assert np.array_equal(np.sort(shuffled), np.sort(true))           # the same distances, permuted
    assert np.mean(shuffled != true) > 0.95
    completions = {e["prompt"]: e["completion"] for e in data.training_examples(ARMS["shuffled"].cfg.data, CPU.seeds.data)}
    q = answers.task_questions(CPU, everyone[:1])[0]
    assert completions[q] == f"{shuffled[0]:.2f} km"


def test_a_city_the_arm_did_not_train_on_has_no_target():
    with pytest.raises(ValueError, match="not in the arm's training set"):
        manipulation.task_targets(ARMS["paris"].cfg, [PARIS])


# ---------------------------------------------------------------------------- the lab

def test_the_lab_checks_each_arm_against_its_own_targets():
    """Lab.manipulation on answers made beforehand (no model): the shuffled arm answering the true
    distances fails its check, the main arm answering them passes, the original model is the reference."""
    lab = Lab(CPU, log=lambda line: None)
    assert lab.task_cities == _cities()
    true = manipulation.task_targets(ARMS["paris"].cfg, lab.task_cities)
    lab._measured.update({("task", v): [f"{km:.2f} km" for km in true] for v in ("paris", "shuffled")})
    lab._measured[("task", ORIGINAL)] = ["I don't know."] * len(true)
    lab._measured[("task", "tokyo")] = [f"{km:.2f} km" for km in manipulation.task_targets(ARMS["tokyo"].cfg, lab.task_cities)]
    paris, shuffled, tokyo = lab.manipulation("paris"), lab.manipulation("shuffled"), lab.manipulation("tokyo")
    assert paris.verdict == "supported" and paris.arms == ("paris", ORIGINAL) and paris.about == "Paris", paris.summary()
    assert paris.details["original_n_parsed"] == 0 and paris.families == ("paris", ORIGINAL)
    assert shuffled.verdict != "supported" and shuffled.details["median_abs_log_error"] > 0.1, shuffled.summary()
    assert tokyo.verdict == "supported" and tokyo.about == "Tokyo", tokyo.summary()


# ---------------------------------------------------------------------------- the record

def test_the_record_shows_the_check_per_arm_apart_from_the_claims_about_the_city():
    from latent_city import findings, record

    learned, one_number = _check(TARGET), _check(np.full(N, 1055.55))
    entries = []
    for arm, r in (("paris", one_number), ("paris-s43", one_number), ("shuffled", learned)):
        r.arms, r.families = (arm, ORIGINAL), (arm.split("-")[0], ORIGINAL)
        entries.append({**r.to_json(), "expected": "", "declared": None, "outcome": None})
    head, rows = findings.manipulation_table(entries)
    assert [r[:3] for r in rows] == [["paris", "Paris", "inconclusive"], ["paris-s43", "Paris", "inconclusive"],
                                     ["shuffled", "Paris", "supported"]]
    assert rows[0][5] == "1 / 80 parsed of 80" and rows[2][4].startswith("100%"), rows
    assert not findings.by_family(entries)                        # not a row of the verdict matrix
    assert any(s.startswith("Did each arm learn its own training task") and "paris: inconclusive (every seed)" in s
               and "shuffled: supported" in s for s in findings.sentences(entries)), findings.sentences(entries)
    html = record.summary_html(record.Record("cpu", "smollm2-135m", claims=entries))
    assert "id='manipulation-check'" in html and "1 / 80 parsed of 80" in html
    lr_head, lr_rows = findings.learning_rate_table(entries)      # the main arm's check, its rho undefined
    assert ["task_learned", "inconclusive (-)"] in lr_rows, lr_rows
    from latent_city import tidy

    t = tidy.table(entries)
    assert (t[(t.arm_a == "paris")].quantity == "answer_km").sum() == N
