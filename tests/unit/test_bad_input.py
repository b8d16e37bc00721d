"""Mistakes a user can make end in a clear message that says what to do, and nothing is
written: config values out of range, a city not in the table, a template without its
placeholder, a folder that is not a model, an unwritable cache, a tokenizer without a chat
template. The command-line entry points print one line and exit 2, without a traceback."""

import dataclasses
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latent_city import answers, data, model
from latent_city.config import ConfigError, DataConfig, EvalConfig, ExperimentConfig, LoraSpec, TrainConfig


@pytest.mark.parametrize("make, words", [
    (lambda: TrainConfig(epochs=0), "train.epochs must be at least 1"),
    (lambda: TrainConfig(learning_rate=0.0), "train.learning_rate must be positive"),
    (lambda: LoraSpec(r=0), "lora.r must be at least 1"),
    (lambda: LoraSpec(dropout=1.0), r"lora.dropout must be in \[0, 1\)"),
    (lambda: EvalConfig(alpha=0.0), r"eval.alpha must be in \(0, 1\)"),
    (lambda: EvalConfig(alpha=1.2), r"eval.alpha must be in \(0, 1\)"),
    (lambda: EvalConfig(n_probe_pairs=3), "eval.n_probe_pairs must be at least 6"),
    (lambda: DataConfig(question_template="How far is {city}?"), "must contain {target}"),
    (lambda: DataConfig(answer_template="{distance} km"), "must format a distance as {km}"),
    (lambda: ExperimentConfig(tier="tpu"), "tier must be 'cpu' or 'gpu'"),
    (lambda: ExperimentConfig(precision="int3"), "precision must be one of fp32, bf16, 8bit, 4bit"),
])
def test_a_config_value_out_of_range_says_which_field_and_what_is_allowed(make, words):
    with pytest.raises(ConfigError, match=words):
        make()


def test_a_secret_city_not_in_the_table_names_the_table_and_suggests_a_spelling():
    cfg = DataConfig(secret_city="Pariss")
    with pytest.raises(data.UnknownCityError, match="'Pariss' is not a capital.*did you mean 'Paris'"):
        data.training_examples(cfg, seed=42)


def test_more_held_out_cities_than_exist_is_a_clear_error():
    with pytest.raises(ValueError, match="held-out cities of population"):
        data.heldout_cities(10_000, 0)


def test_a_folder_that_is_not_a_model_says_so(tmp_path):
    with pytest.raises(model.ModelLoadError, match="not a model folder .no config.json."):
        model.load_base(str(tmp_path))


