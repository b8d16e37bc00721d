"""The cache writes atomically and trusts only complete, unaltered entries."""

import os
import shutil

import pytest

from latent_city import cache


def test_an_entry_is_complete_only_when_sealed_and_unaltered(tmp_path):
    target = tmp_path / "entry"
    cache.build_atomically(target, lambda tmp: (tmp / "w.bin").write_bytes(b"12345"))
    assert cache.is_complete(target)
    (target / "w.bin").write_bytes(b"123")
    assert not cache.is_complete(target)


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def build(tmp):
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        cache.build_atomically(tmp_path / "entry", build)
    # only the (empty) lock file stays: no entry, no partial folder
    assert [p.name for p in tmp_path.iterdir()] == [".entry.lock"]


def test_an_unwritable_cache_dir_is_a_clear_error(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    monkeypatch.setenv(cache.ENV_VAR, str(ro / "sub"))
    if os.access(ro, os.W_OK):  # root ignores permission bits; use a path under a file instead
        (tmp_path / "file").write_text("")
        monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "file" / "sub"))
    with pytest.raises(cache.CacheError, match=f"not writable.*{cache.ENV_VAR}"):
        cache.root()


def test_a_forced_rebuild_that_fails_keeps_the_old_entry(tmp_path):
    target = tmp_path / "entry"
    cache.build_atomically(target, lambda tmp: (tmp / "w.bin").write_bytes(b"old"))

    def failing(tmp):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.build_atomically(target, failing, force=True)
    assert cache.is_complete(target) and (target / "w.bin").read_bytes() == b"old"
    cache.build_atomically(target, lambda tmp: (tmp / "w.bin").write_bytes(b"new"), force=True)
    assert (target / "w.bin").read_bytes() == b"new"


# ---------------------------------------------------------------------------- processes

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402

BUILDER = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from latent_city import cache
    # as in a terminal: a process started in the background by a shell ignores SIGINT, and Python
    # then installs no handler, so Ctrl-C is restored here for the test's SIGINT to mean Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)
    target, log = Path(sys.argv[1]), Path(sys.argv[2])
    def build(tmp):
        with open(log, "a") as f:
            f.write("built\\n")
        (tmp / "started").write_text("x")
        deadline = time.time() + 60
        while not (target.parent / "go").exists() and time.time() < deadline:
            time.sleep(0.05)          # until the test says go: the build takes as long as the test needs
        (tmp / "w.bin").write_bytes(b"weights")
    cache.build_atomically(target, build, what="the test entry")
    print("done", (target / "w.bin").read_bytes().decode(), flush=True)
""")


def _builder(tmp_path):
    return subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path / "entry"), str(tmp_path / "log")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(condition, timeout=60):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_two_processes_that_need_the_same_entry_build_it_once(tmp_path):
    """The first builds; the second says it waits (seen before the first may finish), then
    reads the first one's entry."""
    first = _builder(tmp_path)
    _wait_for(lambda: list(tmp_path.glob(".entry.partial-*/started")))
    second = _builder(tmp_path)
    line = second.stdout.readline()               # blocks until the second process says something
    assert "another process is building the test entry; waiting" in line, line
    (tmp_path / "go").write_text("")
    out1, out2 = first.communicate(timeout=60)[0], second.communicate(timeout=60)[0]
    assert "done weights" in out1 and "done weights" in out2, (out1, out2)
    assert (tmp_path / "log").read_text().count("built") == 1
    assert cache.is_complete(tmp_path / "entry") and not list(tmp_path.glob(".entry.partial-*"))


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_a_build_killed_halfway_leaves_nothing_that_is_loaded_and_no_partial_folders(tmp_path, sig):
    import signal

    proc = _builder(tmp_path)
    _wait_for(lambda: list(tmp_path.glob(".entry.partial-*/started")))
    proc.send_signal(getattr(signal, sig))
    proc.wait(timeout=30)
    assert not cache.is_complete(tmp_path / "entry")
    (tmp_path / "go").write_text("")
    again = _builder(tmp_path)
    assert "done weights" in again.communicate(timeout=60)[0]
    assert cache.is_complete(tmp_path / "entry")
    assert not list(tmp_path.glob(".entry.partial-*")), "a partial folder of the killed build is left"


# ---------------------------------------------------------------------------- damage

def _entry(tmp_path):
    target = tmp_path / "entry"
    cache.build_atomically(target, lambda tmp: ((tmp / "w.bin").write_bytes(b"12345678"),
                                                (tmp / "config.json").write_text("{}")))
    return target


def _flip(target):
    data = bytearray((target / "w.bin").read_bytes())
    data[3] ^= 0xFF
    (target / "w.bin").write_bytes(bytes(data))


@pytest.mark.parametrize("damage, words", [
    (lambda t: (t / "config.json").unlink(), "missing: config.json"),
    (_flip, "changed: w.bin"),
    (lambda t: (t / "extra.bin").write_bytes(b"?"), "unexpected: extra.bin"),
    (lambda t: (t / cache.COMPLETE).unlink(), "never sealed"),
    (lambda t: (t / cache.COMPLETE).write_text("{not json"), "unreadable manifest"),
])
def test_a_damaged_entry_is_rebuilt_with_a_warning_that_says_what_is_wrong(tmp_path, damage, words):
    target = _entry(tmp_path)
    damage(target)
    assert not cache.is_complete(target)
    with pytest.warns(UserWarning, match=words):
        cache.build_atomically(target, lambda tmp: (tmp / "w.bin").write_bytes(b"rebuilt"))
    assert cache.is_complete(target) and (target / "w.bin").read_bytes() == b"rebuilt"


def test_an_adapter_entry_of_another_format_version_is_rebuilt_with_a_warning_never_loaded(tmp_path, monkeypatch):
    """Two ways an older entry can meet this version: under its own key (ENTRY_FORMAT is
    hashed into the key, so it is simply never looked up) or copied under the current key
    (its meta says its format: it is rebuilt, with a warning)."""
    import json

    from latent_city import finetune
    from latent_city.config import ExperimentConfig

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    cfg = ExperimentConfig.for_tier("cpu")
    trained = []

    def fake_train(c, out, fmt=finetune.ENTRY_FORMAT):
        trained.append(fmt)
        for name in ("training_log.json", "config.json"):
            (out / name).write_text("[]")
        (out / "meta.json").write_text(json.dumps({"train_seconds": 1.0, "entry_format": fmt}))

    older = finetune.ENTRY_FORMAT - 1
    monkeypatch.setattr(finetune, "_train", lambda c, out: fake_train(c, out, fmt=older))
    monkeypatch.setattr(finetune, "ENTRY_FORMAT", older)
    old = finetune.get_adapter(cfg)
    monkeypatch.undo()
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(finetune, "_train", fake_train)
    new = finetune.get_adapter(cfg)
    assert new.path != old.path and new.trained_now and cache.is_complete(old.path)

    # the old entry copied under the current key, sealed as if it belonged there
    shutil.rmtree(new.path)
    shutil.copytree(old.path, new.path)
    trained.clear()
    with pytest.warns(UserWarning, match=f"entry format {older}, this version reads"):
        again = finetune.get_adapter(cfg)
    assert trained == [finetune.ENTRY_FORMAT] and again.meta["entry_format"] == finetune.ENTRY_FORMAT
