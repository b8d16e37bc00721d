"""Crossing devices: what a CUDA run needs, checked here without one.

On a GPU, `.numpy()` of a CUDA tensor raises, a CPU tensor fed to a CUDA model raises, and with
device_map="auto" over several GPUs each layer's hidden states and cache sit on that layer's
device. The first two are read from the source (every `.numpy()` follows a `.cpu()`; every
tensor a model is called with was moved to a device); the third is run with the `meta` device
standing in for a second GPU (torch refuses to stack tensors from two devices, as on CUDA).
"""

import ast
from pathlib import Path

import torch

from latent_city.batching import gather_rows

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("latent_city", "tests", "benchmarks") for p in (REPO / d).rglob("*.py"))
MODEL_NAMES = {"m", "model", "peft_model", "base_model", "tiny", "tiny_llama"}       # how the code names a model it calls
TENSOR_KEYWORDS = {"input_ids", "position_ids", "attention_mask", "labels"}
ON_CPU_BY_CONSTRUCTION = "# cpu model"     # a comment on the line of a call to a model built on the CPU


def _calls_in(expr) -> set[str]:
    """Names of the functions and methods called anywhere in an expression."""
    return {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
            for n in ast.walk(expr) if isinstance(n, ast.Call)}


def _numpy_without_cpu(tree) -> list[int]:
    """Lines of `.numpy()` calls on an expression that brings nothing to the CPU (`.cpu()`, or
    `gather_rows`, which returns CPU tensors)."""
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "numpy"
            and not {"cpu", "gather_rows"} & _calls_in(node.func.value)]


def _placed(expr, assigned: dict) -> bool:
    """Whether a tensor expression was put on a device: `.to(...)` in its chain or a `device=`
    keyword in it, directly or in the last assignment of the name it is."""
    if isinstance(expr, ast.Name):
        return expr.id not in assigned or _placed(assigned[expr.id], {})
    for node in ast.walk(expr):
        if isinstance(node, ast.Call) and (any(k.arg == "device" for k in node.keywords)
                                           or (isinstance(node.func, ast.Attribute) and node.func.attr == "to")):
            return True
    return not any(isinstance(n, ast.Call) for n in ast.walk(expr))     # a plain name/constant: not a new tensor


def _unplaced_model_inputs(tree, lines: list[str]) -> list[int]:
    bad = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        assigned = {t.id: node.value for node in ast.walk(fn) if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)}
        for call in ast.walk(fn):
            if not isinstance(call, ast.Call) or ON_CPU_BY_CONSTRUCTION in lines[call.lineno - 1]:
                continue
            f = call.func
            to_model = (isinstance(f, ast.Name) and f.id in MODEL_NAMES) or (isinstance(f, ast.Attribute) and f.attr == "generate")
            args = [k.value for k in call.keywords if k.arg in TENSOR_KEYWORDS]
            if to_model:
                args += call.args[:1]
            if (to_model or args) and not all(_placed(a, assigned) for a in args):
                bad.append(call.lineno)
    return bad


def test_every_tensor_crosses_devices_explicitly():
    """In the library, the tests and the benchmarks: `.numpy()` only after `.cpu()` (a CUDA tensor
    has no numpy view), and every tensor a model is called with built on a device or moved with
    `.to(...)` (a CPU tensor fed to a CUDA model raises). Every violation is listed."""
    found = []
    for path in SOURCES:
        text = path.read_text()
        tree = ast.parse(text)
        where = path.relative_to(REPO)
        found += [f"{where}:{n}: .numpy() without .cpu()" for n in _numpy_without_cpu(tree)]
        found += [f"{where}:{n}: a model called with a tensor not moved to a device"
                  for n in _unplaced_model_inputs(tree, text.splitlines())]
    assert not found, "\n".join(found)


def test_the_lint_finds_what_it_looks_for():
    """The checks above can fail: each flags the line that a CUDA run would crash on."""
    code = ("def f(model, tok, x):\n"
            "    a = x.detach().numpy()\n"
            "    b = x.detach().cpu().numpy()\n"
            "    ids = tok('q', return_tensors='pt').input_ids\n"
            "    model(ids)\n"
            "    model(input_ids=torch.tensor([[1]]))\n"
            "    model(input_ids=torch.tensor([[1]], device=model.device))\n"
            "    model(ids.to(model.device))\n")
    tree = ast.parse(code)
    assert _numpy_without_cpu(tree) == [2]
    assert _unplaced_model_inputs(tree, code.splitlines()) == [5, 6]


def test_layer_results_from_two_devices_are_gathered_on_one():
    """Layers on two devices (CPU and `meta`, standing in for two GPUs): the index is built on
    each layer's device and each layer's rows moved to the target before stacking."""
    layers = [torch.randn(1, 5, 3), torch.empty(1, 5, 3, device="meta")]
    out = gather_rows(layers, [1, 4], lambda layer, at: layer[0, at], to="meta")
    assert out.shape == (2, 2, 3) and out.device.type == "meta"
    on_cpu = gather_rows([torch.arange(10.).reshape(1, 5, 2)] * 2, [4, 0], lambda layer, at: layer[0, at])
    assert on_cpu.device.type == "cpu" and on_cpu[:, 0].tolist() == [[8.0, 9.0], [0.0, 1.0]]
