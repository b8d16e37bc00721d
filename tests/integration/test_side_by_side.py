"""Arms trained side by side in worker processes (finetune.train_side_by_side, which the lab
uses on a CPU) land in the cache under the keys a lone training writes, each trained with its
share of the threads, and a lab that comes after them trains nothing.

The arms are the CPU tier's, trained for 2 steps (train.max_steps): the test is about
processes and the cache, not about what the adapters learn.
"""

import dataclasses

import pytest

from latent_city import finetune
from latent_city.config import run_config
from latent_city.lab import Lab

pytestmark = pytest.mark.paths


def test_two_workers_train_two_arms_and_a_later_lab_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_CITY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(finetune.WORKERS, "2")
    cfg = run_config("cpu")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=2))
    lines = []
    lab = Lab(cfg, log=lines.append)
    assert lab.needs_training(["paris", "tokyo"]) == ["paris", "tokyo"]
    lab.train_all(["tokyo"])
    assert any("2 at a time in separate processes" in line for line in lines), lines
    for name in ("paris", "tokyo"):
        ad = lab.adapters[name]
        assert ad.trained_now and ad.meta["threads"] == 1, (name, ad.meta)
        assert ad.key == finetune.adapter_key(lab.arms[name].cfg) and finetune.is_cached(lab.arms[name].cfg)

    later, said = Lab(cfg, log=lines.append), len(lines)
    assert later.needs_training(["paris", "tokyo"]) == []
    later.train_all(["tokyo"])
    assert all("loaded from the cache" in line for line in lines[said:]), lines[said:]
    assert {n: a.key for n, a in later.adapters.items()} == {n: a.key for n, a in lab.adapters.items()}


def test_the_number_of_workers_is_checked_and_never_exceeds_the_arms(monkeypatch):
    from latent_city.config import ConfigError

    monkeypatch.setenv(finetune.WORKERS, "4")
    assert finetune.train_workers(3) == 3 and finetune.train_workers(0) == 1
    monkeypatch.setenv(finetune.WORKERS, "two")
    with pytest.raises(ConfigError, match="number of processes"):
        finetune.train_workers(3)
