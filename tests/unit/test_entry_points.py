"""Every entry point with a bad argument or variable: one line, exit status 2, nothing written.

A property-based test feeds `python -m latent_city`, `python -m latent_city.finetune` and
`pytest` random and hostile models, precisions, tiers, arms and cache folders (paths with
spaces and non-ASCII, files instead of folders, unreadable and empty folders, empty strings,
unknown hub ids) and checks that each run exits 0 or 2, says so in at most a few lines with no
traceback, and leaves every file under reports/ and in the cache byte-for-byte as it was.
Runs that would do real work are asked for their check instead (`--check`, `--collect-only`)."""

import hashlib
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from latent_city import cli
from latent_city.arms import arms
from latent_city.config import ExperimentConfig

REPO = Path(__file__).resolve().parents[2]
ARMS = list(arms(ExperimentConfig.for_tier("cpu")))
MAX_ERROR_LINES = 3        # the message, and for make or argparse their own line (usage / "Error 2")


def _snapshot(*folders: Path) -> dict[str, str]:
    """Every file under the folders with the sha256 of its bytes."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders if folder.exists() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Hostile paths, made once: a folder named with a space and non-ASCII, an empty folder, a
    file, an unreadable folder, a folder whose config.json is not a model's; and a cache with an
    entry in it (to show it is left as it was)."""
    root = tmp_path_factory.mktemp("hostile")
    spaced = root / "a folder ü 模型"
    spaced.mkdir()
    (root / "empty").mkdir()
    (root / "file.safetensors").write_bytes(b"not weights")
    locked = root / "unreadable"
    locked.mkdir()
    locked.chmod(0)
    cache = root / "cache"
    (cache / "adapters" / "smollm2-135m-0000000000000000").mkdir(parents=True)
    (cache / "adapters" / "smollm2-135m-0000000000000000" / "COMPLETE").write_text("{}")
    (cache / "weights-hashes.json").write_text("{}")
    yield {"paths": [str(spaced), str(root / "empty"), str(root / "file.safetensors"), str(locked),
                     str(root / "does not exist ✗")],
           "cache": cache, "file": str(root / "file.safetensors")}
    locked.chmod(0o755)



def _text(max_size):      # any text a shell can pass (no NUL, no lone surrogate)
    return st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=max_size)


MODELS = st.one_of(st.sampled_from(["smollm2-135m", "", " ", "org/does-not-exist", "llama", "a/b/c", "-", "--model"]),
                   _text(24))
PRECISIONS = st.one_of(st.sampled_from(["fp32", "8bit", "int3", "", "FP32"]), _text(8))
TIERS = st.one_of(st.sampled_from(["cpu", "gpu", "tpu", ""]), _text(6))
ARM_NAMES = st.one_of(st.sampled_from(ARMS + ["rome", "", "paris-s99", "PARIS"]), _text(12))


@contextmanager
def _environ(env: dict):
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _passes_preflight(tier: str, model, precision, env: dict) -> bool:
    with _environ(env):
        try:
            cli.preflight(tier, model, precision)
        except cli.user_errors():
            return False
    return True


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=REPO, stdin=subprocess.DEVNULL,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **env})


def _assert_one_line_or_success(r: subprocess.CompletedProcess, what: str):
    assert r.returncode in (0, 2), f"{what}: exit {r.returncode}\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}"
    assert "Traceback" not in r.stdout + r.stderr, f"{what}:\n{r.stderr[-3000:]}"
    if r.returncode == 2:
        lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
        assert 1 <= len(lines) <= MAX_ERROR_LINES, f"{what}: {len(lines)} lines:\n" + "\n".join(lines[:20])


def _choose(data, places, strategy):
    """A value from `strategy`, or one of the hostile paths."""
    return data.draw(st.one_of(strategy, st.sampled_from(places["paths"])))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_experiment_command_with_any_arguments_exits_0_or_2_in_a_line_and_writes_nothing(places, data):
    model = data.draw(st.one_of(st.none(), MODELS, st.sampled_from(places["paths"])))
    precision = data.draw(st.one_of(st.none(), PRECISIONS))
    tier = data.draw(TIERS)
    via_env = data.draw(st.booleans())
    cache = data.draw(st.sampled_from([str(places["cache"]), places["file"] + "/cache"]))
    env = {"LATENT_CITY_CACHE": cache, "LATENT_CITY_MODEL": "", "LATENT_CITY_PRECISION": ""}
    args = ["--tier", tier]
    if via_env:
        env.update({"LATENT_CITY_MODEL": model or "", "LATENT_CITY_PRECISION": precision or ""})
    else:
        args += (["--model", model] if model is not None else []) + (["--precision", precision] if precision else [])
    valid = (tier in ("cpu", "gpu") and (precision in (None, "") or precision in ("fp32", "bf16", "8bit", "4bit"))
             and (via_env or model is None or model.strip()) and _passes_preflight(
                 tier, None if via_env else model, None if via_env else precision, env))
    before = _snapshot(REPO / "reports", places["cache"])
    r = _run([sys.executable, "-m", "latent_city", *args, *(["--check"] if valid else [])], env)
    _assert_one_line_or_success(r, f"python -m latent_city {args} {env}")
    assert r.returncode == (0 if valid else 2), r.stderr
    assert _snapshot(REPO / "reports", places["cache"]) == before


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_finetune_command_with_a_bad_arm_or_model_exits_2_in_a_line_and_writes_nothing(places, data):
    arm, model = data.draw(ARM_NAMES), _choose(data, places, MODELS)
    env = {"LATENT_CITY_CACHE": str(places["cache"])}
    assume(not (arm in ARMS and _passes_preflight("cpu", model, None, env)))    # a valid pair would train
    before = _snapshot(REPO / "reports", places["cache"])
    r = _run([sys.executable, "-m", "latent_city.finetune", "--arm", arm, "--model", model], env)
    _assert_one_line_or_success(r, f"finetune --arm {arm!r} --model {model!r}")
    assert r.returncode == 2
    assert _snapshot(REPO / "reports", places["cache"]) == before


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_pytest_with_any_model_variable_stops_before_collecting_or_collects_and_writes_nothing(places, data):
    model = _choose(data, places, MODELS)
    precision = data.draw(st.sampled_from(["", "fp32", "int3", "8bit"]))
    env = {"LATENT_CITY_CACHE": str(places["cache"]), "LATENT_CITY_MODEL": model, "LATENT_CITY_PRECISION": precision}
    before = _snapshot(REPO / "reports", places["cache"])
    # --collect-only: a value that passes the check would otherwise run the whole suite
    r = _run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/unit/test_data.py"], env)
    _assert_one_line_or_success(r, f"pytest with {env}")
    assert r.returncode == (0 if _passes_preflight("cpu", None, None, env) else 2), r.stderr
    assert _snapshot(REPO / "reports", places["cache"]) == before


