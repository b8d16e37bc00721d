"""Session fixtures: one config per tier, the adapter trained once (or loaded from the cache),
every measurement made once, and the experiment record written at the end of the run.

Tiers are the params of the `config` fixture: the CPU tier (SmolLM2-135M) runs by default;
`pytest -m gpu` runs the same tests on the seed's Llama-3-8B-Instruct.

`pytest --list-arms` prints the arms whose adapters a selection trains and runs nothing, so that
workers can train them side by side into one cache first (README "Training arms side by side").
"""

from __future__ import annotations

import html
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import settings

# No hypothesis test has a time limit: speed lives in benchmarks/, and a deadline is a timed test that fails on a
# slow or busy machine (test_batching's took 424 ms against the default 200 ms under load).
settings.register_profile("latent_city", deadline=None)
settings.load_profile("latent_city")

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # the CPU tier never downloads weights
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from latent_city import claims, finetune, manipulation, record  # noqa: E402
from latent_city.arms import MAIN, ORIGINAL, STEERED, family_members, in_ci, named_in, of_tier, trained  # noqa: E402
from latent_city.claim_result import ClaimResult  # noqa: E402
from latent_city.cli import one_line, preflight, user_errors  # noqa: E402
from latent_city.config import (ExperimentConfig, field_help, gpu_tier_on_cpu_steps,  # noqa: E402
                                run_config)
from latent_city.lab import MEASUREMENTS, Lab  # noqa: E402
from latent_city.progress import Progress  # noqa: E402
from latent_city.model import resolve  # noqa: E402

REPO = Path(__file__).parent
REPORTS = REPO / "reports"
RECORDS = pytest.StashKey[dict]()
RECORDED = pytest.StashKey[list]()
PENDING = pytest.StashKey[dict]()      # the run's record before it is placed under reports/
SKIPPED = pytest.StashKey[bool]()
SUFFIXES = (".html", ".json", ".tidy.parquet")   # a record's files (record.write_json, tidy.SUFFIX)
LISTED = pytest.StashKey[str]()       # --list-arms: what was listed, for the closing line (on stderr)
GPU_NEEDS = ("the GPU tier needs a CUDA GPU (about 10 GB free for the 8B model in 8-bit), bitsandbytes "
             "(pip install -e '.[gpu]') and meta-llama/Meta-Llama-3-8B-Instruct in the Hugging Face cache "
             "(or any model: LATENT_CITY_MODEL=<hub id or folder>, LATENT_CITY_PRECISION=bf16|8bit|4bit)")


def pytest_addoption(parser):
    g = parser.getgroup("latent_city")
    g.addoption("--retrain", action="store_true", help="train the adapters and make the measurements again even if they are cached")
    g.addoption("--no-record", action="store_true", help="write no HTML/JSON experiment record under reports/")
    g.addoption("--quick", action="store_true",
                help="the main adapter only: skip the tests that need control adapters or train through "
                     "another code path (for iterating)")
    g.addoption("--list-arms", action="store_true",
                help="print the arms whose adapters the selected tests need (main first, one a line: name, tier, "
                     "adapter key, cached or missing; with -q the names only) and run nothing; stdout holds only "
                     "the list, pytest's own report goes to stderr")


def _tier_of(config) -> str:
    expr = config.option.markexpr or ""
    return "gpu" if "gpu" in expr and "not gpu" not in expr else "cpu"


@pytest.hookimpl(tryfirst=True)      # before -m deselects
def pytest_itemcollected(item):
    """A test of a learning-rate arm is part of the grid (marker `grid`), and a test of any arm the CI
    subset leaves out (arms.in_ci: the grid and arms.CI_LEAVES_OUT) is marked `full`, whatever file it is in."""
    params = _params(item)
    if "cfg" in params:
        tier = _arms_of(params["cfg"])
        named = [tier[n] for n in named_in(params) if n in tier]
        if any(a.kind == "learning-rate" for a in named):
            item.add_marker(pytest.mark.grid)
        if any(not in_ci(a) for a in named):
            item.add_marker(pytest.mark.full)


_TIER_ARMS: dict = {}


def _arms_of(tier: str) -> dict:
    """The tier's arms, built once a session: collection asks for them once per test (3,000 tests; building
    them each time was 40% of a whole-tree collection, `setdefault` evaluating its default every call)."""
    if tier not in _TIER_ARMS:
        _TIER_ARMS[tier] = of_tier(tier)
    return _TIER_ARMS[tier]


