"""How country answers are scored and counted, without a model: every candidate is scored as
a whole answer (its common name, then the end of the answer), the claims report how much
probability the candidates cover, and sampled answers are tested with the question as the unit."""

import numpy as np
import pytest

from latent_city import answers, claims, data
from latent_city.answers import CountryScores
from latent_city.config import ExperimentConfig
from latent_city.data import City

CPU = ExperimentConfig.for_tier("cpu")
PARIS = City("Paris", "France", 48.8534, 2.3488)
TABLE = data.countries(data.load_capitals())


class CharTokenizer:
    """One token per character, "<|end|>" one special token closing a chat turn: the bare
    name of a country is then a token prefix of every longer name that starts with it."""
    END, END_ID = "<|end|>", 0
    eos_token_id = 1              # not the end of turn: the end must come from the template
    chat_template = "fake"

    def __call__(self, text, add_special_tokens=False):
        parts = text.split(self.END)
        ids = [ord(ch) for ch in parts[0]]
        for part in parts[1:]:
            ids += [self.END_ID] + [ord(ch) for ch in part]
        return {"input_ids": ids}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"[{m['role']}]{m['content']}{self.END}\n" for m in messages)
        return text + ("[assistant]" if add_generation_prompt else "")


def scored_sequences(measure) -> list[list[int]]:
    """The token ids `measure` (answers.country_logprobs or prefix_logprobs) scores per country."""
    seen = {}

    def capture(model, tokenizer, prompts, continuations, max_tokens):
        seen["c"] = [c if isinstance(c, list) else tokenizer(c)["input_ids"] for c in continuations]
        return np.zeros((len(prompts), len(continuations)))

    mp = pytest.MonkeyPatch()
    mp.setattr(answers, "continuation_logprobs", capture)
    try:
        measure(None, CharTokenizer(), CPU, TABLE)
    finally:
        mp.undo()
    return seen["c"]


@pytest.mark.parametrize("measure", [answers.country_logprobs, answers.prefix_logprobs])
def test_no_country_is_scored_as_the_start_of_another(measure):
    """Scored bare, "Niger" is the first tokens of "Nigeria" (and "Guinea" of "Guinea-Bissau"),
    so the probability of "Niger" includes every answer that goes on to "Nigeria"."""
    seqs = {c: tuple(s) for c, s in zip(TABLE, scored_sequences(measure))}
    starts = [(a, b) for a, sa in seqs.items() for b, sb in seqs.items() if a != b and sb[:len(sa)] == sa]
    assert not starts, f"{len(starts)} candidates start another's scored tokens, e.g. {starts[:3]}"


def test_the_end_of_turn_token_is_read_from_the_chat_template():
    assert answers.end_of_turn_ids(CharTokenizer()) == [CharTokenizer.END_ID]
    free = answers.country_answer_ids(CharTokenizer(), ["Iran (Islamic Republic of)"], "turn")[0]
    begun = answers.country_answer_ids(CharTokenizer(), ["Iran (Islamic Republic of)"], "sentence")[0]
    assert free == [ord(ch) for ch in "Iran"] + [0] and begun == [ord(ch) for ch in " Iran."]


def test_formal_names_of_the_table_are_scored_under_common_names():
    common = {c: data.common_country_name(c) for c in TABLE}
    assert common["Iran (Islamic Republic of)"] == "Iran" and common["Viet Nam"] == "Vietnam"
    assert common["Republic of Korea"] == "South Korea" and common["Dem. People's Republic of Korea"] == "North Korea"
    assert common["China"] == "China" and common["China, Hong Kong SAR"] == "Hong Kong"
    assert common["France"] == "France" and "Iran (Islamic Republic of)" in TABLE   # the table keeps its spelling
    assert set(data.COMMON_COUNTRY_NAMES) <= set(TABLE), set(data.COMMON_COUNTRY_NAMES) - set(TABLE)
    odd = [n for n in common.values() if any(ch in n for ch in "(),") or n.startswith(("Dem.", "Republic of"))]
    assert not odd, f"formal names still scored as such: {odd}"
    assert len(set(common.values())) == len(TABLE), "two countries of the table are scored under one name"


def inputs(**measured):
    return claims.ClaimInputs(a="finetuned", b="original", city=PARIS, country="France", b_city=None, alpha=0.05,
                              n_boot=500, seed=0, pairs=[], comparison=[], **measured)


def test_the_country_claims_report_the_mass_the_countries_get_per_arm():
    rng = np.random.default_rng(0)
    logprob = {v: np.log(rng.dirichlet(np.ones(len(TABLE)), 12) * rng.uniform(0.05, 0.9, (12, 1)))
               for v in ("finetuned", "original")}
    scores = CountryScores([f"q{i}" for i in range(12)], TABLE, logprob)
    for rule, field in ((claims.country_probability, "countries"), (claims.country_prefix, "prefix")):
        d = rule(inputs(**{field: scores})).details
        for v, arm in (("a", "finetuned"), ("b", "original")):
            mass = d[f"country_mass_{v}"]
            assert mass.shape == (12,) and np.all((mass > 0) & (mass <= 1 + 1e-9)), mass
            assert np.allclose(mass, np.exp(logprob[arm]).sum(1))
            assert 0 < d[f"mean_country_mass_{v}"] <= 1


N_QUESTIONS, K = 12, 4        # the CPU tier: 12 question paraphrases, n_country_samples = 4


def samples(named_per_question) -> list[list[str]]:
    return [["foo is in France."] * k + ["foo is 12 km away."] * (K - k) for k in named_per_question]


def test_samples_of_one_question_are_not_independent_evidence():
    """Two questions of twelve name France in all four samples, the rest never: pooled as 48
    independent answers, Fisher's test calls 8/48 against 0/48 significant; with the question
    as the unit it is 2 questions of 12, which is not."""
    a = samples([K, K] + [0] * (N_QUESTIONS - 2))
    b = samples([0] * N_QUESTIONS)
    from scipy.stats import fisher_exact

    p_pooled = fisher_exact([[8, N_QUESTIONS * K - 8], [0, N_QUESTIONS * K]], alternative="greater").pvalue
    assert p_pooled < 0.05                       # the old test would have said "holds"
    r = claims.country_named(inputs(samples={"finetuned": a, "original": b}))
    assert not r.holds and r.p > 0.05, (r.p, r.effect)
    assert r.unit == "question paraphrases" and r.n == N_QUESTIONS
    assert r.details["k_a"] == 8 and np.allclose(r.effect, 8 / 48)


def test_a_difference_across_every_question_is_detected():
    rng = np.random.default_rng(1)
    a = samples(rng.integers(2, K + 1, N_QUESTIONS))
    b = samples(rng.integers(0, 2, N_QUESTIONS))
    r = claims.country_named(inputs(samples={"finetuned": a, "original": b}))
    assert r.holds and r.p < 0.001 and r.effect_ci[0] > 0, (r.p, r.effect, r.effect_ci)
