"""The measurement cache: every measurement of a run (the probe's similarities, the distance
answers, the country scores, ...) kept on disk and keyed by content, like the adapters, so a
warm rerun reads what it measured before instead of loading the model to measure it again.

One file per measurement under `cache.root() / "measurements"`, named by a key that hashes
- the variant measured (Lab.variant_key): an adapter's key (its config, training data, base
  weights and library versions) and the hash of its sealed files, so a retrained adapter is
  measured again; for the original model the base weights' hash; the precision; and the hash of
  the evaluation config (cfg.eval_hash(): eval settings, evaluation seeds, the other arms' cities);
- the measurement's name;
- the code (code_hash): the whole source of every module that measures or builds what is
  measured, the data files they read, and the versions of torch, transformers, peft and numpy.
  Whole files, not a version number to bump or a list of the functions involved: a stale
  measurement must never be read, and no one can be trusted to bump a number or to know which
  edit changes which number. Hashing whole files errs only one way: any edit (a comment
  included) measures every arm again, which costs minutes, never a wrong number;
- the machine (machine): torch's CPU capability (AMX, AVX512, AVX2 kernels round floats
  differently) and the CUDA devices, so a measurement is read only where it was made. The
  number of threads is left out: measurements made with 1 and 2 threads are bit-identical
  (reports/benchmarks/eval.md).

A file is a pickle (numpy arrays, lists of str, the probe's dataclass) behind one line with its
sha256, written to a temporary sibling and renamed into place; a file whose sha256 does not match
(a torn copy, a flipped bit) or that does not unpickle is measured again and overwritten, never
read. No lock: a measurement is a function of its key, so two processes that make the same one
write the same thing and the last rename wins. Pickles run code when read: this folder is trusted
as the adapters beside it are, so do not fill it from a source you would not run.

LATENT_CITY_MEASURE_CACHE=0 turns reading off (everything is measured again); what is measured is
still written, replacing the old entry, so the cache holds the newest measurement. `pytest
--retrain` (Lab(retrain=True)) does the same.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path

from . import cache
from .config import stable_hash

ENV_VAR = "LATENT_CITY_MEASURE_CACHE"
FOLDER = "measurements"
PACKAGE = Path(__file__).parent
# every module whose code decides a measurement's value, this one included (it decides the format)
MODULES = ("answers", "probe", "batching", "model", "data", "finetune", "config", "arms", "lab", "measure_cache", "steer")
LIBRARIES = ("torch", "transformers", "peft", "numpy")
HEADER = b"latent_city measurement sha256 "


def reading() -> bool:
    """Whether measurements are read from the cache (LATENT_CITY_MEASURE_CACHE unset or not 0)."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=None)
def code_hash() -> str:
    """A hash of the measuring code: the sources of MODULES, the package's data files, the versions."""
    files = [PACKAGE / f"{m}.py" for m in MODULES] + sorted(p for p in (PACKAGE / "resources").rglob("*") if p.is_file())
    # the installed versions, read without importing (a warm run that only reads need not import transformers)
    return stable_hash({"files": {str(p.relative_to(PACKAGE)): cache.sha256_file(p) for p in files},
                        "versions": [version(p) for p in LIBRARIES]})


@functools.lru_cache(maxsize=None)
def machine() -> dict:
    """What of the machine changes a measurement's floats: the CPU kernels torch uses, the GPUs."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"cpu": torch.backends.cpu.get_cpu_capability(), "cuda": gpus}


def key(variant: dict, what: str) -> str:
    """The key of measurement `what` of the model `variant` (Lab.variant_key) made by this code here."""
    return stable_hash({"variant": variant, "what": what, "code": code_hash(), "machine": machine()})


def folder() -> Path:
    return cache.root() / FOLDER


def path(key: str) -> Path:
    return folder() / f"{key}.pkl"


def get(key: str):
    """The measurement stored under `key`, or None if there is none or it is damaged (with a warning)."""
    p = path(key)
    try:
        blob = p.read_bytes()
    except FileNotFoundError:
        return None
    head, _, payload = blob.partition(b"\n")
    if head != HEADER + hashlib.sha256(payload).hexdigest().encode():
        warnings.warn(f"latent_city: measurement {p} is damaged (its sha256 does not match); measuring again", stacklevel=2)
        return None
    try:
        return pickle.loads(payload)
    except Exception as e:       # sealed but unreadable here (e.g. written by another numpy): measure again
        warnings.warn(f"latent_city: measurement {p} does not unpickle ({e!r}); measuring again", stacklevel=2)
        return None


def put(key: str, value) -> Path:
    """Store `value` under `key`, atomically (a reader sees the old file or the new one, whole)."""
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    p = path(key)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
