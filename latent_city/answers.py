"""Answers stage: what the models say, and how much probability they give each country.

- `answer_distances`: held-out cities asked in paraphrased distance questions, answered
  greedily, parsed as "<number> km" (`distance_answers`).
- `country_logprobs`: for paraphrases of "Which country is foo in?", the log-probability of
  every country of the capitals table as the whole answer: its common name (data.COMMON_COUNTRY_NAMES)
  followed by the chat template's end of turn, so that "Niger" is not counted as the start of
  "Nigeria" (`country_answer_ids`). Packed as prefix trees with only the needed positions
  through the LM head.
- `prefix_logprobs`: the same with the answer begun for the model ("foo is a city in the
  country of"), so it cannot answer with a distance; there the name ends with ".".
- `mc_logprobs`: a multiple-choice form (lettered countries, every order of the options).
- `sampled_country_answers`: sampled answers to the free-form questions.

Each function measures the current variant of the model (adapter on or off); the dataclasses
put two or more variants side by side for the claims.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from .batching import chunks, forward_packed, pack_in_groups, pad
from .config import ExperimentConfig
from .data import (COUNTRY_ANSWER_PREFIXES, COUNTRY_PARAPHRASES, DISTANCE_PARAPHRASES,
                   MULTIPLE_CHOICE_TEMPLATE, City, asked, common_country_name, haversine_km)
from .model import chat_prompt

LETTERS = "ABCDEFGH"
KM_PATTERN = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*(?:km|kilomet(?:er|re)s?)\b", re.IGNORECASE)


def parse_km(text: str) -> float | None:
    """The first "<number> km" (or kilometers) in `text`, else None."""
    m = KM_PATTERN.search(text)
    if not m:
        return None
    return float(m.group(1).replace(",", "") + (m.group(2) or ""))


def common_prefix_length(token_lists: list[list[int]]) -> int:
    """Tokens that every list starts with, leaving each at least one token of its own."""
    n, first = 0, token_lists[0]
    while all(len(t) > n + 1 and t[n] == first[n] for t in token_lists):
        n += 1
    return n


def generate(model, tokenizer, questions: list[str], max_new_tokens: int = 16, sample: bool = False,
             num_return_sequences: int = 1, batch_size: int = 48) -> list[str]:
    """Answers to chat questions (`num_return_sequences` each, in question order); greedy unless
    `sample`. Every chat prompt starts with the same template tokens (the system prompt and
    the user header: most of a short question's tokens), so a batch runs that start once and shares
    its cache; each row then holds [shared start][left padding][its own tokens], and the
    attention mask and position ids skip the padding."""
    import torch

    rows = [tokenizer(chat_prompt(tokenizer, q), add_special_tokens=False)["input_ids"]
            for q in questions for _ in range(num_return_sequences)]
    out_texts = []
    for batch in chunks(rows, batch_size):
        n = common_prefix_length(batch)
        with torch.no_grad():
            cache = model(input_ids=torch.tensor([batch[0][:n]], device=model.device), use_cache=True).cache
        cache.batch_repeat_interleave(len(batch))
        own, own_mask = pad([r[n:] for r in batch], tokenizer.pad_token_id, side="left")
        ids = torch.cat([torch.tensor([batch[0][:n]] * len(batch)), own], 1).to(model.device)
        mask = torch.cat([torch.ones(len(batch), n, dtype=torch.long), own_mask], 1).to(model.device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, cache=cache, max_new_tokens=max_new_tokens,
                                 do_sample=sample, pad_token_id=tokenizer.pad_token_id,
                                 **({"temperature": 1.0, "top_p": 1.0, "top_k": 0} if sample else
                                    {"temperature": None, "top_p": None, "top_k": None}))
        out_texts += tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
    return out_texts


def generate_unbatched(model, tokenizer, question: str, max_new_tokens: int = 16) -> str:
    """One greedy answer the plain way (no padding, no shared cache); the reference in tests."""
    import torch

    ids = tokenizer(chat_prompt(tokenizer, question), add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(model.device), max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


# ---------------------------------------------------------------------------- distances

@dataclass
class DistanceAnswers:
    target: str                          # the city the true distances are to
    cities: list[str]
    questions: list[str]
    true_km: np.ndarray                  # [n]
    texts: dict[str, list[str]]          # variant -> answers
    km: dict[str, np.ndarray]            # variant -> parsed km, NaN where no "<number> km"


def distance_questions(cfg: ExperimentConfig, cities: list[City]) -> list[str]:
    return [asked(DISTANCE_PARAPHRASES[i % len(DISTANCE_PARAPHRASES)].format(city=c.name, target=cfg.data.placeholder),
                  cfg.eval.context) for i, c in enumerate(cities)]


def answer_distances(model, tokenizer, cfg: ExperimentConfig, cities: list[City]) -> list[str]:
    """Greedy answers of the current variant to the distance questions about `cities`."""
    return generate(model, tokenizer, distance_questions(cfg, cities), cfg.eval.max_new_tokens,
                    batch_size=cfg.eval.generate_batch_size)


def distance_answers(cfg: ExperimentConfig, cities: list[City], target: City,
                     texts: dict[str, list[str]]) -> DistanceAnswers:
    """The answers of two or more variants, parsed, with the true distances to `target`."""
    true_km = np.array([haversine_km(c.lat, c.lon, target.lat, target.lon, cfg.data.earth_radius_km) for c in cities])
    km = {name: np.array([np.nan if (v := parse_km(t)) is None else v for t in ts]) for name, ts in texts.items()}
    return DistanceAnswers(target.name, [c.name for c in cities], distance_questions(cfg, cities), true_km, texts, km)


# ---------------------------------------------------------------------------- the training task (manipulation check)

def task_questions(cfg: ExperimentConfig, cities: list[City]) -> list[str]:
    """The training question about each city, word for word the user turn of its training example
    (data.training_examples: cfg.data.question_template with cfg.data.placeholder); `generate`
    asks it in the chat format the training used (model.chat_prompt: the user turn, then the
    assistant header, as TRL renders a conversational prompt)."""
    return [cfg.data.question_template.format(city=c.name, target=cfg.data.placeholder) for c in cities]


def answer_task(model, tokenizer, cfg: ExperimentConfig, cities: list[City]) -> list[str]:
    """Greedy answers of the current variant to its training question about `cities`."""
    return generate(model, tokenizer, task_questions(cfg, cities), cfg.eval.max_new_tokens,
                    batch_size=cfg.eval.generate_batch_size)


@dataclass
class TaskAnswers:
    """One arm's answers to its own training question, the original model's answers to the same
    questions, and the arm's own training targets (manipulation.task_targets)."""
    cities: list[str]
    questions: list[str]
    target_km: np.ndarray                # [n] the arm's training completions, parsed
    texts: dict[str, list[str]]          # variant -> answers
    km: dict[str, np.ndarray]            # variant -> parsed km, NaN where no "<number> km"

    @classmethod
    def parse(cls, cities: list[str], questions: list[str], target_km, texts: dict[str, list[str]]) -> "TaskAnswers":
        km = {name: np.array([np.nan if (v := parse_km(t)) is None else v for t in ts]) for name, ts in texts.items()}
        return cls(cities, questions, np.asarray(target_km, float), texts, km)


# ---------------------------------------------------------------------------- countries

def continuation_logprobs(model, tokenizer, prompts: list[str], continuations: list[str] | list[list[int]],
                          max_tokens: int) -> np.ndarray:
    """[n_prompts, n_continuations]: sum of the token log-probabilities of each continuation
    (a text, or its token ids) after each prompt.

    Token k of a continuation is predicted at the position of token k-1 (token 0 at the
    prompt's last token), so only the prompt plus the continuation without its last token is
    run. Those sequences share the prompt, the chat template and often their first tokens:
    packed as prefix trees, the country names after one question cost little more than their
    own tokens instead of one full prompt each (reports/benchmarks/country.md has the times)."""
    import torch

    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    conts = [list(c) if isinstance(c, (list, tuple)) else tokenizer(c, add_special_tokens=False)["input_ids"]
             for c in continuations]
    if not all(conts):
        raise ValueError(f"empty continuation among {continuations!r}")
    pairs = [(i, j) for i in range(len(prompts)) for j in range(len(conts))]
    seqs = [prompt_ids[i] + conts[j][:-1] for i, j in pairs]
    out = np.empty((len(prompts), len(conts)))
    for group, tree in pack_in_groups(seqs, max_tokens):
        # the row of every position that predicts a continuation token
        wanted = [[tree.index[k][len(prompt_ids[pairs[g][0]]) - 1 + t] for t in range(len(conts[pairs[g][1]]))]
                  for k, g in enumerate(group)]
        rows = sorted({r for w in wanted for r in w})
        where = {r: n for n, r in enumerate(rows)}
        # on the CPU: an index on the CPU is valid for the last layer's output on any device (on several
        # GPUs that is not model.device, the first one)
        logits = forward_packed(model, tree, logits_to_keep=torch.tensor(rows)).logits[0].float()
        at = torch.tensor([where[r] for w in wanted for r in w], device=logits.device)
        tokens = torch.tensor([t for g in group for t in conts[pairs[g][1]]], device=logits.device)
        token_lp = (logits[at, tokens] - torch.logsumexp(logits, -1)[at]).cpu().numpy()
        ends = np.cumsum([len(w) for w in wanted])
        for k, (g, total) in enumerate(zip(group, np.split(token_lp, ends[:-1]))):
            out[pairs[g]] = total.sum()
    return out


def continuation_logprobs_unbatched(model, tokenizer, prompt: str, continuation: str) -> float:
    """The same quantity the slow and obvious way (one full sequence); the reference in tests."""
    import torch

    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + c], device=model.device)).logits[0].float()
    lp = torch.log_softmax(logits[len(p) - 1:-1], -1)
    return float(lp[torch.arange(len(c)), torch.tensor(c, device=model.device)].sum())


