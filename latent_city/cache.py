"""The on-disk cache: where dequantized base models and trained adapters live, keyed by content.

One root, `$LATENT_CITY_CACHE` or else `~/.cache/latent_city`. Every entry is a folder built
in a temporary sibling and renamed into place only when complete, with a `COMPLETE` file
listing the sha256 of every file in it; an entry whose files do not match is rebuilt, never
loaded. So a crash or a full disk mid-write leaves nothing that a later run would trust. A
file lock beside each entry lets one process build it while others wait and then read it;
the partial folder of a killed build is removed by the next build of that entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

ENV_VAR = "LATENT_CITY_CACHE"
COMPLETE = "COMPLETE"


class CacheError(RuntimeError):
    pass


def root() -> Path:
    path = Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "latent_city").expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-")
        probe.close()
    except OSError as e:
        raise CacheError(f"cache directory {path} is not writable ({e.strerror}); "
                         f"set {ENV_VAR} to a writable folder") from e
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _manifest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != COMPLETE}


def is_complete(folder: Path) -> bool:
    """True only if the entry was finished and no file in it changed since."""
    marker = folder / COMPLETE
    if not marker.exists():
        return False
    try:
        return json.loads(marker.read_text()) == _manifest(folder)
    except (OSError, ValueError):
        return False


def _lock(target: Path, waiting_message: str):
    """An inter-process lock for building `target` (the `filelock` package); says so while it waits."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(target.parent / f".{target.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(waiting_message, flush=True)
        lock.acquire()
    return lock


def _remove_stale_partials(target: Path) -> None:
    """Partial folders of `target` left by a run that died (killed, power cut). Only called with
    the lock held, so no living process is building into them."""
    for stale in target.parent.glob(f".{target.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)


def build_atomically(target: Path, build, force: bool = False, what: str | None = None) -> Path:
    """Run build(tmp_folder), seal it with a manifest, rename it to `target`.

    One process builds at a time (a file lock beside the entry; another process waits, then
    finds the entry complete and uses it). A complete `target` is kept unless `force`; an
    entry that is not complete or whose files changed is rebuilt, with a warning. An existing
    entry is replaced only once the new one is sealed; a failed build leaves nothing behind.
    """
    if not force and is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock(target, f"latent_city: another process is building {what or target.name}; waiting for it")
    try:
        if not force and is_complete(target):          # built by the process we waited for
            return target
        _remove_stale_partials(target)
        if target.exists() and not force:
            warnings.warn(f"latent_city: cache entry {target} is incomplete or was altered "
                          f"({damage(target)}); rebuilding it", stacklevel=2)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
        try:
            build(tmp)
            (tmp / COMPLETE).write_text(json.dumps(_manifest(tmp), indent=1))
            if target.exists():
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        lock.release()
    return target


def damage(folder: Path) -> str:
    """What is wrong with an entry, in a few words (for the rebuild warning)."""
    marker = folder / COMPLETE
    if not marker.exists():
        return "never sealed: its build did not finish"
    try:
        sealed = json.loads(marker.read_text())
    except (OSError, ValueError):
        return "unreadable manifest"
    now = _manifest(folder)
    missing = sorted(set(sealed) - set(now))
    changed = sorted(f for f in set(sealed) & set(now) if sealed[f] != now[f])
    extra = sorted(set(now) - set(sealed))
    parts = [f"{label}: {', '.join(names[:3])}" for label, names in
             (("missing", missing), ("changed", changed), ("unexpected", extra)) if names]
    return "; ".join(parts) or "unchanged"


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
