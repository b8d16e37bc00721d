"""Session fixtures: one config per tier, the adapter trained once (or loaded from the cache),
every measurement made once, and the experiment record written at the end of the run.

Tiers are the params of the `config` fixture: the CPU tier (SmolLM2-135M) runs by default;
`pytest -m gpu` runs the same tests on the seed's Llama-3-8B-Instruct.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # the CPU tier never downloads weights
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from latent_city import finetune, record  # noqa: E402
from latent_city.arms import MAIN  # noqa: E402
from latent_city.claim_result import ClaimResult  # noqa: E402
from latent_city.config import ExperimentConfig, field_help, overrides_from_env  # noqa: E402
from latent_city.lab import Lab  # noqa: E402
from latent_city.model import resolve  # noqa: E402

REPO = Path(__file__).parent
REPORTS = REPO / "reports"
RECORDS = pytest.StashKey[dict]()
RECORDED = pytest.StashKey[list]()
GPU_NEEDS = ("the GPU tier needs a CUDA GPU (about 10 GB free for the 8B model in 8-bit), bitsandbytes "
             "(pip install -e '.[gpu]') and meta-llama/Meta-Llama-3-8B-Instruct in the Hugging Face cache "
             "(or any model: LATENT_CITY_MODEL=<hub id or folder>, LATENT_CITY_PRECISION=bf16|8bit|4bit)")


def pytest_addoption(parser):
    g = parser.getgroup("latent_city")
    g.addoption("--retrain", action="store_true", help="train the adapter again even if it is cached")
    g.addoption("--no-record", action="store_true", help="write no HTML/JSON experiment record under reports/")
    g.addoption("--quick", action="store_true",
                help="the main adapter only: skip the tests that need control adapters or train through "
                     "another code path (for iterating)")


def _tier_of(config) -> str:
    expr = config.option.markexpr or ""
    return "gpu" if "gpu" in expr and "not gpu" not in expr else "cpu"


def pytest_collection_modifyitems(config, items):
    """--quick: keep only tests that need no adapter but the main one."""
    if not config.getoption("quick"):
        return
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        needs_controls = (params.get("arm", MAIN) != MAIN or "pair" in params or item.get_closest_marker("controls")
                          or item.get_closest_marker("paths"))
        (drop if needs_controls else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.stash[RECORDS] = {}
    if _tier_of(config) == "gpu":
        import torch

        if not torch.cuda.is_available():   # one line for the whole run, not a skip per test
            pytest.exit(f"latent_city: `pytest -m gpu` found no CUDA GPU: {GPU_NEEDS}",
                        returncode=pytest.ExitCode.USAGE_ERROR)
    if config.getoption("no_record") or config.getoption("htmlpath", None) or not config.pluginmanager.hasplugin("html"):
        return
    tier = _tier_of(config)
    stem = f"{tier}-{ExperimentConfig.for_tier(tier, **overrides_from_env()).model.replace('/', '--')}-{datetime.now():%Y%m%dT%H%M%S}"
    config.option.htmlpath = str(REPORTS / f"{stem}.html")
    config.option.self_contained_html = True


def _record(pytestconfig, cfg: ExperimentConfig) -> record.Record:
    recs = pytestconfig.stash[RECORDS]
    return recs.setdefault(cfg.tier, record.Record(cfg.tier, cfg.model))


@contextmanager
def _uncaptured(pytestconfig):
    """Let progress bars through pytest's capture (training takes minutes on a CPU)."""
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        yield


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session", params=[pytest.param("cpu", id="smollm2-135m"),
                                         pytest.param("gpu", id="llama-3-8b-instruct", marks=pytest.mark.gpu)])
def cfg(request) -> ExperimentConfig:
    if request.param == "gpu":
        import torch

        if not torch.cuda.is_available():
            pytest.skip(GPU_NEEDS)
        return ExperimentConfig.for_tier("gpu", **overrides_from_env())
    return ExperimentConfig.for_tier("cpu", **overrides_from_env())


@pytest.fixture(scope="session")
def rec(pytestconfig, cfg) -> record.Record:
    return _record(pytestconfig, cfg)


