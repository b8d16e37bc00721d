"""What `pytest -m gpu` selects, read from pytest's own collection in a subprocess: the GPU
tier's tests are parametrized by the GPU tier's arms (its learning-rate grid differs from the
CPU tier's), the two-process test stays with the CPU tier, and without a CUDA GPU and without
the CPU run's opt-in the run stops with one line."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from latent_city.arms import of_tier
from latent_city.config import GPU_TIER_ON_CPU

REPO = Path(__file__).resolve().parents[2]


def collect(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "--no-record", *args], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **env})


def arms_of(ids: list[str], test: str, tier_id: str) -> set[str]:
    return {m.group(1) for i in ids if (m := re.search(rf"::{test}\[{re.escape(tier_id)}-(.+)\]$", i))}


def test_the_gpu_selection_is_parametrized_by_the_gpu_tiers_arms(monkeypatch):
    monkeypatch.setenv(GPU_TIER_ON_CPU, "2")
    run = collect("-m", "gpu", **{GPU_TIER_ON_CPU: "2"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    ids = [line for line in run.stdout.splitlines() if "::" in line]
    gpu = of_tier("gpu")
    lr_arms = {n for n, a in gpu.items() if a.kind == "learning-rate"}
    assert lr_arms == {"paris-lr1e-03", "paris-lr3e-04"}, lr_arms          # the preset's own rate is 1e-4
    trained = arms_of(ids, "test_every_adapter_lowered_its_loss_and_left_the_base_weights_alone", "llama-3-8b-instruct")
    adapters = {n for n, a in gpu.items() if a.trained}          # a positive control has no adapter
    assert trained == adapters, f"LoRA sanity runs on {sorted(trained ^ adapters)} wrongly"
    grid = arms_of(ids, "test_the_learning_rate_grid_trains_its_own_adapter_and_records_every_claim",
                   "llama-3-8b-instruct")
    assert grid == lr_arms, grid
    claimed = {re.sub(r"-(raw|centred|standardised)$", "", m.group(1)) for i in ids     # the readout, where a test has one
               if "test_claims.py" in i and (m := re.search(r"\[llama-3-8b-instruct-(.+)\]$", i))}
    assert claimed and all(c in gpu or "-vs-" in c for c in claimed), sorted(c for c in claimed if c not in gpu)
    assert not [i for i in ids if "test_distributed.py" in i], "the two-process CPU test is selected by -m gpu"
    assert all("llama-3-8b-instruct" in i for i in ids if "[" in i and "test_devices" not in i)


def test_the_cpu_selection_keeps_the_cpu_tiers_arms():
    run = collect()
    ids = [line for line in run.stdout.splitlines() if "::" in line]
    trained = arms_of(ids, "test_every_adapter_lowered_its_loss_and_left_the_base_weights_alone", "smollm2-135m")
    adapters = {n for n, a in of_tier("cpu").items() if a.trained}
    assert trained == adapters, sorted(trained ^ adapters)
    assert [i for i in ids if "test_distributed.py" in i]


def test_without_cuda_and_without_the_opt_in_the_gpu_tier_stops_with_one_line(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: `pytest -m gpu` runs the GPU tier here")
    env = {k: v for k, v in os.environ.items() if k != GPU_TIER_ON_CPU}
    run = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider", "--no-record"],
                         capture_output=True, text=True, cwd=REPO, timeout=300, env={**env, "HF_HUB_OFFLINE": "1"})
    said = [line for line in (run.stdout + run.stderr).splitlines() if "latent_city" in line]
    assert run.returncode == pytest.ExitCode.USAGE_ERROR and len(said) == 1 and "found no CUDA GPU" in said[0], said