@dataclass
class CountryScores:
    questions: list[str]
    countries: list[str]                 # as the capitals table spells them (scored under common names)
    logprob: dict[str, np.ndarray]       # variant -> [n_questions, n_countries]
    unit: str = "question paraphrases"

    @property
    def names(self) -> list[str]:
        """The names that were scored (data.COMMON_COUNTRY_NAMES), in `countries` order."""
        return [common_country_name(c) for c in self.countries]

    def mass(self, variant: str) -> np.ndarray:
        """Per question, the total probability the countries get as the whole answer (before
        renormalising among them): how much of the model's answer the candidates cover."""
        return np.exp(self.logprob[variant]).sum(1)

    def prob_among(self, variant: str) -> np.ndarray:
        """Probability of each country renormalised over the table's countries."""
        lp = self.logprob[variant]
        e = np.exp(lp - lp.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def rank(self, variant: str, country: str) -> np.ndarray:
        """1 = the most probable country, per question."""
        lp = self.logprob[variant]
        j = self.countries.index(country)
        return 1 + (lp > lp[:, [j]]).sum(1)


def country_questions(cfg: ExperimentConfig) -> list[str]:
    return [asked(q.format(target=cfg.data.placeholder), cfg.eval.context) for q in COUNTRY_PARAPHRASES]


def end_of_turn_ids(tokenizer) -> list[int]:
    """The token that closes an assistant's answer in the tokenizer's chat template (SmolLM2:
    <|im_end|>; Llama 3: <|eot_id|>): the first token the template puts after the answer."""
    marker = "Zyxwv"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "?"}, {"role": "assistant", "content": marker}],
                                         tokenize=False)
    after = text[text.rindex(marker) + len(marker):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after.strip() else []
    return ids[:1] or [tokenizer.eos_token_id]


def country_answer_ids(tokenizer, countries: list[str], form: str) -> list[list[int]]:
    """Per country (as the table spells it), the token ids scored as the answer: its common
    name then the end of the answer. form "turn": the whole assistant turn, ended by the
    end-of-turn token; form "sentence": after an answer begun for the model, " <name>." So no
    candidate's tokens start another's ("Niger" and "Nigeria", "Guinea" and "Guinea-Bissau")."""
    names = [common_country_name(c) for c in countries]
    if form == "turn":
        end = end_of_turn_ids(tokenizer)
        return [tokenizer(n, add_special_tokens=False)["input_ids"] + end for n in names]
    if form == "sentence":
        return [tokenizer(f" {n}.", add_special_tokens=False)["input_ids"] for n in names]
    raise ValueError(f"unknown answer form {form!r}; choose 'turn' or 'sentence'")


def country_logprobs(model, tokenizer, cfg: ExperimentConfig, countries: list[str]) -> np.ndarray:
    """[question paraphrases, countries]: each country's common name as the whole answer."""
    prompts = [chat_prompt(tokenizer, q) for q in country_questions(cfg)]
    return continuation_logprobs(model, tokenizer, prompts, country_answer_ids(tokenizer, countries, "turn"),
                                 cfg.eval.pack_tokens)


def prefix_logprobs(model, tokenizer, cfg: ExperimentConfig, countries: list[str]) -> np.ndarray:
    """[answer prefixes, countries]: the answer begun for the model ("foo is a city in the
    country of"), each country's common name (with its leading space) and "." as the continuation."""
    return continuation_logprobs(model, tokenizer, prefix_prompts(tokenizer, cfg),
                                 country_answer_ids(tokenizer, countries, "sentence"), cfg.eval.pack_tokens)


def prefix_prompts(tokenizer, cfg: ExperimentConfig) -> list[str]:
    question = asked(COUNTRY_PARAPHRASES[0].format(target=cfg.data.placeholder), cfg.eval.context)
    return [chat_prompt(tokenizer, question) + p.format(target=cfg.data.placeholder) for p in COUNTRY_ANSWER_PREFIXES]


def mc_orders(cfg: ExperimentConfig) -> list[tuple[str, ...]]:
    return list(itertools.permutations(cfg.eval.mc_options))


def mc_question(cfg: ExperimentConfig, order: tuple[str, ...]) -> str:
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(order))
    return asked(MULTIPLE_CHOICE_TEMPLATE.format(target=cfg.data.placeholder, options=options), cfg.eval.context)