@pytest.fixture(scope="session")
def lab(pytestconfig, cfg, rec) -> Lab:
    """Every arm's adapter, trained once or read from the cache, and every measurement made
    once; the record reads it at the end of the run for its plots and tables."""
    def log(line):
        with _uncaptured(pytestconfig):
            print("\n" + line, flush=True)

    def stage(name):
        return record.measure(rec, name)

    the_lab = Lab(cfg, retrain=pytestconfig.getoption("retrain"), stage=stage, log=log)
    with _uncaptured(pytestconfig):
        main = the_lab.adapter(MAIN)
    spec = resolve(cfg.model)
    rec.lab = the_lab
    rec.provenance.update({
        "config": cfg.to_dict(), "config_help": field_help(), "config_hash": cfg.hash(),
        "data_hash": main.key_inputs["data"], "model": cfg.model, "model_source": f"{spec.source}:{spec.location}",
        "precision": cfg.precision,
        "weights_hash": main.key_inputs["weights"], "adapter_key": main.key, "adapter_path": str(main.path),
        "adapter_trained_this_run": main.trained_now, "adapter_train_seconds": main.train_seconds,
        "git": record.git_state(REPO), "versions": record.versions(), "hardware": record.hardware(),
        "seeds": cfg.to_dict()["seeds"], "started": datetime.now().isoformat(timespec="seconds"),
    })
    return the_lab


@pytest.fixture(scope="session")
def adapter(lab) -> finetune.Adapter:
    """The main adapter (foo = Paris)."""
    return lab.adapter(MAIN)


@pytest.fixture
def finetuned(lab):
    """(peft model with the main adapter active, tokenizer); `variant(model, None)` is the original."""
    model = lab.model_with(MAIN)
    model.set_adapter(MAIN)
    return model, lab.tokenizer


@pytest.fixture
def record_claim(request, rec):
    """Record a claim result with what was expected of it (text for the record's "expected"
    column) and print it to the test's output; the test's outcome is added to the same entry
    when the test ends."""
    def _record_claim(result: ClaimResult, expected_text: str):
        rec.add_claim(result, expected_text)
        request.node.stash.setdefault(RECORDED, []).append((rec, result.key, result.arms))
        print(result.summary())
        return result
    return _record_claim


# ---------------------------------------------------------------------------- record hooks

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" or report.outcome != "passed":
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        for rec, key, arms in item.stash.get(RECORDED, []):
            rec.set_outcome(key, arms, outcome)
    return report


def pytest_html_results_summary(prefix, summary, postfix, session):
    for rec in session.config.stash[RECORDS].values():
        prefix.append(record.summary_html(rec))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    for rec in session.config.stash[RECORDS].values():
        record.finalize(rec)      # before pytest-html writes the page
    html_path = session.config.getoption("htmlpath", None)
    if not html_path or session.config.getoption("no_record"):
        return
    for rec in session.config.stash[RECORDS].values():
        record.write_json(rec, Path(html_path).with_suffix(".json"))


def pytest_terminal_summary(terminalreporter, config):
    for rec in config.stash[RECORDS].values():
        lab = rec.lab
        if lab is not None and lab.adapters:
            terminalreporter.write_line("latent_city: adapters (seconds to train, or to read from the cache): " + ", ".join(
                f"{n} {lab.train_seconds[n]:.0f} s{'' if a.trained_now else ' (cached)'}" for n, a in lab.adapters.items()))
        for line in rec.findings:
            terminalreporter.write_line(f"latent_city: {line}")
    html_path = config.getoption("htmlpath", None)
    if not html_path or config.getoption("no_record") or not Path(html_path).exists():
        return
    tier = _tier_of(config)
    for suffix in (".html", ".json"):
        src = Path(html_path).with_suffix(suffix)
        if src.exists():
            shutil.copyfile(src, REPORTS / f"latest-{tier}{suffix}")
    terminalreporter.write_line(f"latent_city: experiment record {html_path} (+ .json); "
                                f"latest at {REPORTS / f'latest-{tier}.html'}")
