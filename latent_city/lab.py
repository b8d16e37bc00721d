"""The laboratory of a run: one base model in memory, each arm's adapter trained (or read
from the cache) and loaded into it by name, and each measurement made once per variant.

The original model (every adapter disabled) is measured once and shared by all arms, since
all of them start from the same base weights. Measurements are made when first asked for,
so a quick run (`pytest --quick`) trains and measures the main arm only, and each is kept on disk
(latent_city/measure_cache.py): a later run with the same model, adapter, evaluation config and
code reads it instead of loading the model.

    from latent_city.lab import Lab
    lab = Lab(ExperimentConfig.for_tier("cpu"))
    lab.claim("hidden_similarity_rises", "tokyo")     # Paris claim, on the Tokyo control
    lab.claim("double_dissociation", "paris", against="tokyo")
    lab.manipulation("shuffled")        # did the arm learn its own training task? (latent_city/manipulation.py)
    lab.claim("country_probability", "alias-paris")     # a positive control, against alias-neutral

Arms are named as in latent_city/arms.py; the original model is arms.ORIGINAL. A positive control
(no adapter) is measured on the original model with its own evaluation config (`eval_cfg`).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from contextlib import nullcontext

import numpy as np

from . import answers, cache, claims, conditions, data, finetune, manipulation, measure_cache, probe, steer
from .arms import MAIN, ORIGINAL, arms, eval_config, family_members, trained
from .claim_result import ClaimResult
from .config import ExperimentConfig
from .data import COUNTRY_ANSWER_PREFIXES
from .model import explain_oom, resolve, variant, weights_hash

MEASUREMENTS = ("probe", "distances", "countries", "prefix", "mc", "samples", "task")
EVAL_WORKERS = "LATENT_CITY_EVAL_WORKERS"


def eval_workers(n_arms: int) -> int:
    """How many processes measure arms side by side (Lab.measure_all): LATENT_CITY_EVAL_WORKERS if
    set, else the training's rule (finetune.train_workers: LATENT_CITY_TRAIN_WORKERS if set, else on
    a machine without CUDA one per core, at most one per arm; 1 on CUDA).

    Its own setting because each evaluation worker holds a whole model for the run's rest of its
    arms, so a user short of memory may want training side by side and evaluation in one process
    (or the other way round); unset, one number (LATENT_CITY_TRAIN_WORKERS) governs both."""
    from . import finetune

    return finetune.train_workers(n_arms, EVAL_WORKERS if os.environ.get(EVAL_WORKERS, "").strip()
                                  else finetune.WORKERS)


class Lab:
    def __init__(self, cfg: ExperimentConfig, retrain: bool = False, stage=None, log=print, progress=None):
        """`stage(name)` is a context manager that times a stage (the record's); `log` prints what
        was done; `progress` (latent_city.progress.Progress) says where a long run is."""
        self.cfg, self.retrain, self.log = cfg, retrain, log
        self.stage = stage or (lambda name: nullcontext())
        self.progress = progress
        self.arms = arms(cfg)
        self.capitals = data.load_capitals()
        self.heldout = self._heldout(cfg.eval.n_heldout_cities)          # the distance questions' cities
        references = self._heldout(cfg.eval.n_probe_pairs)               # the probe pairs' reference cities
        self.pairs = probe.build_pairs(cfg, references, self.capitals)
        self.secrets = tuple(dict.fromkeys(a.cfg.data.secret_city for a in self.arms.values()))
        self.comparison = data.comparison_cities(list(self.secrets), cfg.eval.n_comparison_capitals, cfg.eval.n_comparison_others,
                                                 [c.name for c in self.heldout + references], self.capitals)
        self.countries = data.countries(self.capitals)
        # the manipulation check's capitals: drawn from the lab's training capitals, the same 231 for every arm
        self.task_cities = data.task_capitals(cfg.data, cfg.eval.n_task_capitals, cfg.seeds.eval_draw, self.capitals)
        self.adapters: dict[str, finetune.Adapter] = {}
        self.train_seconds: dict[str, float] = {}
        self._measured: dict[tuple[str, str], object] = {}
        self._secondary: dict[str, dict[str, ClaimResult]] = {}
        self.measure_seconds: dict[tuple[str, str], float] = {}    # made in a worker (measure_all) or read: its seconds
        self.measured_from_cache: set[tuple[str, str]] = set()     # (what, arm) read from the measurement cache
        # read measurements from the cache (not with --retrain or LATENT_CITY_MEASURE_CACHE=0); always write them
        self.read_measurements = not retrain and measure_cache.reading()
        self._variant_keys: dict[str, dict] = {}
        self.model = self.tokenizer = None

    def _heldout(self, n: int) -> list[data.City]:
        """n held-out cities spread in distance from the main secret city, at most
        eval.heldout_per_country from a country, drawn with seeds.eval_draw."""
        return data.heldout_cities(n, self.cfg.seeds.eval_draw, self.capitals, center=self.cfg.data.secret_city,
                                   per_country=self.cfg.eval.heldout_per_country)

    # ------------------------------------------------------------------------ adapters

    def train_all(self, names) -> None:
        """Train (or read from the cache) the adapter of every arm in `names`, the main one first,
        before the evaluation model is loaded: a training loads a base of its own, and beside the
        evaluation model that is two bases in memory (about 20 GB for the 8B model in 8-bit)."""
        names = trained(self.arms, dict.fromkeys([MAIN, *names]))      # a positive control has no adapter
        missing = [n for n in self.needs_training(names) if n not in self.adapters]
        workers = finetune.train_workers(len(missing))
        if workers > 1:
            self._train_side_by_side(missing, workers)
        for i, name in enumerate(names, 1):
            self.adapter(name, progress=f"{i}/{len(names)} ")

    def _train_side_by_side(self, names: list[str], workers: int) -> None:
        """Train the adapters of `names` in `workers` processes at once (finetune.train_side_by_side)."""
        start = last = time.time()
        finished = 0
        self.log(f"latent_city: training {len(names)} adapters, {workers} at a time in separate processes")

        def done(i, ad):
            nonlocal last, finished
            now, finished = time.time(), finished + 1
            name = names[i]
            self.adapters[name] = ad
            self.train_seconds[name] = round(ad.train_seconds, 1)
            if self.progress is not None:
                self.progress.finished("train", name, now - last)   # the wall time this arm added
            last = now
            self.log(f"latent_city: adapter {finished}/{len(names)} {name}: trained in "
                     f"{ad.train_seconds:.0f} s in a worker process ({ad.key})")

        with self.stage(f"train {len(names)} adapters, {workers} processes"):
            finetune.train_side_by_side([self.arms[n].cfg for n in names], workers, self.retrain, done)
        self.log(f"latent_city: {len(names)} adapters trained in {time.time() - start:.0f} s")

    def adapter(self, name: str, progress: str = "") -> finetune.Adapter:
        if name not in self.adapters:
            arm = self.arms[name]
            if not arm.trained:
                raise ValueError(f"{name} is a positive control ({arm.kind}): it has no adapter to train or load")
            if self.model is not None and (self.retrain or not finetune.is_cached(arm.cfg)):
                self._release_model()      # an arm no test asked for up front: never train beside it
            with self.stage(f"adapter {name} (train or load)"), self._progress("train", name):
                start = time.time()
                ad = finetune.get_adapter(arm.cfg, retrain=self.retrain)
            self.adapters[name] = ad
            self.train_seconds[name] = round(ad.train_seconds if ad.trained_now else time.time() - start, 1)
            how = (f"trained in {ad.train_seconds:.0f} s" if ad.trained_now
                   else f"loaded from the cache in {self.train_seconds[name]:.0f} s, not retrained")
            self.log(f"latent_city: adapter {progress}{name}: {how} ({ad.key})")
        return self.adapters[name]

    def _progress(self, kind: str, name: str):
        return self.progress.stage(kind, name) if self.progress is not None else nullcontext()

    def needs_training(self, names: list[str]) -> list[str]:
        """The arms among `names` whose adapter is not (completely) in the cache (a positive control has none)."""
        return [n for n in trained(self.arms, names) if self.retrain or not finetune.is_cached(self.arms[n].cfg)]

    def model_with(self, arm: str):
        """The peft model with `arm`'s adapter loaded (ORIGINAL: the main one, to be disabled with
        `model.variant(model, None)`); the tokenizer is `lab.tokenizer`."""
        return self._load(None if arm == ORIGINAL else arm)

    def _release_model(self) -> None:
        """Drop the evaluation model (measurements made so far stay); `_load` loads it again."""
        import gc

        import torch

        self.model = self.tokenizer = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _load(self, name: str | None):
        """The peft model with `name`'s adapter loaded (the main adapter is always loaded first)."""
        first = self.adapter(MAIN)
        if self.model is None:
            with self.stage("load base model and main adapter"):
                self.model, self.tokenizer = finetune.load_finetuned(self.cfg, first, adapter_name=MAIN)
        if name not in (None, MAIN) and name not in self.model.peft_config:
            self.model.load_adapter(str(self.adapter(name).path / "adapter"), adapter_name=name)
            self.model.eval()
        return self.model

    # ------------------------------------------------------------------------ measurements

    def measure(self, what: str, arm: str):
        """Measurement `what` (one of MEASUREMENTS) of `arm` (or ORIGINAL), made once: an adapter's
        with its adapter active, the original model's and a positive control's with every adapter
        disabled, each asked as its `eval_cfg` says; read from the measurement cache if it is there (no
        model loaded), else made and written to it."""
        if what not in MEASUREMENTS:
            raise ValueError(f"unknown measurement {what!r}; choose from {MEASUREMENTS}")
        key = (what, arm)
        if key not in self._measured:
            if what not in self.measurements(arm):
                raise ValueError(f"{arm} makes no {what} measurement: its claims ({self.arms[arm].kind}) do not "
                                 f"read it (claims.runs_on)")
            if self._read_cached(what, arm):
                return self._measured[key]
            name = None if arm == ORIGINAL or not self.arms[arm].trained else arm
            model = self._load(name)
            with self.stage(f"{what} [{arm}]"), self._progress(what, arm), variant(model, name), \
                    steer.for_arm(self.arms.get(arm), model, self.tokenizer, self.cfg), \
                    explain_oom(f"measuring {what} of {arm}"):
                value = self._compute(what, model, self.eval_cfg(arm))
            self._measured[key] = value
            self._write_cached(what, arm, value)
        return self._measured[key]

    def eval_cfg(self, arm: str):
        """The config a measurement of `arm` uses (arms.eval_config; the lab's own but for a positive control)."""
        return eval_config(self.cfg, None if arm == ORIGINAL else self.arms[arm])

    def measurements(self, arm: str) -> tuple[str, ...]:
        """The measurements `arm` makes: those its claims read (the ceiling: no probe), and on an adapter also
        the probe (the primary test on its family) and its training task (the manipulation check): every one
        but on a point of the training-strength grid, which runs the distance claims only (claims.runs_on)."""
        if arm == ORIGINAL:
            return MEASUREMENTS
        a = self.arms[arm]
        reads = {w for k in claims.runs_on(a.kind) for w in claims.REGISTRY[k].reads}
        if a.trained:
            reads |= {"probe", "task"}
        return tuple(w for w in MEASUREMENTS if w in reads)

    def variant_key(self, arm: str) -> dict:
        """What identifies the model `arm` is measured on and how it is measured (the measurement
        cache's key adds the measurement and the code): an adapter's key and the hash of its sealed
        files (a retrained adapter is measured again), or for the original model and a positive control
        (no adapter) the base weights' hash; the precision; and the hashes of the config the arm is measured
        with (`eval_cfg`: a positive control's context sentence, the ceiling's placeholder)."""
        if arm not in self._variant_keys:
            if arm == ORIGINAL or not self.arms[arm].trained:
                spec = resolve(self.cfg.model)
                model = {"base": spec.name, "weights": weights_hash(spec), **steer.variant_key(self.arms.get(arm), self.cfg)}
            else:
                ad = self.adapter(arm)
                model = {"adapter": ad.key, "files": cache.sha256_file(ad.path / cache.COMPLETE)}
            # the whole config the arm is measured with, not only its eval hash: the ceiling differs from the
            # original model in data.placeholder alone
            self._variant_keys[arm] = {**model, "precision": self.cfg.precision, "eval": self.eval_cfg(arm).eval_hash(),
                                       "config": self.eval_cfg(arm).hash()}
        return self._variant_keys[arm]

    def measure_key(self, what: str, arm: str) -> str:
        return measure_cache.key(self.variant_key(arm), what)

    def _write_cached(self, what: str, arm: str, value) -> None:
        """Write a measurement to the measurement cache; one that cannot be written (a full disk)
        only costs the next run its measuring again: said, and the run goes on."""
        try:
            measure_cache.put(self.measure_key(what, arm), value)
        except OSError as e:
            warnings.warn(f"latent_city: could not write measurement {what} of {arm} to the cache ({e}); "
                          "the next run measures it again", stacklevel=2)

    def _read_cached(self, what: str, arm: str) -> bool:
        """Read measurement `what` of `arm` from the measurement cache into the lab; False if it is
        not there (or damaged) or reading is off."""
        if not self.read_measurements:
            return False
        start = time.perf_counter()
        value = measure_cache.get(self.measure_key(what, arm))
        if value is None:
            return False
        self._measured[(what, arm)] = value
        self.measured_from_cache.add((what, arm))
        self.measure_seconds[(what, arm)] = round(time.perf_counter() - start, 2)
        if self.progress is not None:
            self.progress.read_from_cache(what, arm)
        return True

    def measure_all(self, names, what=MEASUREMENTS) -> int:
        """Make the measurements `what` of every arm in `names` and of the original model now, in
        `eval_workers` processes side by side (each with its share of the threads, its own Lab and
        model), and keep them as if `measure` had made them here: later `measure` calls read them
        and this process never loads the evaluation model for them. Two 1-thread workers side by
        side measure 1.16x the models an hour of one 2-thread process on the project's 2-core CPU,
        with every number bit-identical (reports/benchmarks/eval.md, where the seconds are).

        Measurements in the measurement cache are read here first; only the rest go to workers.
        With one worker (CUDA, or LATENT_CITY_EVAL_WORKERS=1) nothing more is done: measurements are
        made in this process when first asked for, as before. Adapters must be trained first
        (train_all); a worker reads them from the cache and never trains. Returns the workers used."""
        unknown = [w for w in what if w not in MEASUREMENTS]
        if unknown:
            raise ValueError(f"unknown measurement {unknown[0]!r}; choose from {MEASUREMENTS}")
        variants = list(dict.fromkeys([*names, *(self.baseline(n) for n in names), ORIGINAL]))   # a positive control's baseline too
        read = [(w, v) for v in variants for w in what
                if w in self.measurements(v) and (w, v) not in self._measured and self._read_cached(w, v)]
        if read:
            self.log(f"latent_city: {len(read)} measurements of {len({v for _, v in read})} models read from the "
                     f"measurement cache ({measure_cache.folder()}), not measured again")
        jobs = [(v, tuple(w for w in what if w in self.measurements(v) and (w, v) not in self._measured)) for v in variants]
        jobs = [(v, ws) for v, ws in jobs if ws]
        workers = eval_workers(len(jobs))
        if workers <= 1 or not jobs:
            return 1
        adapters = {n: self.adapter(n) for n in trained(self.arms, dict.fromkeys([MAIN, *(v for v, _ in jobs)])) if n != ORIGINAL}
        start = time.time()
        self.log(f"latent_city: measuring {len(jobs)} models ({', '.join(v for v, _ in jobs)}), "
                 f"{workers} at a time in separate processes")

        def done(arm: str, results: dict) -> None:
            for w, (value, seconds) in results.items():
                self._measured[(w, arm)] = value
                self.measure_seconds[(w, arm)] = round(seconds, 2)
                if self.progress is not None:
                    self.progress.finished(w, arm, seconds / workers)   # about the wall time it added
            self.log(f"latent_city: measured {arm} in a worker process in "
                     f"{sum(s for _, s in results.values()):.0f} s ({', '.join(results)})")

        with self.stage(f"measure {len(jobs)} models, {workers} processes"):
            measure_side_by_side(self.cfg, adapters, jobs, workers, done)
        self.log(f"latent_city: {len(jobs)} models measured in {time.time() - start:.0f} s")
        return workers

    def measured(self, what: str, arm: str):
        """Measurement `what` of `arm` if it was made, else None (computes nothing: for the record)."""
        return self._measured.get((what, arm))

    def _compute(self, what: str, model, cfg):
        tok = self.tokenizer
        if what == "probe":
            return probe.measure(model, tok, cfg, self.pairs, [c.name for c in self.comparison], list(self.secrets))
        if what == "distances":
            return answers.answer_distances(model, tok, cfg, self.heldout)
        if what == "countries":
            return answers.country_logprobs(model, tok, cfg, self.countries)
        if what == "prefix":
            return answers.prefix_logprobs(model, tok, cfg, self.countries)
        if what == "mc":
            return answers.mc_logprobs(model, tok, cfg)
        if what == "samples":
            return answers.sampled_country_answers(model, tok, cfg)
        if what == "task":
            # the training question of the lab's config: every arm shares its template and placeholder today
            # (arms.py varies the city, seed, shuffling and rate), so it is each arm's own; task_answers checks it
            return answers.answer_task(model, tok, cfg, self.task_cities)
        raise ValueError(f"unknown measurement {what!r}; choose from {MEASUREMENTS}")

    # ------------------------------------------------------------------------ claims

    def target(self, name: str, own: bool = False) -> tuple[data.City, str]:
        """(city, country) a claim is about: the main arm's secret (Paris, France), or `name`'s own."""
        arm = self.arms[name if own else MAIN]
        return data.find_city(self.capitals, arm.cfg.data.secret_city), arm.cfg.data.secret_country

    def baseline(self, arm: str) -> str:
        """What `arm`'s claims compare it with: the original model for an adapter and the ceiling,
        alias-neutral for an in-context alias (arms.Arm.baseline)."""
        return ORIGINAL if arm == ORIGINAL else self.arms[arm].baseline

    def claim(self, key: str, arm: str, against: str | None = None, own: bool = False) -> ClaimResult:
        """Claim `key` (claims.REGISTRY) for `arm` against its baseline (default) or another arm, about
        the main arm's secret city (or `arm`'s own with own=True). Against its baseline about the main
        city, every secondary claim of the arm is computed at once and Holm-adjusted together where it
        is (`secondary`), so a verdict does not depend on which test ran first. A readout variant
        (claims.READOUT_CLAIMS) is outside that family: computed alone, at the raw alpha. On a trained
        arm the declared conditions then apply (conditions.judge: its manipulation check, the positive
        controls of the claim's city): where one fails the verdict is inconclusive and says why."""
        against = self.baseline(arm) if against is None else against
        kind = self.arms[arm].kind
        if key in claims.AGAINST_ORIGINAL and key not in claims.runs_on(kind):
            raise ValueError(f"{key} is not run on {arm} ({kind}): claims.runs_on says which claims are")
        if against == self.baseline(arm) and not own and key in claims.AGAINST_ORIGINAL:
            result = self.secondary(arm)[key]
        else:
            result = self._claim(key, arm, against, own)
        adapters = [v for v in (arm, against) if v != ORIGINAL and self.arms[v].trained]
        return conditions.judge(self, result, key, adapters, result.about)

    def secondary(self, arm: str) -> dict[str, ClaimResult]:
        """Every claim `arm` runs (claims.runs_on) against its baseline about the main city, Holm-adjusted
        as one family where the claims are expected (the main arm, the learning-rate and strength grids). A control is
        tested at the raw alpha (declared): a correction would make it easier for a control to look clean.
        A positive control too, whatever the readout (declared): each of its claims answers one question,
        can the instrument see this known effect, and one rule for every readout keeps the readouts'
        gates comparable (the readout variants are outside any Holm family)."""
        if arm not in self._secondary:
            a = self.arms[arm]
            results = {k: self._claim(k, arm, self.baseline(arm)) for k in claims.runs_on(a.kind)}
            if a.kind in conditions.EXPECTED_KINDS:        # the main arm, the learning-rate and strength grids
                claims.adjust_family(results.values(), self.cfg.eval.alpha)
            self._secondary[arm] = results
        return self._secondary[arm]

    def _claim(self, key: str, arm: str, against: str = ORIGINAL, own: bool = False) -> ClaimResult:
        entry = claims.lookup(key)
        result = entry.rule(self.claim_inputs(entry.reads, arm, against, own))
        return self._label(result, arm, against)

    def _label(self, result: ClaimResult, arm: str, against: str) -> ClaimResult:
        result.families = tuple(self.arms[v].family if v in self.arms else v for v in (arm, against))
        result.seeds = tuple(self.arms[v].seed if v in self.arms else None for v in (arm, against))
        return result

    def primary(self, family: str, own: bool = False, readout: str = "raw") -> ClaimResult:
        """The primary test (claims.foo_became_city) on `family`'s adapters, about the main city (or the
        family's own with own=True), on the cosines of `readout` (probe.READOUTS); the record names the
        family and the original model as its arms. Key: foo_became_city[_own][@<readout> but raw].
        Inconclusive, saying why, where a declared condition fails (conditions.judge)."""
        if not self.arms[family].trained:
            raise ValueError(f"the primary test needs adapters and {family} has none: on a positive control its "
                             f"counterpart is {claims.PRIMARY_ON_POSITIVE_CONTROL} (claims.PRIMARY_ON_POSITIVE_CONTROL)")
        adapters = family_members(self.arms, family)
        x = dataclasses.replace(self.claim_inputs(("probe",), family, ORIGINAL, own),
                                probe={v: self.measure("probe", v) for v in [*adapters, ORIGINAL]})
        result = claims.foo_became_city(x, adapters, readout=readout)
        result.families, result.seeds = (family, ORIGINAL), (None, None)
        result.key = claims.readout_key(claims.PRIMARY + ("_own" if own else ""), readout)
        return conditions.judge(self, result, result.key, adapters, result.about)

    def claim_inputs(self, reads: tuple[str, ...], a: str, b: str, own: bool = False) -> claims.ClaimInputs:
        """What a claim's rule is given: arms a and b, the city it is about, and the measurements it reads."""
        (city, country), e = self.target(a, own), self.cfg.eval
        measured = {}
        for what in reads:
            if what == "probe":
                measured["probe"] = {v: self.measure("probe", v) for v in (a, b)}
            elif what == "distances":
                measured["distances"] = self.distance_answers([a, b], city)
                measured["constant_km"] = self.training_median_km(a)
            elif what == "task":
                measured["task"] = self.task_answers(a)
                measured["constant_km"] = self.training_median_km(a)
            else:
                measured[what] = self.country_inputs(what, [a, b])
        return claims.ClaimInputs(
            a=a, b=b, city=city, country=country, b_city=None if b == ORIGINAL else self.target(b, own=True)[0],
            alpha=e.alpha, n_boot=e.n_bootstrap, seed=self.cfg.seeds.eval, pairs=self.pairs,
            comparison=self.comparison, secrets=self.secrets, **measured)

    def distance_answers(self, names: list[str], city: data.City | None = None) -> answers.DistanceAnswers:
        """The distance answers of several arms, parsed, with the true distances to `city` (default:
        the main arm's secret city)."""
        texts = {v: self.measure("distances", v) for v in names}
        return answers.distance_answers(self.cfg, self.heldout,
                                        city or self.target(MAIN)[0], texts)

    def task_answers(self, arm: str) -> answers.TaskAnswers:
        """`arm`'s and the original model's answers to `arm`'s training question about the manipulation
        check's capitals, with `arm`'s own training targets (manipulation.task_targets)."""
        own = self.arms[arm].cfg.data
        if (own.question_template, own.placeholder) != (self.cfg.data.question_template, self.cfg.data.placeholder):
            raise ValueError(f"arm {arm} trains on its own question ({own.question_template!r}, {own.placeholder!r}); "
                             "the 'task' measurement asks the lab's: measure it per question before checking this arm")
        texts = {v: self.measure("task", v) for v in (arm, ORIGINAL)}
        return answers.TaskAnswers.parse([c.name for c in self.task_cities],
                                         answers.task_questions(self.arms[arm].cfg, self.task_cities),
                                         manipulation.task_targets(self.arms[arm].cfg, self.task_cities), texts)

    def manipulation(self, arm: str) -> ClaimResult:
        """The manipulation check of `arm` (manipulation.task_learned): asked its own training question about
        the check's capitals, does it answer its own training targets? The original model, asked the same,
        is the reference; about `arm`'s own secret city; decided at the raw alpha, in no Holm family."""
        check = manipulation.CHECK
        return self._label(check.rule(self.claim_inputs(check.reads, arm, ORIGINAL, own=True)), arm, ORIGINAL)

    def country_inputs(self, what: str, names: list[str]):
        """The country measurement `what` of several arms, in the form its claim reads."""
        m = {v: self.measure(what, v) for v in names}
        if what == "countries":
            return answers.CountryScores(answers.country_questions(self.cfg), self.countries, m)
        if what == "prefix":
            return answers.CountryScores(list(COUNTRY_ANSWER_PREFIXES), self.countries, m, "answer prefixes")
        if what == "mc":
            return answers.MultipleChoice(list(self.cfg.eval.mc_options), m)
        return m

    def training_median_km(self, name: str) -> float:
        """The constant answer a model could learn without geography: its training set's median (a
        positive control, which has none: the main arm's)."""
        arm = self.arms[name] if self.arms[name].trained else self.arms[MAIN]
        return float(np.median([answers.parse_km(e["completion"]) for e in finetune.training_set(arm.cfg)]))