def test_make_experiment_with_a_bad_model_variable_ends_in_one_line(places):
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("make uses the repository's .venv (make install)")
    before = _snapshot(REPO / "reports", places["cache"])
    r = _run(["make", "-s", "-o", ".venv/.installed", "experiment"], {"LATENT_CITY_MODEL": places["paths"][1], "LATENT_CITY_CACHE": str(places["cache"])})
    assert r.returncode == 2 and "not a model folder" in r.stderr, r.stderr
    _assert_one_line_or_success(r, "make experiment")
    assert _snapshot(REPO / "reports", places["cache"]) == before


# ---------------------------------------------------------------------------- the record of a run

def _pytest_in_repo(*args, env=None):
    return _run([sys.executable, "-m", "pytest", "--rootdir", str(REPO), "-c", str(REPO / "pytest.ini"),
                 "-p", "no:cacheprovider", "-q", *args], env or {})


def test_a_run_that_stops_before_its_claims_keeps_latest_and_names_its_record_incomplete(tmp_path):
    """-x stops the run at a failure before the selected claim test runs: its record is written
    as <stem>.incomplete.html/.json/.tidy.parquet, latest-cpu.* stays as it was, and the run says where."""
    (tmp_path / "test_stop_first.py").write_text("def test_stops_here():\n    assert False\n")
    before = _snapshot(REPO / "reports")
    r = _pytest_in_repo(str(tmp_path / "test_stop_first.py"), "tests/claims/test_claims.py", "-x",
                        "-k", "stops_here or (heldout_distances_in_km and paris and not s4 and not lr and not all and not qv "
                        "and not trained)")
    after = _snapshot(REPO / "reports")
    new = sorted(set(after) - set(before))
    try:
        assert r.returncode == 1, r.stdout[-2000:]
        assert {p: h for p, h in after.items() if p in before} == before, "a file under reports/ was changed"
        assert sorted(Path(p).name.split(".", 1)[1] for p in new) == \
            ["incomplete.html", "incomplete.json", "incomplete.tidy.parquet"], new
        html = next(p for p in new if p.endswith(".html"))
        assert "stopped before measuring every claim (0 of 1)" in r.stdout and html in r.stdout, r.stdout[-2000:]
    finally:
        for p in new:
            Path(p).unlink()


def test_a_run_without_claim_tests_writes_no_record():
    before = _snapshot(REPO / "reports")
    r = _pytest_in_repo("tests/unit/test_data.py", "-k", "null_island")
    assert r.returncode == 0, r.stdout[-2000:]
    assert _snapshot(REPO / "reports") == before


def test_the_experiment_summary_says_only_what_its_own_run_did():
    from latent_city.__main__ import report_lines

    nothing = "\n".join(report_lines(None, 2, "cpu"))
    assert "reused" not in nothing and "no record written" in nothing and "latest-cpu.html unchanged" in nothing
    stopped = "\n".join(report_lines({"status": "incomplete", "record": "/r/x.incomplete.html", "claims_selected": 9,
                                      "claims_measured": 2, "adapters": {}, "failed": [],
                                      "next": "run the same command again"}, 2, "cpu"))
    assert "none built or read" in stopped and "INCOMPLETE, 2 of 9" in stopped and "still points to the last" in stopped
    assert "next:    run the same command again" in stopped
    done = "\n".join(report_lines({"status": "complete", "record": "/r/x.html", "claims_selected": 9, "claims_measured": 9,
                                   "adapters": {"paris": {"trained_this_run": False, "train_seconds": 50.0},
                                                "tokyo": {"trained_this_run": True, "train_seconds": 61.2}},
                                   "failed": [], "findings": ["a finding"], "next": ""}, 0, "cpu"))
    assert "paris (reused from the cache), tokyo (trained in this run, 61 s)" in done and "  - a finding" in done