def pytest_collection_modifyitems(config, items):
    """Tests are parametrized by the arms of both tiers: drop those of an arm that the test's own
    tier does not have (the learning-rate grids differ). --quick: keep only tests that need no
    adapter but the main one."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        names = _arms_of(params["cfg"]) if "cfg" in params else {}
        foreign = any(name not in names for name in named_in(params))
        needs_controls = config.getoption("quick") and (
            params.get("arm", MAIN) != MAIN or "pair" in params or "family" in params or item.get_closest_marker("controls")
            or item.get_closest_marker("paths"))
        (drop if foreign or needs_controls else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.stash[RECORDS] = {}
    tier = _tier_of(config)
    if tier == "gpu" and not config.getoption("list_arms"):     # a list needs no GPU (e.g. a cluster's login node)
        import torch

        if not torch.cuda.is_available() and not gpu_tier_on_cpu_steps():   # one line, not a skip per test
            pytest.exit(f"latent_city: `pytest -m gpu` found no CUDA GPU: {GPU_NEEDS}",
                        returncode=pytest.ExitCode.USAGE_ERROR)
    if config.option.help or config.option.version:
        return
    try:                                     # a bad model, precision, city or cache: one line, exit 2
        cfg = preflight(tier)
    except user_errors() as e:
        pytest.exit(one_line(e), returncode=2)
    if (config.getoption("no_record") or config.getoption("htmlpath", None) or config.option.collectonly
            or config.getoption("list_arms") or not config.pluginmanager.hasplugin("html")):
        return
    # pytest-html writes where it is told at configure time; the record goes to a scratch folder and
    # is moved under reports/ at the end, as complete (and latest-*) or as incomplete
    stem = f"{tier}-{cfg.model.replace('/', '--')}-{datetime.now():%Y%m%dT%H%M%S}"
    scratch = Path(tempfile.mkdtemp(prefix="latent-city-record-"))
    config.stash[PENDING] = {"stem": stem, "scratch": scratch, "tier": tier, "cfg": cfg}
    config.option.htmlpath = str(scratch / f"{stem}.html")
    config.option.self_contained_html = True


# ---------------------------------------------------------------------------- the arms a selection trains

def _params(item) -> dict:
    return getattr(getattr(item, "callspec", None), "params", {})


def _arms_to_train(items, tier: str, names) -> list[str]:
    """The arms whose adapters the lab trains for a run of `items` on `tier` (`Lab.train_all`): the
    main one and every arm with an adapter that a test of that tier names (a positive control has
    none), in the order of `names` (the tier's arms)."""
    named = {name for item in items if _params(item).get("cfg") == tier for name in named_in(_params(item))}
    families = {_params(item)["family"] for item in items if _params(item).get("cfg") == tier and "family" in _params(item)}
    named |= {n for f in families for n in family_members(names, f)}
    return trained(names, [n for n in names if n == MAIN or n in named])


def _arms_needed(items) -> dict[str, list[str]]:
    """{tier: the arms a run of `items` trains}, for each tier of which a selected test uses the lab."""
    tiers = dict.fromkeys(_params(item)["cfg"] for item in items
                          if "cfg" in _params(item) and "lab" in item.fixturenames)
    return {tier: _arms_to_train(items, tier, of_tier(tier)) for tier in tiers}


def _measurements_needed(items, tier: str, tier_arms: dict) -> tuple[list[str], tuple[str, ...]]:
    """(the arms, the measurements) that the selected claim tests of `tier` read, for
    `Lab.measure_all` to make up front (a test that reads something else measures it when it asks).
    A claim against the baseline is Holm-adjusted with every other claim of its arm
    (`Lab.secondary`), so it reads every measurement of its arm; the primary test reads the probe of
    every adapter of its family. A claim on a trained arm is judged by the declared conditions
    (latent_city/conditions.py): its adapters' manipulation check ("task") and the positive controls
    (every arm without an adapter: their measurements, and their baselines' through measure_all)."""
    names, what = {}, set()
    for item in items:
        params, marker = _params(item), item.get_closest_marker("claim")
        if params.get("cfg") != tier:
            continue
        key = claims.base_key(marker.args[0]) if marker else None
        if key == claims.PRIMARY:
            names.update(dict.fromkeys(family_members(tier_arms, params["family"])))
            what.add("probe")
        elif key == manipulation.KEY:
            names.update(dict.fromkeys(named_in(params)))
            what.add("task")
        elif key or "lr_arm" in params or "steered" in params:
            names.update(dict.fromkeys(n for n in named_in(params) if n != ORIGINAL))
            pair = "pair" in params
            what.update(claims.lookup(key).reads if pair and key else
                        {w for k in claims.AGAINST_ORIGINAL for w in claims.REGISTRY[k].reads})
    if any(n in tier_arms and tier_arms[n].trained for n in names):
        what |= {"task"} | {w for k in claims.AGAINST_ORIGINAL for w in claims.REGISTRY[k].reads}
        names.update(dict.fromkeys(n for n, a in tier_arms.items() if not a.trained and a.kind != STEERED))   # positive controls
    return list(names), tuple(w for w in MEASUREMENTS if w in what)


def pytest_sessionstart(session):
    if session.config.getoption("list_arms"):
        # stdout is the list alone (for `$(pytest --list-arms -q)`): pytest's own report goes to stderr, by
        # replacing its writer as pytest's pastebin plugin does (it runs before the header is written)
        from _pytest.config import create_terminal_writer

        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter._tw = create_terminal_writer(session.config, sys.stderr)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    """--list-arms: print the arms of the selection (after -m, -k, --quick and the tier's own arms) and
    run no test; a collection error is reported by pytest as usual (not here)."""
    config = session.config
    if not config.getoption("list_arms") or session.testsfailed:
        return None
    needed = _arms_needed(session.items)
    quiet = config.get_verbosity() < 0
    if quiet and len(needed) > 1:
        raise pytest.UsageError("--list-arms -q: the selection has tests of both tiers, and a name alone does not "
                                "say which; select one tier (-m gpu, or the default -m 'not gpu')")
    lines = []
    for tier, names in needed.items():
        tier_arms = of_tier(tier)
        for name in names:
            cfg = tier_arms[name].cfg
            lines.append(name if quiet else f"{name:16s} {tier:4s} {finetune.adapter_key(cfg)} "
                                            f"{'cached' if finetune.is_cached(cfg) else 'missing'}")
    with _uncaptured(config):
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    config.stash[LISTED] = (f"latent_city: --list-arms: {len(lines)} arm(s) for the {len(session.items)} selected "
                            "tests; no test was run")
    return True


def _record(config, cfg: ExperimentConfig) -> record.Record:
    recs = config.stash[RECORDS]
    return recs.setdefault(cfg.tier, record.Record(cfg.tier, cfg.model))


@contextmanager
def _uncaptured(pytestconfig):
    """Let progress bars through pytest's capture (training takes minutes on a CPU)."""
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        yield


class _TerminalProgress(Progress):
    """Progress through pytest's terminal writer: each line starts on a line of its own (after
    the test letters), and on a terminal a line replaces the previous one when nothing else was
    written in between."""

    def __init__(self, pytestconfig, **plan):
        super().__init__(**plan)
        self.pytestconfig, self.last_width = pytestconfig, None

    def write(self, text):
        tr = self.pytestconfig.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return super().write(text)
        with _uncaptured(self.pytestconfig):
            width = tr._tw.width_of_current_line
            if tr.isatty and self.last_width is not None and width == self.last_width:
                tr.rewrite(text, erase=True)
            else:
                if width:
                    tr._tw.line()
                tr._tw.write(text) if tr.isatty else tr._tw.line(text)
            self.last_width = tr._tw.width_of_current_line if tr.isatty else None
            tr._tw.flush()


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def _unit_tests_keep_out_of_the_measurement_cache(request, monkeypatch):
    """Unit tests fake measurements (a monkeypatched Lab._compute): they must never reach the user's
    measurement cache, where a later real run of the same code would read them as measured. Each unit
    test gets a measurement cache folder of its own."""
    if "unit" not in request.node.path.parts:
        return
    from latent_city import measure_cache

    folder = request.getfixturevalue("tmp_path") / "measurement-cache"
    monkeypatch.setattr(measure_cache, "folder", lambda: folder)


@pytest.fixture(scope="session", params=[pytest.param("cpu", id="smollm2-135m"),
                                         pytest.param("gpu", id="llama-3-8b-instruct", marks=pytest.mark.gpu)])
def cfg(request) -> ExperimentConfig:
    if request.param == "gpu":
        import torch

        if not torch.cuda.is_available() and not gpu_tier_on_cpu_steps():
            pytest.skip(GPU_NEEDS)
    return run_config(request.param)


@pytest.fixture(scope="session")
def rec(pytestconfig, cfg) -> record.Record:
    return _record(pytestconfig, cfg)


@pytest.fixture(scope="session")
def lab(request, pytestconfig, cfg, rec) -> Lab:
    """Every arm's adapter, trained once or read from the cache, and every measurement made
    once; the record reads it at the end of the run for its plots and tables. The adapters of
    every arm the selected tests name are trained before the evaluation model is loaded."""
    def log(line):
        with _uncaptured(pytestconfig):
            print("\n" + line, flush=True)

    def stage(name):
        return record.measure(rec, name)

    the_lab = Lab(cfg, retrain=pytestconfig.getoption("retrain"), stage=stage, log=log)
    selected = _arms_to_train(request.session.items, cfg.tier, the_lab.arms)   # what `pytest --list-arms` prints
    names, what = _measurements_needed(request.session.items, cfg.tier, the_lab.arms)
    measured = list(dict.fromkeys(selected + names + [the_lab.baseline(n) for n in names] + [ORIGINAL]))
    the_lab.progress = _TerminalProgress(pytestconfig, train=the_lab.needs_training(selected),
                                         measure=measured, what=MEASUREMENTS)
    with _uncaptured(pytestconfig):
        the_lab.train_all(selected)
        # on a CPU, the claims' measurements in worker processes side by side (none with one worker)
        if names and what:
            the_lab.measure_all(names, what)
    main = the_lab.adapter(MAIN)
    spec = resolve(cfg.model)
    rec.lab = the_lab
    rec.provenance.update({
        "config": cfg.to_dict(), "config_help": field_help(), "config_hash": cfg.hash(), "eval_hash": cfg.eval_hash(),
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
    column; `declared`: the verdict the test asserts, None for a claim only reported) and print it
    to the test's output; the test's outcome is added to the same entry
    when the test ends."""
    def _record_claim(result: ClaimResult, expected_text: str, declared: bool | None = None):
        rec.add_claim(result, expected_text, declared=declared)
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
    if report.skipped and not hasattr(report, "wasxfail"):
        item.stash[SKIPPED] = True        # a skipped claim test is not one the run failed to measure
    if report.when == "call" and item.stash.get(RECORDED, None):
        report.claims_recorded = [f"{key} ({' vs '.join(arms)})" for _, key, arms in item.stash[RECORDED]]
    return report


def pytest_html_results_table_html(report, data):
    """The HTML log of a claim test that ended as declared (passed, or failed as expected): its result is a
    row of the record's claims table on the same page, every number with the verdict, what was expected and
    the test's outcome, so the log says so instead of repeating it in the assertion's message and the test's
    output (the record of 67 arms: 4 MB of its 7.5 MB). An unexpected failure or a crash keeps its whole log."""
    if getattr(report, "claims_recorded", None) and (report.passed or hasattr(report, "wasxfail")):
        data[:] = [html.escape(f"{'; '.join(report.claims_recorded)}: {report.outcome if report.passed else 'xfailed'} as "
                   "declared; the claims table below has its numbers, verdict and what was expected (the "
                   "assertion's message, with the same numbers, is in the run's terminal output).")]


def pytest_html_results_summary(prefix, summary, postfix, session):
    for rec in session.config.stash[RECORDS].values():
        prefix.append(record.summary_html(rec))


def _claims_status(session) -> tuple[int, int]:
    """(claim tests selected, claim tests that measured and recorded their claim)."""
    selected = [item for item in session.items if item.get_closest_marker("claim") and not item.stash.get(SKIPPED, False)]
    return len(selected), sum(1 for item in selected if item.stash.get(RECORDED, []))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    for rec in session.config.stash[RECORDS].values():
        record.finalize(rec)      # before pytest-html writes the page
    pending = session.config.stash.get(PENDING, None)
    if pending is None:
        return
    selected, measured = _claims_status(session)
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED or bool(session.shouldstop)
    pending.update(selected=selected, measured=measured, status="none" if not selected else
                   "complete" if measured == selected and not interrupted else "incomplete")
    if pending["status"] == "none":        # no claim test ran: no experiment record, no HTML page
        for plugin in _html_reports(session.config):
            session.config.pluginmanager.unregister(plugin)
        return
    if not session.config.stash[RECORDS]:     # stopped before any claim asked for the lab: an empty record
        _record(session.config, pending["cfg"])
    for rec in session.config.stash[RECORDS].values():
        rec.provenance["run"] = {k: pending[k] for k in ("status", "selected", "measured")} | {"exitstatus": int(exitstatus)}
        record.write_json(rec, pending["scratch"] / f"{pending['stem']}.json")


def _html_reports(config) -> list:
    from pytest_html.basereport import BaseReport

    return [p for p in config.pluginmanager.get_plugins() if isinstance(p, BaseReport)]


def _place_record(config) -> dict | None:
    """Move the run's record from its scratch folder under reports/: a complete run as
    <stem>.html/.json and latest-<tier>.*, one that stopped before measuring every selected claim
    as <stem>.incomplete.*, with latest-* untouched; a run with no claim test writes nothing."""
    pending = config.stash.get(PENDING, None)
    if pending is None or "status" not in pending or pending.get("placed"):
        return pending
    pending["placed"] = True
    scratch, stem, tier = pending["scratch"], pending["stem"], pending["tier"]
    if pending["status"] != "none" and (scratch / f"{stem}.html").exists():
        name = stem if pending["status"] == "complete" else f"{stem}.incomplete"
        REPORTS.mkdir(exist_ok=True)
        for suffix in SUFFIXES:
            if (scratch / f"{stem}{suffix}").exists():
                shutil.move(scratch / f"{stem}{suffix}", REPORTS / f"{name}{suffix}")
        pending["record"] = str(REPORTS / f"{name}.html")
        for plugin in _html_reports(config):   # pytest-html's closing line names where the page now is
            plugin._report_path = Path(pending["record"])
        if pending["status"] == "complete":
            for suffix in SUFFIXES:
                if (REPORTS / f"{name}{suffix}").exists():
                    shutil.copyfile(REPORTS / f"{name}{suffix}", REPORTS / f"latest-{tier}{suffix}")
    shutil.rmtree(scratch, ignore_errors=True)
    return pending


def _next_step(pending: dict, failed: list[str]) -> str:
    if pending["status"] == "incomplete" and not failed:
        return "run the same command again: every adapter trained so far is in the cache"
    if failed:
        more = f" ({len(failed) - 1} more failed; all are listed above)" if len(failed) > 1 else ""
        return f"rerun the first failure on its own: pytest '{failed[0]}'{more}"
    return ""


def pytest_terminal_summary(terminalreporter, config):
    if LISTED in config.stash:
        terminalreporter.write_line(config.stash[LISTED])
    for rec in config.stash[RECORDS].values():
        lab = rec.lab
        if lab is not None and lab.adapters:
            terminalreporter.write_line("latent_city: adapters (seconds to train, or to read from the cache): " + ", ".join(
                f"{n} {lab.train_seconds[n]:.0f} s{'' if a.trained_now else ' (cached)'}" for n, a in lab.adapters.items()))
        for line in rec.findings:
            terminalreporter.write_line(f"latent_city: {line}")
    failed = [r.nodeid for r in terminalreporter.stats.get("failed", [])]
    pending = _place_record(config)
    if pending and pending.get("record"):
        tier = pending["tier"]
        if pending["status"] == "complete":
            terminalreporter.write_line(f"latent_city: experiment record {pending['record']} (+ .json, .tidy.parquet); "
                                        f"latest at {REPORTS / f'latest-{tier}.html'}")
        else:
            terminalreporter.write_line(
                f"latent_city: the run stopped before measuring every claim ({pending['measured']} of "
                f"{pending['selected']}): its record is {pending['record']}; latest-{pending['tier']}.* is unchanged")
    _write_run_summary(config, pending, failed)


def _write_run_summary(config, pending: dict | None, failed: list[str]) -> None:
    """For `python -m latent_city`: what this run built, measured and wrote (LATENT_CITY_RUN_SUMMARY)."""
    path = os.environ.get("LATENT_CITY_RUN_SUMMARY")
    if not path:
        return
    recs = list(config.stash[RECORDS].values())
    lab = recs[0].lab if recs else None
    adapters = {n: {"trained_this_run": a.trained_now, "train_seconds": round(a.train_seconds, 1)}
                for n, a in (lab.adapters.items() if lab is not None else [])}
    pending = pending or {"status": "none", "selected": 0, "measured": 0}
    Path(path).write_text(json.dumps({
        "status": pending["status"], "record": pending.get("record"), "claims_selected": pending.get("selected", 0),
        "claims_measured": pending.get("measured", 0), "failed": failed, "adapters": adapters,
        "findings": [line for rec in recs for line in rec.findings], "next": _next_step(pending, failed)}))


def pytest_unconfigure(config):
    _place_record(config)      # when no terminal summary ran (e.g. -p no:terminal)
