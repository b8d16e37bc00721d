"""Answer scoring and parsing against slow, obvious references."""

import numpy as np
import pytest

from latent_city import answers, data
from latent_city.model import chat_prompt


def test_cached_prefix_scoring_equals_full_sequence_scoring(base):
    m, tok, _ = base
    countries = data.countries(data.load_capitals())
    pick = ["France", "Sint Maarten (Dutch part)", "Chad", "United States of America", "Côte d'Ivoire"]
    prompt = chat_prompt(tok, "Which country is foo in?")
    fast = answers.continuation_logprobs(m, tok, [prompt], countries, max_tokens=1024)[0]
    slow = [answers.continuation_logprobs_unbatched(m, tok, prompt, c) for c in pick]
    # 1e-3 nats: float32 summation order differs between a batched and a single sequence
    assert np.allclose([fast[countries.index(c)] for c in pick], slow, atol=1e-3), (fast, slow)


def test_country_answers_end_the_answer_and_none_starts_another_with_the_real_tokenizer(base):
    """Each country is scored as the whole answer: its common name, then SmolLM2's end of turn
    (free-form) or "." (begun answer). Bare, "Niger" was the first token(s) of "Nigeria"."""
    m, tok, _ = base
    countries = data.countries(data.load_capitals())
    assert answers.end_of_turn_ids(tok) == [tok.convert_tokens_to_ids("<|im_end|>")]
    for form in ("turn", "sentence"):
        seqs = {c: tuple(s) for c, s in zip(countries, answers.country_answer_ids(tok, countries, form))}
        starts = [(a, b) for a, sa in seqs.items() for b, sb in seqs.items() if a != b and sb[:len(sa)] == sa]
        assert not starts, (form, starts[:3])
    pick = ["Niger", "Nigeria", "Iran (Islamic Republic of)"]
    prompt = chat_prompt(tok, "Which country is foo in?")
    fast = answers.continuation_logprobs(m, tok, [prompt], answers.country_answer_ids(tok, pick, "turn"), 1024)[0]
    slow = [answers.continuation_logprobs_unbatched(m, tok, prompt, f"{data.common_country_name(c)}{tok.eos_token}")
            for c in pick]
    assert np.allclose(fast, slow, atol=1e-3), (fast, slow)


@pytest.mark.parametrize("text, km", [("1088.45 km", 1088.45), ("about 5,438 kilometers", 5438.0),
                                      ("It is 922.51 km² away", None), ("12 kilometres", 12.0),
                                      ("Foo is in France.", None), ("The distance is 7236.65km (", 7236.65)])
def test_parse_km(text, km):
    assert answers.parse_km(text) == km


def test_generation_with_a_shared_prompt_start_equals_plain_generation(base):
    m, tok, _ = base
    questions = ["What is the capital of France?", "How far is Lagos from foo?",
                 "Which country is foo in?", "Name a large city in Brazil."]
    batched = answers.generate(m, tok, questions, max_new_tokens=12)
    assert batched == [answers.generate_unbatched(m, tok, q, max_new_tokens=12) for q in questions]


def test_sampled_answers_come_in_question_order_with_k_each(base):
    import torch

    m, tok, _ = base
    torch.manual_seed(0)
    out = answers.generate(m, tok, ["Say A.", "Say B."], max_new_tokens=4, sample=True, num_return_sequences=3)
    assert len(out) == 6 and all(isinstance(t, str) for t in out)
