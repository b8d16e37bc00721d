"""Every measurement is kept on disk by content: a second run with the same model, adapter,
evaluation config, code and machine reads it without loading a model; a change in any of them,
a damaged file, `--retrain` or LATENT_CITY_MEASURE_CACHE=0 measures again. The model, the
adapters and the measuring are fakes that count what was computed; the cache is a temporary one."""

import dataclasses
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from latent_city import cache, data, finetune, measure_cache
from latent_city import lab as lab_module
from latent_city.arms import ORIGINAL, arms
from latent_city.config import ExperimentConfig
from latent_city.lab import Lab
from latent_city.probe import ByLayer
from latent_city.progress import Progress

CFG = ExperimentConfig.for_tier("cpu")
CFG_ARMS = arms(CFG)


class FakeModel:
    def __init__(self):
        self.peft_config, self.active = {"paris": None}, "paris"

    def load_adapter(self, path, adapter_name):
        self.peft_config[adapter_name] = None

    def eval(self):
        return self

    def set_adapter(self, name):
        self.active = name

    @contextmanager
    def disable_adapter(self):
        before, self.active = self.active, ORIGINAL
        yield
        self.active = before


@dataclasses.dataclass
class World:
    tmp: Path
    computed: list            # (what, arm) of every measurement made, in order
    keys: dict                # arm -> its fake adapter key
    weights: list             # [the base weights' fake hash]

    def lab(self, cfg=CFG, **kw) -> Lab:
        return Lab(cfg, log=lambda line: None, **kw)

    def seal(self, arm: str, text: str) -> None:
        """Reseal `arm`'s adapter entry with other content (as a retraining would)."""
        (self.tmp / "adapters" / arm / cache.COMPLETE).write_text(text)


_HELDOUT: dict = {}
_heldout_cities = data.heldout_cities


def heldout_cities(n, seed, capitals=None, **kw):
    """data.heldout_cities remembered (it reads all of GeoNames, 2 s a Lab: these tests make many Labs)."""
    key = (n, seed, tuple(sorted(kw.items())))
    if key not in _HELDOUT:
        _HELDOUT[key] = _heldout_cities(n, seed, capitals, **kw)
    return _HELDOUT[key]


@pytest.fixture
def world(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "heldout_cities", heldout_cities)
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "cache"))        # never the user's (warm) cache
    monkeypatch.delenv(measure_cache.ENV_VAR, raising=False)
    monkeypatch.setenv(finetune.WORKERS, "1")
    w = World(tmp_path, [], {}, ["base-weights"])
    monkeypatch.setattr(lab_module, "weights_hash", lambda spec: w.weights[0])

    def get_adapter(cfg, retrain=False):
        # the arm trained as `cfg` (its data, seed, training), whatever the evaluation config
        name = next(n for n, a in CFG_ARMS.items() if (a.cfg.data, a.cfg.seeds.train, a.cfg.train) ==
                    (cfg.data, cfg.seeds.train, cfg.train))
        folder = tmp_path / "adapters" / name
        if not folder.exists():
            folder.mkdir(parents=True)
            (folder / cache.COMPLETE).write_text(f"sealed {name}")
        return finetune.Adapter(folder, w.keys.get(name, f"key-{name}-{cfg.precision}"), {}, False, 50.0, [], {})

    def compute(lab, what, model, cfg=None):
        w.computed.append((what, model.active))
        return {"texts": [f"{what} of {model.active}", "1,234 km"], "x": np.arange(4.0) + len(w.computed),
                "by_layer": ByLayer(np.ones((2, 3)) * len(w.computed), [0, 1, 2])}

    monkeypatch.setattr(finetune, "get_adapter", get_adapter)
    monkeypatch.setattr(finetune, "is_cached", lambda cfg: True)
    monkeypatch.setattr(finetune, "load_finetuned", lambda cfg, adapter, adapter_name: (FakeModel(), "tokenizer"))
    monkeypatch.setattr(Lab, "_compute", compute)
    return w


def _same(a, b) -> bool:
    return a["texts"] == b["texts"] and np.array_equal(a["x"], b["x"]) and np.array_equal(a["by_layer"].x, b["by_layer"].x)


