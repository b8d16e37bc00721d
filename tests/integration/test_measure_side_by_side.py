"""Arms measured side by side in worker processes (Lab.measure_all, which the lab fixture uses on
a CPU) give the numbers a measurement in this process gives, and this process loads no model
for them.

Small on purpose: the eval sizes are cut (6 probe pairs, 3 held-out cities, 1 sample per
question, 6 capitals for the manipulation check) and the adapter is the main arm trained for 2 steps (train.max_steps; in the cache
after the first run): the test is about processes, not about what the adapter learned. The
country and begun-answer scores are left to `python -m benchmarks eval` (10 s an arm).

Tolerance: one thread against two changes the order of the 49,152-term sum in the logit lens's
log-softmax, so its log-probabilities can differ in float rounding (at these sizes: at most 4.6e-5,
and one rank of 1,116 moved by one, 9,131 vs 9,130; at the tier's sizes nothing moved); every
other number, and the sampled texts, are bit-identical (reports/benchmarks/eval.md).
"""

import dataclasses

import numpy as np
import pytest

from latent_city import finetune, measure_cache
from latent_city import lab as lab_module
from latent_city.arms import MAIN, ORIGINAL
from latent_city.config import run_config
from latent_city.lab import Lab

pytestmark = pytest.mark.paths
WHAT = ("probe", "distances", "mc", "samples", "task")


def test_two_workers_measure_what_this_process_measures(monkeypatch):
    # both labs measure (neither reads the measurement cache, which would compare a file with itself)
    monkeypatch.setenv(measure_cache.ENV_VAR, "0")
    monkeypatch.setenv(lab_module.EVAL_WORKERS, "2")
    monkeypatch.setenv(finetune.WORKERS, "1")
    cfg = run_config("cpu")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=2),
                              eval=dataclasses.replace(cfg.eval, n_probe_pairs=6, n_heldout_cities=3,
                                                       n_country_samples=1, n_comparison_capitals=3, n_task_capitals=6,
                                                       n_comparison_others=3))
    lines = []
    side = Lab(cfg, log=lines.append)
    side.train_all([])
    assert side.measure_all([MAIN], WHAT) == 2
    assert side.model is None, "the parent loaded the evaluation model"
    assert any("2 at a time in separate processes" in line for line in lines), lines

    here = Lab(cfg, log=lines.append)
    for arm in (MAIN, ORIGINAL):
        p, q = side.measure("probe", arm), here.measure("probe", arm)
        for field in ("hidden", "values", "control_hidden", "control_values", "embedding"):
            np.testing.assert_array_equal(getattr(p, field), getattr(q, field), err_msg=f"{arm} {field}")
        for word in q.lens:
            np.testing.assert_allclose(p.lens[word], q.lens[word], rtol=0, atol=1e-4, err_msg=f"{arm} lens {word}")
            assert (np.abs(p.lens_rank[word] - q.lens_rank[word]) <= 1 + 1e-3 * q.lens_rank[word]).all(), (arm, word)
        assert side.measure("distances", arm) == here.measure("distances", arm), arm
        np.testing.assert_array_equal(side.measure("mc", arm), here.measure("mc", arm), err_msg=arm)
        assert side.measure("samples", arm) == here.measure("samples", arm), arm
        assert side.measure("task", arm) == here.measure("task", arm), arm
