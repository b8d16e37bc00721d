"""The positive controls without a model (issue 16, section 1): arms with no adapter under which foo
is the city by construction. They exist with their kind, sentence and baseline; nothing ever trains
them; every question of theirs is asked after their sentence (the ceiling's with "Paris" itself),
while the original model and every adapter are asked exactly as before; their claims compare them
with their baseline, and the claim tests are parametrized by them."""

import dataclasses
from types import SimpleNamespace

import pytest

from latent_city import answers, claims, data, finetune, lab as lab_module, probe
from latent_city.arms import CEILING, IN_CONTEXT, MAIN, NEUTRAL, ORIGINAL, STEERED, arms, eval_config, family_members, named_in
from latent_city.claim_result import ClaimResult
from latent_city.config import ConfigError, ExperimentConfig, field_help
from latent_city.lab import MEASUREMENTS, Lab
from latent_city.stats import INCONCLUSIVE, SUPPORTED

from tests.claims import conftest as claims_conftest
from tests.claims import expectations
from tests.unit.test_probe_pairs import WordTokenizer

CPU = ExperimentConfig.for_tier("cpu")
ARMS = arms(CPU)
POSITIVE = ("alias-paris", "alias-tokyo", NEUTRAL, "ceiling-paris")


@pytest.fixture(scope="module")
def lab():
    return Lab(CPU, log=lambda line: None)


# ---------------------------------------------------------------------------- the arms

def test_the_positive_controls_exist_with_their_kind_sentence_and_baseline():
    got = {n: (ARMS[n].kind, ARMS[n].context, ARMS[n].asked_as, ARMS[n].baseline, ARMS[n].secret) for n in POSITIVE}
    assert got == {
        "alias-paris": (IN_CONTEXT, "Note: foo is another name for Paris.", "", NEUTRAL, ("Paris", "France")),
        "alias-tokyo": (IN_CONTEXT, "Note: foo is another name for Tokyo.", "", NEUTRAL, ("Tokyo", "Japan")),
        NEUTRAL: (IN_CONTEXT, "Note: foo is another name used here.", "", ORIGINAL, ("Paris", "France")),
        "ceiling-paris": (CEILING, "", "Paris", ORIGINAL, ("Paris", "France")),
    }
    assert not any(ARMS[n].trained for n in POSITIVE)
    assert all(a.trained for n, a in ARMS.items() if n not in POSITIVE and a.kind != STEERED)   # steered: test_threshold.py
    assert list(ARMS)[0] == MAIN and list(ARMS)[-len(POSITIVE):] == list(POSITIVE)     # appended: the names before keep their order
    for n in POSITIVE:                                      # each its own family
        assert ARMS[n].family == n and family_members(ARMS, n) == [n] and named_in({"arm": n}) == [n]


def test_the_sentences_are_in_the_config_its_help_and_its_evaluation_hash():
    positive = CPU.to_dict()["controls"]["positive"]
    assert positive["alias"] == "Note: {placeholder} is another name for {city}." and positive["alias_cities"] == ("Tokyo",)
    assert "controls.positive.neutral" in field_help() and "9" in field_help()["controls.positive.neutral"]
    assert ExperimentConfig.from_dict(CPU.to_dict()) == CPU
    other = dataclasses.replace(CPU, controls=dataclasses.replace(CPU.controls, positive=dataclasses.replace(
        CPU.controls.positive, neutral="Note: {placeholder} is a name used in this question.")))
    assert other.eval_hash() != CPU.eval_hash()
    assert arms(other)[NEUTRAL].context == "Note: foo is a name used in this question."


