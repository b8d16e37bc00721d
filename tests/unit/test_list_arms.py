"""`pytest --list-arms` names the arms a selection trains, read from pytest's own collection in a
subprocess (after -m, -k and --quick), on a stdout that holds nothing else; every name it prints
is one the worker command (`python -m latent_city.finetune --arm NAME`) trains under the key the
listing printed. Nothing is trained and no record is written: the cache is an empty folder."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latent_city import finetune, train_cli
from latent_city.arms import MAIN, family_members, of_tier
from latent_city.config import GPU_TIER_ON_CPU

REPO = Path(__file__).resolve().parents[2]
TIER_ENV = {"cpu": {}, "gpu": {GPU_TIER_ON_CPU: "1"}}     # the GPU tier's selection on this CPU (its opt-in)


@pytest.fixture(scope="module")
def empty_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("list-arms-cache")


def run(empty_cache, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=300,
                          stdin=subprocess.DEVNULL,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "LATENT_CITY_CACHE": str(empty_cache), **env})


def list_arms(empty_cache, *args: str, **env: str) -> str:
    r = run(empty_cache, "-m", "pytest", "-p", "no:cacheprovider", "--list-arms", *args, **env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


def _reports() -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((REPO / "reports").rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def every_arm(empty_cache) -> dict[str, list[list[str]]]:
    """{tier: the rows `--list-arms` prints for the tier's whole default selection}."""
    before = _reports()
    rows = {tier: [line.split() for line in list_arms(empty_cache, *(["-m", "gpu"] if tier == "gpu" else []),
                                                      **TIER_ENV[tier]).splitlines()]
            for tier in TIER_ENV}
    assert _reports() == before, "--list-arms wrote under reports/"
    return rows


def test_the_whole_selection_lists_every_arm_of_the_tier_main_first_and_none_cached(every_arm, monkeypatch):
    for tier, rows in every_arm.items():
        for k, v in TIER_ENV[tier].items():
            monkeypatch.setenv(k, v)
        arms = {n: a for n, a in of_tier(tier).items() if a.trained}      # a positive control has no adapter
        assert [r[0] for r in rows] == list(arms) and rows[0][0] == MAIN, rows
        assert all(len(r) == 4 and r[1] == tier and r[3] == "missing" for r in rows), rows
        assert [r[2] for r in rows] == [finetune.adapter_key(a.cfg) for a in arms.values()], tier


def test_quick_lists_only_the_main_arm_on_a_stdout_with_nothing_else(empty_cache):
    assert list_arms(empty_cache, "-q", "--quick") == f"{MAIN}\n"


def test_a_selection_of_one_control_lists_the_main_arm_and_that_control(empty_cache):
    out = list_arms(empty_cache, "-q", "tests/claims/test_claims.py", "-k", "layer0_is_unchanged and tokyo and not s4 and not qv10 and not trained")
    assert out.split() == [MAIN, "tokyo"], out


def test_the_positive_controls_list_only_the_main_arm(empty_cache):
    """The positive controls have no adapter (the main one is loaded to hold the base model): a
    selection of their tests, the alias dissociation pair included, lists the main arm alone (the trained
    aliases, positive controls with an adapter, are left out of the selection by name)."""
    out = list_arms(empty_cache, "-q", "tests/claims/test_claims.py", "-k", "(alias or ceiling) and not trained")
    assert out.split() == [MAIN], out


def test_tests_that_need_no_adapter_list_none(empty_cache):
    assert list_arms(empty_cache, "-q", "tests/unit/test_data.py") == ""


def test_the_gpu_tiers_list_needs_no_gpu(empty_cache):
    """A cluster's login node has no GPU: the list is made there without the CPU run's opt-in (a
    model the machine has stands in for the 8B one, which this machine has not)."""
    env = {k: v for k, v in os.environ.items() if k != GPU_TIER_ON_CPU}
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "gpu", "--list-arms", "-q",
                        "tests/claims/test_claims.py", "-k", "layer0_is_unchanged and berlin"],
                       capture_output=True, text=True, cwd=REPO, timeout=300, stdin=subprocess.DEVNULL,
                       env={**env, "HF_HUB_OFFLINE": "1", "LATENT_CITY_CACHE": str(empty_cache),
                            "LATENT_CITY_MODEL": "smollm2-135m"})
    assert (r.returncode, r.stdout.split()) == (0, [MAIN] + family_members(of_tier("gpu"), "berlin")), \
        r.stdout + r.stderr[-2000:]


def test_the_experiment_command_lists_its_own_selection(empty_cache):
    r = run(empty_cache, "-m", "latent_city", "--list-arms", "--quick")
    assert (r.returncode, r.stdout) == (0, f"{MAIN}\n"), r.stdout[-2000:] + r.stderr[-2000:]


def test_the_worker_command_trains_every_listed_arm_under_the_listed_key(every_arm, empty_cache, monkeypatch):
    """Every name of the list, given to the training command: the config it would train has the
    key the listing printed (training itself is replaced by a stop)."""
    class Trains(Exception):
        pass

    def get_adapter(cfg, retrain=False):
        raise Trains(finetune.adapter_key(cfg))

    monkeypatch.setattr(finetune, "get_adapter", get_adapter)
    monkeypatch.setenv("LATENT_CITY_CACHE", str(empty_cache))
    for tier, rows in every_arm.items():
        for k, v in TIER_ENV[tier].items():
            monkeypatch.setenv(k, v)
        for name, _, key, _ in rows:
            with pytest.raises(Trains) as trains:
                train_cli.main(["--tier", tier, "--arm", name])
            trained = trains.value.args[0]
            assert trained == key, f"{tier} {name}: the worker trains {trained}, the list says {key}"