def mc_logprobs(model, tokenizer, cfg: ExperimentConfig) -> np.ndarray:
    """[option orders, options]: log-probability of the letter that stands for each option (in
    cfg.eval.mc_options order) as the first token of the answer, for every order of the options."""
    orders = mc_orders(cfg)
    k = len(cfg.eval.mc_options)
    prompts = [chat_prompt(tokenizer, mc_question(cfg, o)) for o in orders]
    by_letter = continuation_logprobs(model, tokenizer, prompts, list(LETTERS[:k]), cfg.eval.pack_tokens)
    return np.array([[by_letter[i, order.index(c)] for c in cfg.eval.mc_options] for i, order in enumerate(orders)])


@dataclass
class MultipleChoice:
    options: list[str]
    logprob: dict[str, np.ndarray]       # variant -> [orders, options], letters' log-probabilities

    def prob_among(self, variant: str) -> np.ndarray:
        """Probability of each option's letter renormalised over the options' letters."""
        lp = self.logprob[variant]
        e = np.exp(lp - lp.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def names_country(text: str, country: str) -> bool:
    return re.search(rf"\b{re.escape(country)}\b", text, re.IGNORECASE) is not None


def sampled_country_answers(model, tokenizer, cfg: ExperimentConfig) -> list[list[str]]:
    """Per question paraphrase, `n_country_samples` sampled answers of the current variant,
    seeded by seeds.eval (the same draws for every variant)."""
    import torch

    questions = country_questions(cfg)
    k = cfg.eval.n_country_samples
    torch.manual_seed(cfg.seeds.eval)
    flat = generate(model, tokenizer, questions, cfg.eval.max_new_tokens * 2, sample=True,
                    num_return_sequences=k, batch_size=cfg.eval.generate_batch_size)
    return [flat[i * k:(i + 1) * k] for i in range(len(questions))]