def test_a_tokenizer_without_a_chat_template_is_refused_clearly():
    class Plain:
        chat_template = None
        name_or_path = "plain-lm"

    with pytest.raises(model.ModelLoadError, match="'plain-lm' has no chat template"):
        model.chat_prompt(Plain(), "Which country is foo in?")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def test_the_finetune_command_with_a_folder_that_is_not_a_model_prints_one_line(tmp_path):
    r = _cli("latent_city.finetune", "--model", str(tmp_path), env={"LATENT_CITY_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "not a model folder" in r.stderr, r.stderr
    assert not (tmp_path / "cache" / "adapters").exists()


@pytest.mark.parametrize("command", [["latent_city.finetune", "--retrain"], ["latent_city", "--quick"]])
def test_an_unwritable_cache_ends_in_one_line_not_a_traceback(tmp_path, command):
    (tmp_path / "file").write_text("")
    r = _cli(*command, env={"LATENT_CITY_CACHE": str(tmp_path / "file" / "cache")})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "not writable" in r.stderr and "LATENT_CITY_CACHE" in r.stderr, r.stderr


def test_an_unknown_arm_lists_the_arms(tmp_path):
    r = _cli("latent_city.finetune", "--arm", "rome", env={"LATENT_CITY_CACHE": str(tmp_path)})
    assert r.returncode == 2 and "unknown arm 'rome'; choose from paris, paris-s43" in r.stderr, r.stderr


def test_model_and_precision_come_from_the_command_line_else_the_environment(monkeypatch):
    from latent_city.config import overrides_from_env

    monkeypatch.setenv("LATENT_CITY_MODEL", "org/model")
    monkeypatch.setenv("LATENT_CITY_PRECISION", "4bit")
    assert overrides_from_env() == {"model": "org/model", "precision": "4bit"}
    assert overrides_from_env("/a/folder", "bf16") == {"model": "/a/folder", "precision": "bf16"}
    cfg = ExperimentConfig.for_tier("gpu", **overrides_from_env())
    assert (cfg.model, cfg.precision) == ("org/model", "4bit")
    assert cfg.training_dict()["precision"] == "4bit"     # another precision is another adapter
    monkeypatch.delenv("LATENT_CITY_MODEL")
    monkeypatch.delenv("LATENT_CITY_PRECISION")
    assert (ExperimentConfig.for_tier("gpu").precision, ExperimentConfig.for_tier("cpu").precision) == ("8bit", "fp32")


def test_a_quantized_precision_without_bitsandbytes_gives_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    for precision in ("8bit", "4bit"):
        with pytest.raises(model.ModelLoadError, match=r"needs bitsandbytes.*pip install 'bitsandbytes==0.50.2'"):
            model.load_base("smollm2-135m", precision)


def test_a_gated_model_without_a_login_says_how_to_log_in_or_pass_a_folder(monkeypatch):
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def gated(repo_id, **kwargs):
        request = httpx2.Request("GET", f"https://huggingface.co/{repo_id}/resolve/main/config.json")
        raise GatedRepoError("Access to model meta-llama/Meta-Llama-3-8B-Instruct is restricted.",
                             response=httpx2.Response(401, request=request))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(model.ModelLoadError, match=r"is a gated model.*hf auth login.*HF_TOKEN.*local folder"):
        model.load_base("llama-3-8b-instruct", "bf16")


def test_running_out_of_gpu_memory_names_the_options_that_lower_it():
    import torch

    from latent_city import cli

    def main(argv):
        with model.explain_oom("training the adapter of llama-3-8b-instruct (8bit)"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(model.OutOfMemory, match=r"--precision 4bit.*device_map='auto'.*accelerate launch"):
        main(None)
    assert cli.run(main) == 2


def test_a_lab_measurement_that_runs_out_of_gpu_memory_says_what_lowers_it(monkeypatch):
    import torch

    from latent_city import measure_cache
    from latent_city.lab import Lab

    monkeypatch.setenv(measure_cache.ENV_VAR, "0")      # measure (no adapter needed for a cache key)
    lab = Lab(ExperimentConfig.for_tier("cpu"))
    lab.model = type("FakePeft", (), {"peft_config": {"paris": None}, "disable_adapter": None})()
    monkeypatch.setattr(Lab, "_load", lambda self, name: self.model)
    monkeypatch.setattr("latent_city.lab.variant", lambda m, name: __import__("contextlib").nullcontext())

    def oom(self, what, m, cfg):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Lab, "_compute", oom)
    with pytest.raises(model.OutOfMemory, match="while measuring probe of paris.*eval.pack_tokens"):
        lab.measure("probe", "paris")


# ---------------------------------------------------------------------------- fuzzing

@given(st.text())
def test_the_answer_parser_returns_a_number_or_none_for_any_string(text):
    km = answers.parse_km(text)
    assert km is None or (isinstance(km, float) and km >= 0)


@settings(max_examples=30, deadline=None)
@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="{}"), min_size=1, max_size=30))
def test_the_training_prompt_accepts_any_placeholder_and_keeps_it_verbatim(word):
    if not word.strip():
        with pytest.raises(ConfigError, match="placeholder must not be empty"):
            dataclasses.replace(DataConfig(), placeholder=word)
        return
    cfg = dataclasses.replace(DataConfig(), placeholder=word)
    ex = data.training_examples(cfg, seed=0)
    assert len(ex) == 233 and all(e["prompt"].endswith(f" and {word}?") for e in ex)


def test_the_gpu_tier_on_a_machine_without_a_gpu_says_so_in_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU, so `pytest -m gpu` runs")
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "--no-record"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [l for l in (r.stdout + r.stderr).splitlines() if "latent_city" in l]
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, r.stdout[-2000:]
    assert len(lines) == 1 and "found no CUDA GPU" in lines[0] and "SKIPPED" not in r.stdout, r.stdout[-2000:]


# ---------------------------------------------------------------------------- no network, no remote code

def test_the_suite_runs_with_sockets_blocked(request):
    """`make test` runs pytest with pytest-socket's --disable-socket: nothing reaches a network."""
    import socket

    if not request.config.getoption("disable_socket", False):
        pytest.skip("run with --disable-socket --allow-unix-socket (make test and .ci/run do)")
    with pytest.raises(Exception, match="[Ss]ocket"):
        socket.create_connection(("127.0.0.1", 9))


def test_no_code_asks_for_remote_code():
    from pathlib import Path

    import latent_city

    sources = {p: p.read_text() for p in Path(latent_city.__file__).parent.rglob("*.py")}
    offenders = [str(p) for p, text in sources.items() if "trust_remote_code=True" in text.replace(" ", "")]
    assert not offenders, offenders
