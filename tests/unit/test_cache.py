"""The cache writes atomically and trusts only complete, unaltered entries."""

import os

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
    assert list(tmp_path.iterdir()) == []


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
