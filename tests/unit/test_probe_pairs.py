"""The probe's prompt pairs are distinct units: built only from templates that name the
reference city before the target (prompts are cut after the target), refused when two pairs
would run the same token sequence, and drawn with the evaluation seed, not the training one."""

import dataclasses
import re

import pytest

from latent_city import data, finetune, probe
from latent_city.config import ExperimentConfig
from latent_city.lab import Lab
from latent_city.probe import ProbePair

CPU = ExperimentConfig.for_tier("cpu")


class WordTokenizer:
    """A stand-in for the model's tokenizer: one id per word or punctuation mark (ids given in
    order of first sight), character offsets, and a plain chat template."""
    chat_template = "user/assistant"

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return f"<user> {messages[0]['content']} <assistant>"

    def __call__(self, text, return_offsets_mapping=False, add_special_tokens=False):
        spans = [m.span() for m in re.finditer(r"<\w+>|\w+|[^\w\s]", text)]
        ids = [self.vocab.setdefault(text[a:b], len(self.vocab)) for a, b in spans]
        return {"input_ids": ids, "offset_mapping": spans}


def _pairs(cfg=CPU):
    """The probe pairs a run of `cfg` measures (the lab draws them; nothing is loaded)."""
    return Lab(cfg, log=lambda line: None).pairs


def test_probe_pairs_never_use_a_template_with_the_target_before_the_reference_city():
    pairs = _pairs()
    target_first = [t for t in data.DISTANCE_PARAPHRASES if t.index("{target}") < t.index("{city}")]
    assert target_first, "the paraphrases have target-first templates; this test checks they are left out"
    assert not {p.template for p in pairs} & set(target_first)
    assert all(p.template.index("{city}") < p.template.index("{target}") for p in pairs)


def test_the_built_pairs_pass_the_duplicate_check():
    pairs = _pairs()
    items = probe.probe_items(WordTokenizer(), pairs, [CPU.data.placeholder, "Paris", "Tokyo"])
    cut = [tuple(ids[:pos + 1]) for ids, pos in items[::4]]          # each pair's placeholder prompt
    assert len(items) == 4 * len(pairs) and len(set(cut)) == len(pairs)


def test_pairs_with_identical_cut_sequences_are_refused():
    """With the target first, the reference city comes after the cut: two pairs of that template
    with different reference cities are the same sequence up to 'foo'."""
    t = "Distance between {target} and {city}?"
    pairs = [ProbePair(CPU.data.question_template, "Houston", "Lima"), ProbePair(t, "Lagos", "Oslo"),
             ProbePair(t, "Osaka", "Rome")]
    with pytest.raises(probe.DuplicatePairsError, match=r"prompt pairs 1 .*Lagos.* and 2 .*Osaka.* up to 'foo'"):
        probe.probe_items(WordTokenizer(), pairs, [CPU.data.placeholder, "Paris"])


def test_the_measurement_refuses_duplicate_pairs_before_running_the_model():
    t = "What's the distance from {target} to {city}?"
    pairs = [ProbePair(t, "Lagos", "Oslo"), ProbePair(t, "Osaka", "Rome")]
    with pytest.raises(probe.DuplicatePairsError):
        probe.measure(object(), WordTokenizer(), CPU, pairs, ["Paris"])     # the model is never called


def test_the_evaluation_draw_seed_changes_the_pairs_and_not_the_adapter_key():
    redrawn = dataclasses.replace(CPU, seeds=dataclasses.replace(CPU.seeds, eval_draw=CPU.seeds.eval_draw + 1))
    assert finetune.adapter_key(redrawn) == finetune.adapter_key(CPU)
    assert _pairs(redrawn) != _pairs(CPU)
    assert ExperimentConfig.from_dict(redrawn.to_dict()) == redrawn


def test_the_training_data_seed_changes_the_adapter_key_and_not_the_pairs():
    reshuffled = dataclasses.replace(CPU, seeds=dataclasses.replace(CPU.seeds, data=CPU.seeds.data + 1))
    assert finetune.adapter_key(reshuffled) != finetune.adapter_key(CPU)
    assert _pairs(reshuffled) == _pairs(CPU)
