"""The on-disk cache: where dequantized base models and trained adapters live, keyed by content.

One root, `$LATENT_CITY_CACHE` or else `~/.cache/latent_city`. Every entry is a folder built
in a temporary sibling and renamed into place only when complete, with a `COMPLETE` file
listing the sha256 of every file in it; an entry whose files do not match is rebuilt, never
loaded. So a crash or a full disk mid-write leaves nothing that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
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


def build_atomically(target: Path, build, force: bool = False) -> Path:
    """Run build(tmp_folder), seal it with a manifest, rename it to `target`.

    A complete `target` is kept unless `force`. An existing entry is replaced only once the
    new one is sealed, and the temporary folder is removed if build fails, so nothing
    half-written is left behind and a failed rebuild keeps the old entry.
    """
    if not force and is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
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
    return target


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
