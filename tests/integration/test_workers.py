"""Arms trained as separate workers into one cache, after which the suite trains nothing.

The recipe of README "Training arms side by side", on this CPU: `pytest --list-arms -q` names
the arms a selection needs; two workers (`python -m latent_city.finetune --tier gpu --arm NAME`),
started at the same time, each train one of them into one fresh cache; then `--list-arms` shows
both as cached under the keys the workers wrote, and running the selection reads both adapters
from the cache and trains none. The GPU tier runs on the CPU with its opt-in
(LATENT_CITY_GPU_TIER_ON_CPU=1: SmolLM2-135M in 8-bit, one training step per arm), the one tier
short enough to train in a test.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from latent_city import cache
from latent_city.config import GPU_TIER_ON_CPU

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.paths
# the GPU tier's LoRA sanity test of the main arm and of one control: a selection that needs those two arms only
SELECTION = ["-m", "gpu", "tests/integration/test_finetune.py",
             "-k", "every_adapter_lowered and (instruct-paris] or instruct-tokyo])"]


@pytest.fixture(scope="module")
def env(base, tmp_path_factory) -> dict:
    """The workers' and the suite's environment: one fresh cache with no adapter in it (the
    dequantized base model is the session cache's, which `base` made sure of, not rebuilt), the
    GPU tier's CPU opt-in, and the CPU tier's model whatever this session was asked to run."""
    root = tmp_path_factory.mktemp("workers") / "cache"
    root.mkdir()
    os.symlink(cache.root() / "base", root / "base")
    env = {k: v for k, v in os.environ.items() if k not in ("LATENT_CITY_MODEL", "LATENT_CITY_PRECISION")}
    return {**env, "LATENT_CITY_CACHE": str(root), "HF_HUB_OFFLINE": "1", GPU_TIER_ON_CPU: "1"}


def run_pytest(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--no-record", *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def train_side_by_side(env: dict, names: list[str]) -> dict[str, str]:
    """Start one worker per arm at once and wait for all; {arm: what its worker printed}. Each
    worker gets one thread, two workers on two cores: with torch's default of a thread per core in
    each, their threads wait on one another (measured beside another busy process on this
    machine: one training step 47 s with two threads, 5 s with one)."""
    workers = {name: subprocess.Popen([sys.executable, "-m", "latent_city.finetune", "--tier", "gpu", "--arm", name],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                      env={**env, "OMP_NUM_THREADS": "1"})
               for name in names}
    try:
        said = {name: w.communicate(timeout=300) for name, w in workers.items()}
    finally:
        for w in workers.values():
            if w.poll() is None:
                w.kill()
    for name, w in workers.items():
        out, err = said[name]
        assert w.returncode == 0, f"worker {name}: exit {w.returncode}\n{out[-1500:]}\n{err[-1500:]}"
    return {name: out for name, (out, _) in said.items()}


def test_two_workers_fill_one_cache_and_the_suite_then_trains_nothing(env):
    listed = run_pytest(env, "--list-arms", "-q", *SELECTION)
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = listed.stdout.split()
    assert names == ["paris", "tokyo"], f"--list-arms -q printed {listed.stdout!r}"

    said = train_side_by_side(env, names)
    for name, out in said.items():
        assert "(trained now" in out, f"worker {name} trained nothing in a fresh cache:\n{out[-1500:]}"

    status = run_pytest(env, "--list-arms", *SELECTION)
    rows = [line.split() for line in status.stdout.splitlines()]
    assert [(r[0], r[1], r[3]) for r in rows] == [(n, "gpu", "cached") for n in names], \
        status.stdout + status.stderr[-2000:]
    for (name, _, key, _) in rows:       # the entry each worker wrote is the one the suite looks up
        assert f"-{key} (trained now" in said[name], f"{name}: the suite reads {key}; the worker:\n{said[name][-800:]}"

    run = run_pytest(env, "-rs", *SELECTION)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    loaded = re.findall(r"adapter \d+/\d+ (\S+): loaded from the cache in \d+ s, not retrained", run.stdout)
    assert loaded == names and "trained in" not in run.stdout, run.stdout[-3000:]
