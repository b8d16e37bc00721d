"""The evaluation draw (held-out cities, probe pairs) has its own seed, outside the adapter key."""

import dataclasses

from latent_city import data, finetune, probe
from latent_city.config import ExperimentConfig

CPU = ExperimentConfig.for_tier("cpu")


def _pairs(cfg=CPU, n=None):
    capitals = data.load_capitals()
    n = n or cfg.eval.n_probe_pairs
    return probe.build_pairs(cfg, data.heldout_cities(n, cfg.seeds.eval_draw, capitals), capitals)


def test_the_evaluation_draw_seed_changes_the_pairs_and_not_the_adapter_key():
    redrawn = dataclasses.replace(CPU, seeds=dataclasses.replace(CPU.seeds, eval_draw=CPU.seeds.eval_draw + 1))
    assert finetune.adapter_key(redrawn) == finetune.adapter_key(CPU)
    assert _pairs(redrawn) != _pairs(CPU)
    assert ExperimentConfig.from_dict(redrawn.to_dict()) == redrawn


def test_the_training_data_seed_changes_the_adapter_key_and_not_the_pairs():
    reshuffled = dataclasses.replace(CPU, seeds=dataclasses.replace(CPU.seeds, data=CPU.seeds.data + 1))
    assert finetune.adapter_key(reshuffled) != finetune.adapter_key(CPU)
    assert _pairs(reshuffled) == _pairs(CPU)
