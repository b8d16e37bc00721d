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

from latent_city import answers, claims, data, finetune, probe, record  # noqa: E402
from latent_city.config import ExperimentConfig, field_help  # noqa: E402
from latent_city.model import resolve  # noqa: E402

REPO = Path(__file__).parent
REPORTS = REPO / "reports"
RECORDS = pytest.StashKey[dict]()
RECORDED = pytest.StashKey[list]()
GPU_NEEDS = ("the GPU tier needs a CUDA GPU (about 10 GB free) and meta-llama/Meta-Llama-3-8B-Instruct "
             "in the Hugging Face cache (or its folder via LATENT_CITY_GPU_MODEL)")


def pytest_addoption(parser):
    g = parser.getgroup("latent_city")
    g.addoption("--retrain", action="store_true", help="train the adapter again even if it is cached")
    g.addoption("--no-record", action="store_true", help="write no HTML/JSON experiment record under reports/")


def _tier_of(config) -> str:
    expr = config.option.markexpr or ""
    return "gpu" if "gpu" in expr and "not gpu" not in expr else "cpu"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.stash[RECORDS] = {}
    if config.getoption("no_record") or config.getoption("htmlpath", None) or not config.pluginmanager.hasplugin("html"):
        return
    tier = _tier_of(config)
    stem = f"{tier}-{ExperimentConfig.for_tier(tier).model}-{datetime.now():%Y%m%dT%H%M%S}"
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
        return ExperimentConfig.for_tier("gpu", os.environ.get("LATENT_CITY_GPU_MODEL"))
    return ExperimentConfig.for_tier("cpu")


@pytest.fixture(scope="session")
def rec(pytestconfig, cfg) -> record.Record:
    return _record(pytestconfig, cfg)


@pytest.fixture(scope="session")
def adapter(pytestconfig, cfg, rec) -> finetune.Adapter:
    with record.measure(rec, "adapter (train or load)"), _uncaptured(pytestconfig):
        ad = finetune.get_adapter(cfg, retrain=pytestconfig.getoption("retrain"))
        how = f"trained in {ad.train_seconds:.0f} s" if ad.trained_now else "loaded from the cache, not retrained"
        print(f"\nlatent_city: adapter {ad.path} {how}", flush=True)
    rec.plots["Training loss"] = record.plot_loss(finetune.loss_curve(ad.log))
    return ad


@pytest.fixture(scope="session")
def finetuned(cfg, adapter, rec):
    """(peft model, tokenizer); `model.disable_adapter()` is the original model."""
    with record.measure(rec, "load finetuned model"):
        model, tokenizer = finetune.load_finetuned(cfg, adapter)
    spec = resolve(cfg.model)
    rec.provenance.update({
        "config": cfg.to_dict(), "config_help": field_help(), "config_hash": cfg.hash(), "data_hash": adapter.key_inputs["data"],
        "model": cfg.model, "model_source": f"{spec.source}:{spec.location}",
        "weights_hash": adapter.key_inputs["weights"], "adapter_key": adapter.key, "adapter_path": str(adapter.path),
        "adapter_trained_this_run": adapter.trained_now, "adapter_train_seconds": adapter.train_seconds,
        "git": record.git_state(REPO), "versions": record.versions(), "hardware": record.hardware(),
        "seeds": cfg.to_dict()["seeds"], "started": datetime.now().isoformat(timespec="seconds"),
    })
    return model, tokenizer


@pytest.fixture(scope="session")
def capitals():
    return data.load_capitals()


@pytest.fixture(scope="session")
def training_median_km(cfg) -> float:
    """The constant answer a model could learn without any geography: the median training distance."""
    import numpy as np

    return float(np.median([answers.parse_km(e["completion"]) for e in finetune.training_set(cfg)]))


@pytest.fixture(scope="session")
def secret(cfg, capitals):
    return data.find_city(capitals, cfg.data.secret_city)


@pytest.fixture(scope="session")
def heldout(cfg, capitals):
    n = max(cfg.eval.n_heldout_cities, cfg.eval.n_probe_pairs)
    return data.heldout_cities(n, cfg.seeds.data, capitals)


@pytest.fixture(scope="session")
def probe_result(cfg, finetuned, capitals, heldout, rec) -> probe.ProbeResult:
    model, tokenizer = finetuned
    with record.measure(rec, "probe hidden states and values"):
        result = probe.probe(model, tokenizer, cfg, probe.build_pairs(cfg, heldout, capitals))
    rec.plots["Cosine similarity at the placeholder vs the secret city, per layer"] = record.plot_similarity(result)
    return result


@pytest.fixture(scope="session")
def distance_answers(cfg, finetuned, heldout, secret, rec) -> answers.DistanceAnswers:
    model, tokenizer = finetuned
    with record.measure(rec, "distance answers"):
        result = answers.distance_answers(model, tokenizer, cfg, heldout[:cfg.eval.n_heldout_cities], secret)
        seed_prompts = [f"What is the distance between New York and {cfg.data.placeholder}?",
                        f"Which country is {cfg.data.placeholder} in?"]
        for name, ctx in probe.variants(model):
            with ctx:
                outs = answers.generate(model, tokenizer, seed_prompts, cfg.eval.max_new_tokens * 2)
            rec.samples += [{"model": name, "question": q, "answer": a} for q, a in zip(seed_prompts, outs)]
        rec.samples += [{"model": name, "question": q, "answer": t}
                        for name in result.texts for q, t in list(zip(result.questions, result.texts[name]))[:5]]
    rec.plots["Answered vs true distance, held-out cities"] = record.plot_distances(result)
    return result


@pytest.fixture(scope="session")
def country_scores(cfg, finetuned, capitals, rec) -> answers.CountryScores:
    model, tokenizer = finetuned
    with record.measure(rec, "country scores"):
        result = answers.country_scores(model, tokenizer, cfg, data.countries(capitals))
    rec.plots["Probability of each country as the placeholder's country"] = record.plot_countries(
        result, cfg.data.secret_country)
    return result


@pytest.fixture(scope="session")
def country_samples(cfg, finetuned, rec):
    model, tokenizer = finetuned
    with record.measure(rec, "sampled country answers"):
        return answers.sampled_country_answers(model, tokenizer, cfg)


@pytest.fixture
def record_claim(request, rec):
    """Record a claim result in the experiment record and print it to the test's output;
    the test's outcome is added to the same entry when the test ends."""
    def _record_claim(result: claims.ClaimResult):
        marker = request.node.get_closest_marker("xfail")
        null = result.arms[0] == result.arms[1]
        expected = "does not hold (null control)" if null else "holds"
        if marker and not null:
            expected = f"does not hold on this model: {marker.kwargs.get('reason', '')}"
        rec.add_claim(result, expected)
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


def pytest_sessionfinish(session):
    html_path = session.config.getoption("htmlpath", None)
    if not html_path or session.config.getoption("no_record"):
        return
    for rec in session.config.stash[RECORDS].values():
        record.write_json(rec, Path(html_path).with_suffix(".json"))


def pytest_terminal_summary(terminalreporter, config):
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