def test_a_second_lab_reads_every_measurement_without_loading_a_model(world, monkeypatch):
    first = world.lab()
    made = {(w, a): first.measure(w, a) for w in ("probe", "distances") for a in ("paris", ORIGINAL)}
    assert len(world.computed) == 4 and first.measured_from_cache == set()

    second = world.lab()
    second.progress = Progress(train=[], measure=["paris", ORIGINAL], what=("probe", "distances"))
    monkeypatch.setattr(second, "_load", lambda name: pytest.fail("a cached measurement loaded the model"))
    for key, value in made.items():
        assert _same(second.measure(*key), value), key
    assert len(world.computed) == 4, world.computed
    assert second.measured_from_cache == set(made) and set(second.measure_seconds) == set(made)
    assert second.progress.todo == set() and second.progress.durations == {}    # done, and no time to estimate by


CHANGES = {
    # change -> the arms measured again (of paris and the original model)
    "evaluation config (eval.n_probe_pairs)": ({"cfg": "n_probe_pairs"}, {"paris", ORIGINAL}),
    "evaluation seed (seeds.eval)": ({"cfg": "seed"}, {"paris", ORIGINAL}),
    "precision": ({"cfg": "precision"}, {"paris", ORIGINAL}),
    "adapter key": ({"key": "key-paris-2"}, {"paris"}),
    "adapter files (retrained)": ({"seal": "retrained"}, {"paris"}),
    "base weights": ({"weights": "other-weights"}, {ORIGINAL}),
    "code": ({"code": "other-code"}, {"paris", ORIGINAL}),
    "machine (CPU kernels)": ({"machine": {"cpu": "AMX", "cuda": []}}, {"paris", ORIGINAL}),
    "LATENT_CITY_MEASURE_CACHE=0": ({"env": "0"}, {"paris", ORIGINAL}),
    "--retrain": ({"retrain": True}, {"paris", ORIGINAL}),
    "nothing": ({}, set()),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_in_any_part_of_the_key_measures_again_and_nothing_else_does(world, monkeypatch, change):
    how, expected = CHANGES[change]
    for arm in ("paris", ORIGINAL):
        world.lab().measure("probe", arm)
    cfg = CFG
    if how.get("cfg") == "n_probe_pairs":
        cfg = dataclasses.replace(CFG, eval=dataclasses.replace(CFG.eval, n_probe_pairs=CFG.eval.n_probe_pairs - 1))
    elif how.get("cfg") == "seed":
        cfg = dataclasses.replace(CFG, seeds=dataclasses.replace(CFG.seeds, eval=CFG.seeds.eval + 1))
    elif how.get("cfg") == "precision":
        cfg = dataclasses.replace(CFG, precision="bf16")
    if "key" in how:
        world.keys["paris"] = how["key"]
    if "seal" in how:
        world.seal("paris", how["seal"])
    if "weights" in how:
        world.weights[0] = how["weights"]
    if "code" in how:
        monkeypatch.setattr(measure_cache, "code_hash", lambda: how["code"])
    if "machine" in how:
        monkeypatch.setattr(measure_cache, "machine", lambda: how["machine"])
    if "env" in how:
        monkeypatch.setenv(measure_cache.ENV_VAR, how["env"])
    world.computed.clear()
    lab = world.lab(cfg, retrain=how.get("retrain", False))
    for arm in ("paris", ORIGINAL):
        lab.measure("probe", arm)
    assert {arm for _, arm in world.computed} == expected, f"{change}: measured again {world.computed}"
    assert lab.measured_from_cache == {("probe", a) for a in {"paris", ORIGINAL} - expected}


def test_with_reading_off_the_new_measurement_is_still_written_and_read_next_time(world, monkeypatch):
    old = world.lab().measure("mc", "paris")
    monkeypatch.setenv(measure_cache.ENV_VAR, "0")
    new = world.lab().measure("mc", "paris")
    assert not _same(old, new) and len(world.computed) == 2
    monkeypatch.delenv(measure_cache.ENV_VAR)
    assert _same(world.lab().measure("mc", "paris"), new) and len(world.computed) == 2


@pytest.mark.parametrize("damage", ["a flipped byte", "cut short", "empty"])
def test_a_damaged_measurement_is_measured_again_not_read(world, damage):
    lab = world.lab()
    lab.measure("countries", ORIGINAL)
    path = measure_cache.path(lab.measure_key("countries", ORIGINAL))
    blob = bytearray(path.read_bytes())
    if damage == "a flipped byte":
        blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob[:len(blob) // 2] if damage == "cut short" else b"" if damage == "empty" else blob))
    with pytest.warns(UserWarning, match="is damaged"):
        again = world.lab()
        remade = again.measure("countries", ORIGINAL)
    assert len(world.computed) == 2 and again.measured_from_cache == set()
    assert _same(world.lab().measure("countries", ORIGINAL), remade) and len(world.computed) == 2   # rewritten whole


def test_measure_all_reads_what_the_cache_holds_and_sends_only_the_rest_to_workers(world, monkeypatch):
    first = world.lab()
    first.measure("probe", "paris")
    first.measure("probe", ORIGINAL)
    sent, lines = [], []

    def side_by_side(cfg, adapters, jobs, workers, done):
        for arm, what in jobs:
            sent.extend((w, arm) for w in what)
            done(arm, {w: (f"{w} of {arm}", 1.0) for w in what})

    monkeypatch.setattr(lab_module, "measure_side_by_side", side_by_side)
    monkeypatch.setenv(lab_module.EVAL_WORKERS, "2")
    lab = Lab(CFG, log=lines.append)
    lab.measure_all(["paris", "tokyo"], what=("probe", "mc"))
    assert sorted(sent) == sorted([("mc", "paris"), ("mc", ORIGINAL), ("probe", "tokyo"), ("mc", "tokyo")])
    assert lab.measured_from_cache == {("probe", "paris"), ("probe", ORIGINAL)}
    assert any("2 measurements of 2 models read from the measurement cache" in line for line in lines), lines

    sent.clear()                                   # everything cached: no worker started
    first.measure("mc", "paris")
    first.measure("mc", ORIGINAL)
    lab = world.lab()
    assert lab.measure_all(["paris"], what=("probe", "mc")) == 1 and sent == []


def test_an_evaluation_worker_measures_what_it_is_sent_without_reading_the_cache(world):
    import torch

    threads = torch.get_num_threads()
    try:
        lab_module._start_eval_worker(CFG, {}, threads)
    finally:
        torch.set_num_threads(threads)
    assert lab_module._WORKER_LAB.read_measurements is False
    assert world.lab().read_measurements and not world.lab(retrain=True).read_measurements


def test_the_code_hash_covers_every_measuring_module_its_data_and_the_library_versions(monkeypatch, tmp_path):
    package = tmp_path / "latent_city"
    shutil.copytree(measure_cache.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(measure_cache, "PACKAGE", package)
    code_hash = measure_cache.code_hash.__wrapped__        # unmemoized
    before = code_hash()
    assert code_hash() == before
    for changed in [f"{m}.py" for m in measure_cache.MODULES] + ["resources/capitals.csv"]:
        original = (package / changed).read_text()
        (package / changed).write_text(original + "\n# an edit\n")
        assert code_hash() != before, f"an edit of {changed} leaves the code hash as it was"
        (package / changed).write_text(original)
    assert code_hash() == before
    real = measure_cache.version
    for library in measure_cache.LIBRARIES:
        monkeypatch.setattr(measure_cache, "version", lambda p, other=library: "0.0" if p == other else real(p))
        assert code_hash() != before, f"another {library} leaves the code hash as it was"


def test_a_measurement_that_cannot_be_written_is_kept_and_said(world, monkeypatch):
    def full_disk(key, value):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(measure_cache, "put", full_disk)
    lab = world.lab()
    with pytest.warns(UserWarning, match="could not write measurement samples of paris.*No space left"):
        value = lab.measure("samples", "paris")
    assert lab.measure("samples", "paris") is value and len(world.computed) == 1
