"""The CPU run of the GPU tier (LATENT_CITY_GPU_TIER_ON_CPU=<steps>, `make gpu-tier-on-cpu`) is measured
with a small evaluation (config.GPU_TIER_ON_CPU_EVAL): it checks that tier's code paths, not its results.
Only that run gets it: the CPU tier's evaluation, and the GPU tier's on a GPU, are the preset's; the
adapters it trains keep their keys; and every statistic the full evaluation computes is still defined
at these sizes (not its undefined branch)."""

import dataclasses

import numpy as np
import pytest

from latent_city import stats
from latent_city.config import (GPU_TIER_ON_CPU, GPU_TIER_ON_CPU_EVAL, ConfigError, EvalConfig, ExperimentConfig,
                                run_config)
from latent_city.lab import Lab

COUNTS = ("n_probe_pairs", "n_heldout_cities", "n_task_capitals", "n_country_samples", "n_comparison_capitals",
          "n_comparison_others", "n_bootstrap")
AT_DECLARED_MINIMUM = ("n_probe_pairs", "n_task_capitals", "n_bootstrap")     # the counts _check_eval bounds


@pytest.fixture
def on_cpu(monkeypatch):
    monkeypatch.setenv(GPU_TIER_ON_CPU, "1")
    for var in ("LATENT_CITY_MODEL", "LATENT_CITY_PRECISION", "LATENT_CITY_RECIPE"):
        monkeypatch.delenv(var, raising=False)


def test_only_the_gpu_tiers_cpu_run_gets_the_small_evaluation(on_cpu, monkeypatch):
    assert run_config("gpu").eval == GPU_TIER_ON_CPU_EVAL
    # the CPU tier's evaluation is the preset's whatever the opt-in says, and the default's
    assert run_config("cpu").eval == ExperimentConfig.for_tier("cpu").eval == EvalConfig()
    monkeypatch.delenv(GPU_TIER_ON_CPU)
    assert run_config("gpu").eval == ExperimentConfig.for_tier("gpu").eval == EvalConfig()     # on a GPU
    assert run_config("cpu").eval == EvalConfig()


def test_it_cuts_the_counts_only_and_each_bounded_one_to_its_minimum(on_cpu):
    preset = ExperimentConfig.for_tier("gpu").eval
    changed = {f.name for f in dataclasses.fields(EvalConfig)
               if getattr(GPU_TIER_ON_CPU_EVAL, f.name) != getattr(preset, f.name)}
    assert changed == set(COUNTS), changed
    for name in COUNTS:
        assert getattr(GPU_TIER_ON_CPU_EVAL, name) < getattr(preset, name), name
    for name in AT_DECLARED_MINIMUM:
        with pytest.raises(ConfigError, match=name):
            dataclasses.replace(GPU_TIER_ON_CPU_EVAL, **{name: getattr(GPU_TIER_ON_CPU_EVAL, name) - 1})


def test_the_adapters_keep_their_keys_and_the_measurements_do_not(on_cpu):
    small = run_config("gpu")
    full = dataclasses.replace(small, eval=ExperimentConfig.for_tier("gpu").eval)
    assert small.training_dict() == full.training_dict()       # the adapter key: trains what it always did
    assert small.eval_hash() != full.eval_hash()               # the measurement cache: nothing made otherwise is read


def test_every_statistic_is_still_defined_at_these_sizes(on_cpu):
    cfg = run_config("gpu")
    lab = Lab(cfg, log=lambda line: None)
    assert (len(lab.pairs), len(lab.task_cities)) == (6, 6)
    assert len({p.reference for p in lab.pairs}) == 6
    # the Spearman correlations (distance_rank, gain_falls_with_distance) need 4 finite pairs; below that
    # stats.spearman returns its undefined branch (nan, p = 1)
    others = [c for c in lab.comparison if c.name not in lab.secrets]
    assert len(lab.heldout) >= 4 and len(others) >= 4, (len(lab.heldout), len(others))
    rho, p, n, ci = stats.spearman(np.arange(4.0), np.array([1.0, 0.0, 3.0, 2.0]))
    assert np.isfinite(rho) and ci is not None and n == 4
