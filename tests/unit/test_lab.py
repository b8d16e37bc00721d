"""The lab never trains an adapter while the evaluation model is loaded (two bases in memory:
about 20 GB for the 8B model in 8-bit instead of 10), and says each arm's progress. Training
and loading are replaced by fakes that record what was in memory when they ran."""

from pathlib import Path

import pytest

from latent_city import cache, finetune
from latent_city import lab as lab_module
from latent_city.config import ExperimentConfig
from latent_city.lab import Lab


def fake_adapter(folder: Path, name: str, trained: bool = True) -> finetune.Adapter:
    """An adapter entry with nothing in it but its seal (the measurement cache hashes the seal)."""
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / name / cache.COMPLETE).write_text(f"sealed {name}")
    return finetune.Adapter(folder / name, f"key-{name}", {}, trained, 50.0, [], {})


@pytest.fixture
def fake_lab(monkeypatch, tmp_path):
    lab_box, events, cached = [], [], set()
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "cache"))     # the measurements go here, not the user's cache
    monkeypatch.setattr(lab_module, "weights_hash", lambda spec: "base-weights")

    def get_adapter(cfg, retrain=False):
        name = next(n for n, a in lab_box[0].arms.items() if a.cfg == cfg)
        trained = retrain or name not in cached
        events.append(("train" if trained else "read", name, lab_box[0].model is not None))
        cached.add(name)
        return fake_adapter(tmp_path / "adapters", name, trained)

    def load_finetuned(cfg, adapter, adapter_name):
        events.append(("load model", adapter_name, None))
        return FakeModel(), "tokenizer"

    monkeypatch.setattr(finetune, "get_adapter", get_adapter)
    monkeypatch.setattr(finetune, "load_finetuned", load_finetuned)
    monkeypatch.setattr(finetune, "is_cached",
                        lambda cfg: next(n for n, a in lab_box[0].arms.items() if a.cfg == cfg) in cached)
    monkeypatch.setenv(finetune.WORKERS, "1")          # one arm after another, in this process
    lines = []
    lab_box.append(Lab(ExperimentConfig.for_tier("cpu"), log=lines.append))
    return lab_box[0], events, lines


class FakeModel:
    def __init__(self):
        self.peft_config = {"paris": None}

    def load_adapter(self, path, adapter_name):
        self.peft_config[adapter_name] = None

    def eval(self):
        return self


def test_every_selected_arm_is_trained_before_the_evaluation_model_is_loaded(fake_lab):
    lab, events, lines = fake_lab
    lab.train_all(["tokyo-s43", "paris", "berlin"])
    lab._load("tokyo-s43")
    assert [e[:2] for e in events] == [("train", "paris"), ("train", "tokyo-s43"), ("train", "berlin"),
                                       ("load model", "paris", )]
    assert not any(loaded for what, _, loaded in events if what == "train")
    assert lines[1].startswith("latent_city: adapter 2/3 tokyo-s43: trained in 50 s"), lines


def test_with_workers_the_missing_arms_train_side_by_side_before_the_model_is_loaded(fake_lab, monkeypatch, tmp_path):
    lab, events, lines = fake_lab
    lab.adapter("berlin")                            # already trained: not sent to the workers
    sent = []

    def side_by_side(cfgs, workers, retrain=False, done=None):
        names = [next(n for n, a in lab.arms.items() if a.cfg == c) for c in cfgs]
        sent.append((names, workers))
        for i, name in reversed(list(enumerate(names))):      # finishing in any order
            events.append(("train", name, lab.model is not None))
            done(i, fake_adapter(tmp_path / "adapters", name))
        return []

    monkeypatch.setenv(finetune.WORKERS, "2")
    monkeypatch.setattr(finetune, "train_side_by_side", side_by_side)
    lab.train_all(["tokyo", "berlin", "shuffled"])
    assert sent == [(["paris", "tokyo", "shuffled"], 2)]
    assert not any(loaded for what, _, loaded in events if what == "train")
    assert all(lab.adapters[n].trained_now for n in ("paris", "tokyo", "shuffled"))
    assert any("trained in 50 s in a worker process" in line for line in lines), lines


def test_an_arm_trained_later_first_frees_the_evaluation_model(fake_lab):
    lab, events, _ = fake_lab
    lab.adapter("paris")
    lab._load("paris")
    lab.adapter("shuffled")          # not selected up front: trained, but not beside the model
    assert events[-1] == ("train", "shuffled", False) and lab.model is None
    assert lab._load("shuffled").peft_config.keys() == {"paris", "shuffled"}


def test_measure_all_sends_each_arm_and_measurement_once_and_keeps_the_results(fake_lab, monkeypatch):
    """Lab.measure_all hands every (arm, measurement) not yet made to the workers once, the original
    model as one more arm, stores what comes back, and later `measure` calls load no model."""
    from latent_city.arms import ORIGINAL
    from latent_city.lab import MEASUREMENTS

    lab, events, lines = fake_lab
    lab.train_all(["tokyo-s43"])
    lab._measured[("probe", "paris")] = "made before"
    sent = []

    def side_by_side(cfg, adapters, jobs, workers, done):
        assert cfg == lab.cfg and workers == 2 and set(adapters) == {"paris", "tokyo-s43"}
        for arm, what in jobs:
            sent.extend((w, arm) for w in what)
            done(arm, {w: (f"{w} of {arm}", 1.5) for w in what})

    monkeypatch.setattr(lab_module, "measure_side_by_side", side_by_side)
    monkeypatch.setenv(lab_module.EVAL_WORKERS, "2")
    assert lab.measure_all(["tokyo-s43", "paris", "tokyo-s43"]) == 2
    expected = {(w, a) for a in ("tokyo-s43", "paris", ORIGINAL) for w in MEASUREMENTS} - {("probe", "paris")}
    assert sorted(sent) == sorted(expected) and len(sent) == len(set(sent))
    monkeypatch.setattr(lab, "_load", lambda name: pytest.fail("measure loaded the model"))
    assert lab.measure("samples", ORIGINAL) == f"samples of {ORIGINAL}" and lab.measure("probe", "paris") == "made before"
    assert lab.measure_seconds[("mc", "tokyo-s43")] == 1.5
    assert not any(e[0] == "load model" for e in events)

    sent.clear()                                     # all made: nothing sent again
    assert lab.measure_all(["tokyo-s43"], what=("probe", "mc")) == 1 and sent == []
    with pytest.raises(ValueError, match="unknown measurement"):
        lab.measure_all(["paris"], what=("probes",))


def test_with_one_eval_worker_measure_all_does_nothing(fake_lab, monkeypatch):
    lab, events, lines = fake_lab
    monkeypatch.setattr(lab_module, "measure_side_by_side", lambda *a: pytest.fail("sent to workers"))
    monkeypatch.setenv(lab_module.EVAL_WORKERS, "1")
    monkeypatch.setenv(finetune.WORKERS, "2")       # the evaluation's own setting wins over the training's
    assert lab.measure_all(["paris"]) == 1 and lab._measured == {}
    monkeypatch.delenv(lab_module.EVAL_WORKERS)
    monkeypatch.setenv(finetune.WORKERS, "1")       # unset, the training's setting governs both
    assert lab_module.eval_workers(5) == 1
    monkeypatch.setenv(lab_module.EVAL_WORKERS, "none")
    with pytest.raises(Exception, match=lab_module.EVAL_WORKERS):
        lab_module.eval_workers(5)
