"""benchmarks/gpu_smoke.py runs only on a GPU (or with --cpu); here: it imports, parses its
arguments, and without CUDA says so in one line instead of failing half-way."""

import pytest
import torch

from benchmarks import gpu_smoke


def test_the_smoke_script_parses_its_arguments():
    a = gpu_smoke.parse_args(["--model", "smollm2-135m", "--steps", "2", "--precisions", "8bit", "bf16", "--skip-suite"])
    assert (a.model, a.steps, a.precisions, a.skip_suite, a.cpu) == ("smollm2-135m", 2, ["8bit", "bf16"], True, False)
    assert gpu_smoke.parse_args([]).precisions == ["8bit", "4bit", "bf16"]
    with pytest.raises(SystemExit):
        gpu_smoke.parse_args(["--steps", "0"])


def test_without_cuda_the_smoke_script_stops_with_one_line(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the script would run its checks")
    assert gpu_smoke.main(["--out", str(tmp_path)]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA GPU" in out[0] and not list(tmp_path.iterdir()), out