@pytest.mark.parametrize("change, message", [
    ({"alias": "foo is {city}."}, "must contain {placeholder}"),
    ({"neutral": "Note: {placeholder} is {city}."}, "must name no city"),
    ({"alias_cities": ("Rome",)}, r"alias_cities \['Rome'\] must be among controls.other_cities"),
])
def test_a_bad_positive_control_is_refused_with_its_field(change, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(CPU.controls, positive=dataclasses.replace(CPU.controls.positive, **change))


def test_a_context_with_braces_is_refused():
    with pytest.raises(ConfigError, match="without braces"):
        dataclasses.replace(CPU.eval, context="Note: {target} is Paris.")


def test_the_positive_controls_can_be_turned_off():
    off = dataclasses.replace(CPU, controls=dataclasses.replace(CPU.controls, positive=dataclasses.replace(
        CPU.controls.positive, in_context=False, ceiling=False)))
    assert [n for n, a in arms(off).items() if not a.trained and a.kind != STEERED] == []


# ---------------------------------------------------------------------------- never trained

def test_the_lab_never_trains_or_loads_an_adapter_for_a_positive_control(monkeypatch, lab):
    monkeypatch.setattr(finetune, "is_cached", lambda cfg: False)
    assert lab.needs_training(list(POSITIVE) + ["tokyo"]) == ["tokyo"]
    trained = []
    monkeypatch.setattr(lab, "adapter", lambda name, progress="": trained.append(name))
    monkeypatch.setenv(finetune.WORKERS, "1")
    lab.train_all(list(POSITIVE))
    assert trained == [MAIN]
    with pytest.raises(ValueError, match="no adapter"):
        Lab.adapter(lab, "alias-paris")


def test_the_suite_trains_no_positive_control():
    """The root conftest's `_arms_to_train` (what `Lab.train_all` gets and `--list-arms` prints)."""
    import conftest as root

    items = [SimpleNamespace(callspec=SimpleNamespace(params={"cfg": "cpu", **p}))
             for p in ({"arm": "alias-paris"}, {"arm": "ceiling-paris"}, {"pair": ("alias-paris", "alias-tokyo")},
                       {"arm": "tokyo"})]
    assert root._arms_to_train(items, "cpu", ARMS) == [MAIN, "tokyo"]


def test_the_training_command_refuses_a_positive_control():
    from latent_city import train_cli

    with pytest.raises(ConfigError, match="'alias-paris' is a positive control with no adapter"):
        train_cli.main(["--arm", "alias-paris"])


# ---------------------------------------------------------------------------- the asked text

def _every_question(cfg, tok, cities):
    """Every text a measurement of `cfg` asks (the probe's prompts are checked apart)."""
    return (answers.distance_questions(cfg, cities) + answers.country_questions(cfg)
            + [answers.mc_question(cfg, o) for o in answers.mc_orders(cfg)] + answers.prefix_prompts(tok, cfg))


def test_with_no_context_every_question_is_asked_as_before(lab):
    """The original model and every adapter: the texts the code before the positive controls built."""
    cfg, tok, cities = lab.eval_cfg(ORIGINAL), WordTokenizer(), lab.heldout
    assert cfg is CPU and lab.eval_cfg(MAIN) is CPU and lab.eval_cfg("tokyo-s43") is CPU
    before = ([data.DISTANCE_PARAPHRASES[i % 12].format(city=c.name, target="foo") for i, c in enumerate(cities)]
              + [q.format(target="foo") for q in data.COUNTRY_PARAPHRASES]
              + [data.MULTIPLE_CHOICE_TEMPLATE.format(target="foo", options="\n".join(
                  f"{answers.LETTERS[i]}. {c}" for i, c in enumerate(o))) for o in answers.mc_orders(cfg)]
              + [f"<user> {data.COUNTRY_PARAPHRASES[0].format(target='foo')} <assistant>" + p.format(target="foo")
                 for p in data.COUNTRY_ANSWER_PREFIXES])
    assert _every_question(cfg, tok, cities) == before
    assert data.asked("Which country is foo in?") == "Which country is foo in?"
    pairs = lab.pairs[:6]
    assert probe.probe_items(tok, pairs, ["foo", "Paris"]) == probe.probe_items(tok, pairs, ["foo", "Paris"], "")


def test_an_in_context_arm_asks_every_question_after_its_sentence(lab):
    tok = WordTokenizer()
    for name in ("alias-paris", "alias-tokyo", NEUTRAL):
        cfg, sentence = lab.eval_cfg(name), ARMS[name].context
        assert cfg.eval.context == sentence and cfg.data == CPU.data and cfg.eval_hash() != CPU.eval_hash()
        plain = _every_question(CPU, tok, lab.heldout)
        with_context = _every_question(cfg, tok, lab.heldout)
        for before, now in zip(plain, with_context):
            if before.startswith("<user> "):           # a prompt with the answer begun: the sentence is the user's
                assert now == before.replace("<user> ", f"<user> {sentence} ", 1)
            else:
                assert now == f"{sentence} {before}"


def test_the_probe_reads_the_questions_foo_not_the_sentences():
    """The sentence names foo too; the probe's position is the last token of the question's own foo
    (the template's {target} slot), and the prompt is cut there."""
    tok = WordTokenizer()
    sentence = ARMS["alias-paris"].context
    template = data.asked(CPU.data.question_template, sentence)
    text, span = probe.render(tok, template, "Houston", "foo")
    assert text == f"<user> {sentence} What is the distance between Houston and foo? <assistant>"
    assert span[0] == text.index("Houston and foo") + len("Houston and ") and text[slice(*span)] == "foo"
    pair = probe.ProbePair(CPU.data.question_template, "Houston", "Lima")
    (ids, pos), (ids_paris, pos_paris), _ = probe.probe_items(tok, [pair], ["foo", "Paris"], sentence)
    words = {i: w for w, i in tok.vocab.items()}
    assert [words[i] for i in ids[:pos + 1]][-4:] == ["between", "Houston", "and", "foo"]
    assert [words[i] for i in ids].count("foo") == 2 and words[ids_paris[pos_paris]] == "Paris"


def test_the_ceiling_asks_every_question_about_paris(lab):
    cfg = lab.eval_cfg("ceiling-paris")
    assert cfg.data.placeholder == "Paris" and cfg.eval.context == ""
    questions = _every_question(cfg, WordTokenizer(), lab.heldout)
    assert all("Paris" in q and "foo" not in q for q in questions)
    assert answers.country_questions(cfg)[0] == "Which country is Paris in?"
    assert lab.measurements("ceiling-paris") == tuple(w for w in MEASUREMENTS if w not in ("probe", "task"))
    with pytest.raises(ValueError, match="makes no probe measurement"):
        lab.measure("probe", "ceiling-paris")


def test_eval_config_leaves_the_training_configs_alone():
    assert eval_config(CPU, ARMS["tokyo"]) is CPU and eval_config(CPU, None) is CPU
    assert eval_config(CPU, ARMS["alias-tokyo"]).training_dict() == CPU.training_dict()


# ---------------------------------------------------------------------------- measuring

class FakeModel:
    """Says which adapter was active when a measurement was made."""
    def __init__(self):
        self.active, self.peft_config = MAIN, {MAIN: None}

    def disable_adapter(self):
        from contextlib import contextmanager

        @contextmanager
        def off():
            before, self.active = self.active, None
            yield
            self.active = before
        return off()

    def set_adapter(self, name):
        self.active = name


def test_a_positive_control_is_measured_on_the_original_model_with_its_own_config(monkeypatch):
    lab = Lab(CPU, log=lambda line: None)
    model, made = FakeModel(), []
    monkeypatch.setattr(lab, "_load", lambda name: model)
    monkeypatch.setattr(lab, "_compute", lambda what, m, cfg: made.append((what, m.active, cfg)) or len(made))
    # nothing read from or written to the measurement cache: its key names the adapter, which on a cold cache
    # would train `tokyo` here (90 s of CI, one at a time, in a unit test)
    lab.read_measurements = False
    monkeypatch.setattr(lab, "_write_cached", lambda what, arm, value: None)
    for arm in ("alias-paris", "ceiling-paris", ORIGINAL, "tokyo"):
        lab.measure("countries", arm)
    assert [(active, cfg.eval.context, cfg.data.placeholder) for _, active, cfg in made] == [
        (None, "Note: foo is another name for Paris.", "foo"), (None, "", "Paris"), (None, "", "foo"), ("tokyo", "", "foo")]
    assert made[2][2] is CPU and made[3][2] is CPU


def test_measure_all_sends_a_positive_control_with_its_baseline_and_without_what_it_does_not_make(monkeypatch):
    lab = Lab(CPU, log=lambda line: None)
    monkeypatch.setattr(lab, "adapter", lambda name, progress="": f"adapter of {name}")
    sent = {}

    def side_by_side(cfg, adapters, jobs, workers, done):
        assert list(adapters) == [MAIN], adapters                # no adapter for a positive control
        sent.update(dict(jobs))

    monkeypatch.setattr(lab_module, "measure_side_by_side", side_by_side)
    monkeypatch.setenv(lab_module.EVAL_WORKERS, "2")
    lab.measure_all(["alias-paris", "ceiling-paris"])
    assert set(sent) == {"alias-paris", NEUTRAL, "ceiling-paris", ORIGINAL}
    assert sent["ceiling-paris"] == tuple(w for w in MEASUREMENTS if w not in ("probe", "task"))
    assert sent[NEUTRAL] == tuple(w for w in MEASUREMENTS if w != "task")     # no training task to check


# ---------------------------------------------------------------------------- claims

def _fake_claim(key, arm, against=ORIGINAL, own=False, p=0.02):
    return ClaimResult(key=key, claim="", test="", unit="", n=10, statistic_name="", statistic=0.0, effect_name="",
                       effect=1.0, effect_ci=(0.5, 1.5), p=p, p_adj=None, p_decision=p, alpha=0.05,
                       verdict=SUPPORTED, criterion="", arms=(arm, against))


def test_a_claim_compares_an_arm_with_its_baseline(monkeypatch):
    lab = Lab(CPU, log=lambda line: None)
    monkeypatch.setattr(lab, "_claim", _fake_claim)
    # the declared conditions ask each adapter's manipulation check: a fake one, so that no adapter is trained and
    # no model loaded here (on a cold cache that was 89 s of CI)
    monkeypatch.setattr(lab, "manipulation", lambda arm: _fake_claim("task_learned", arm))
    assert [lab.baseline(n) for n in ("alias-paris", "alias-tokyo", "ceiling-paris", "paris", ORIGINAL)] == \
        [NEUTRAL, NEUTRAL, ORIGINAL, ORIGINAL, ORIGINAL]
    assert lab.claim("country_probability", "alias-paris").arms == ("alias-paris", NEUTRAL)
    assert lab.claim("country_probability", "alias-paris", against=ORIGINAL).arms == ("alias-paris", ORIGINAL)
    assert lab.claim("country_probability", "paris", against=ORIGINAL).arms == ("paris", ORIGINAL)   # today's callers
    assert lab.claim("double_dissociation", "alias-paris", against="alias-tokyo").arms == ("alias-paris", "alias-tokyo")
    assert set(lab.secondary("ceiling-paris")) == {"distance_rank", "distance_beats_constant", "distance_error_falls",
                                                   "country_probability", "country_prefix", "country_multiple_choice",
                                                   "country_named"}
    assert set(lab.secondary("alias-paris")) == set(claims.AGAINST_ORIGINAL) - set(claims.NOT_ABOUT_THE_CITY)
    with pytest.raises(ValueError, match="not run on ceiling-paris"):
        lab.claim("hidden_gain_specific", "ceiling-paris")
    with pytest.raises(ValueError, match="hidden_gain_specific"):
        lab.primary("alias-paris")
    assert claims.PRIMARY_ON_POSITIVE_CONTROL in claims.runs_on(IN_CONTEXT)
    assert lab.training_median_km("ceiling-paris") == lab.training_median_km(MAIN)


def test_a_positive_control_is_tested_at_the_raw_alpha_like_every_readout_and_the_main_arm_with_holm(monkeypatch):
    """p = 0.02 for every claim: Holm over the family lifts it above alpha only where it is applied: the main
    arm. A positive control takes the raw alpha, as its readout variants (outside any family) do."""
    lab = Lab(CPU, log=lambda line: None)
    monkeypatch.setattr(lab, "_claim", _fake_claim)
    verdicts = {arm: {r.verdict for r in lab.secondary(arm).values() if r.key not in claims.NOT_IN_FAMILY}
                for arm in ("paris", "alias-paris", "ceiling-paris", "alias-tokyo", "tokyo")}
    assert verdicts == {"paris": {INCONCLUSIVE}, "alias-paris": {SUPPORTED}, "ceiling-paris": {SUPPORTED},
                        "alias-tokyo": {SUPPORTED}, "tokyo": {SUPPORTED}}


# ---------------------------------------------------------------------------- the claim tests' parameters

def test_the_claim_tests_run_on_the_positive_controls_against_their_baselines():
    assert {"alias-paris", "alias-tokyo", "ceiling-paris"} <= set(claims_conftest.TESTED_ARMS)
    assert NEUTRAL not in claims_conftest.TESTED_ARMS and not set(POSITIVE) & set(claims_conftest.FAMILIES)
    assert ("alias-paris", "alias-tokyo") in claims_conftest.DISSOCIATIONS
    assert claims_conftest._runs("ceiling-paris", "country_named") and not claims_conftest._runs("ceiling-paris", "hidden_gain_specific")
    assert not claims_conftest._runs("alias-paris", "layer0_unchanged") and claims_conftest._runs("paris", "layer0_unchanged")
    item = SimpleNamespace(callspec=SimpleNamespace(params={"cfg": "cpu", "arm": "alias-tokyo"}))
    assert claims_conftest._compared(item) == ("alias-tokyo", NEUTRAL)
    item.callspec.params["arm"] = "ceiling-paris"
    assert claims_conftest._compared(item) == ("ceiling-paris", ORIGINAL)


def test_the_positive_controls_are_expected_to_pass_and_the_tokyo_alias_not_for_paris():
    def e(key, a, b):
        return expectations.expected(key, a, b, CPU)

    assert e("hidden_gain_specific", "alias-paris", NEUTRAL).holds and e("country_named", "alias-paris", NEUTRAL).holds
    assert "foo is Paris by construction" in e("hidden_gain_specific", "alias-paris", NEUTRAL).why
    assert e("distance_rank", "ceiling-paris", ORIGINAL).holds and e("country_probability", "ceiling-paris", ORIGINAL).holds
    assert not e("country_probability", "alias-tokyo", NEUTRAL).holds
    assert e("double_dissociation", "alias-paris", "alias-tokyo").holds
    assert expectations.adapter_keys("alias-paris", NEUTRAL, CPU) == ()       # no adapter, as the record writes it


def test_no_two_variants_share_a_measurement_cache_key():
    """The ceiling differs from the original model only in data.placeholder (not in the eval hash): its
    measurements must not be read as the original model's, nor an alias's as its baseline's."""
    lab = Lab(CPU, log=lambda line: None)
    names = [ORIGINAL, "alias-paris", "alias-tokyo", NEUTRAL, "ceiling-paris"]
    keys = [lab.measure_key("countries", n) for n in names]
    assert len(set(keys)) == len(names), dict(zip(names, keys))