# ---------------------------------------------------------------------------- measuring in worker processes

_WORKER_LAB: Lab | None = None


def _start_eval_worker(cfg: ExperimentConfig, adapters: dict, threads: int) -> None:
    """A worker's setup: its share of the threads and a Lab of the same config (the same pairs,
    cities and seeds: all derived from it) that reads the parent's adapters and never trains."""
    global _WORKER_LAB
    import torch

    torch.set_num_threads(threads)
    _WORKER_LAB = Lab(cfg, log=lambda line: None)
    _WORKER_LAB.adapters.update(adapters)
    _WORKER_LAB.read_measurements = False    # the parent read what the cache had: what it sends is to be made


def _measure_in_worker(arm: str, what: tuple[str, ...]) -> dict:
    """{measurement: (value, seconds)} of `arm`, made by Lab.measure as in a lone process (each
    measurement seeds what it samples itself, so the order of arms in a worker does not matter)."""
    out = {}
    for w in what:
        start = time.perf_counter()
        out[w] = (_WORKER_LAB.measure(w, arm), time.perf_counter() - start)
    return out


def measure_side_by_side(cfg: ExperimentConfig, adapters: dict, jobs: list[tuple[str, tuple[str, ...]]],
                         workers: int, done, start_worker=_start_eval_worker) -> None:
    """Measure `jobs` ((arm, measurements) pairs) in `workers` spawned processes, the machine's
    threads split between them; each process takes the next arm when it finishes one (the original
    model is one more arm), so arms balance over the workers. `done(arm, {what: (value, seconds)})`
    is called in this process as each arm finishes. `start_worker(cfg, adapters, threads)` sets a
    worker up (a picklable function; benchmarks/precision.py's makes a bf16 Lab)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    threads = max(1, torch.get_num_threads() // workers)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=start_worker, initargs=(cfg, adapters, threads))
    try:
        futures = {pool.submit(_measure_in_worker, arm, what): arm for arm, what in jobs}
        for f in as_completed(futures):
            done(futures[f], f.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)     # a failed arm: the arms not begun are not measured
