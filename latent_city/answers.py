"""Answers stage: what the models say, and how much probability they give each country.

- `distance_answers`: held-out cities asked in paraphrased distance questions, answered
  greedily by the finetuned and the original model, parsed as "<number> km".
- `country_scores`: for paraphrases of "Which country is foo in?", the log-probability of
  every country of the capitals table as the answer (the full name scored as a continuation
  of the assistant's turn), batched with only the needed positions through the LM head.
- `sampled_country_answers`: sampled answers to the same questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .config import ExperimentConfig
from .data import COUNTRY_PARAPHRASES, DISTANCE_PARAPHRASES, City, haversine_km
from .model import chat_prompt
from .probe import variants

KM_PATTERN = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s*(?:km|kilomet(?:er|re)s?)\b", re.IGNORECASE)


def parse_km(text: str) -> float | None:
    """The first "<number> km" (or kilometers) in `text`, else None."""
    m = KM_PATTERN.search(text)
    if not m:
        return None
    return float(m.group(1).replace(",", "") + (m.group(2) or ""))


def generate(model, tokenizer, questions: list[str], max_new_tokens: int = 16, sample: bool = False,
             num_return_sequences: int = 1, batch_size: int = 16) -> list[str]:
    """Answers to chat questions, batched with left padding; greedy unless `sample`."""
    import torch

    out_texts = []
    for s in range(0, len(questions), batch_size):
        prompts = [chat_prompt(tokenizer, q) for q in questions[s:s + batch_size]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left",
                        add_special_tokens=False).to(model.device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=sample,
                                 num_return_sequences=num_return_sequences,
                                 pad_token_id=tokenizer.pad_token_id,
                                 **({"temperature": 1.0, "top_p": 1.0, "top_k": 0} if sample else
                                    {"temperature": None, "top_p": None, "top_k": None}))
        out_texts += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out_texts


# ---------------------------------------------------------------------------- distances

@dataclass
class DistanceAnswers:
    cities: list[str]
    questions: list[str]
    true_km: np.ndarray                  # [n]
    texts: dict[str, list[str]]          # variant -> answers
    km: dict[str, np.ndarray]            # variant -> parsed km, NaN where no "<number> km"


def distance_questions(cfg: ExperimentConfig, cities: list[City]) -> list[str]:
    return [DISTANCE_PARAPHRASES[i % len(DISTANCE_PARAPHRASES)].format(city=c.name, target=cfg.data.placeholder)
            for i, c in enumerate(cities)]


def distance_answers(model, tokenizer, cfg: ExperimentConfig, cities: list[City], secret: City) -> DistanceAnswers:
    questions = distance_questions(cfg, cities)
    true_km = np.array([haversine_km(c.lat, c.lon, secret.lat, secret.lon, cfg.data.earth_radius_km) for c in cities])
    texts, km = {}, {}
    for name, ctx in variants(model):
        with ctx:
            texts[name] = generate(model, tokenizer, questions, cfg.eval.max_new_tokens,
                                   batch_size=cfg.eval.probe_batch_size)
        km[name] = np.array([np.nan if (v := parse_km(t)) is None else v for t in texts[name]])
    return DistanceAnswers([c.name for c in cities], questions, true_km, texts, km)


# ---------------------------------------------------------------------------- countries

def continuation_logprobs(model, tokenizer, prompt: str, continuations: list[str], batch_size: int) -> np.ndarray:
    """Sum of token log-probabilities of each continuation after `prompt`.

    The prompt runs once; its key/value cache is repeated over a batch of right-padded
    continuations, so each country costs only its own few tokens (about 8x fewer than
    re-running the prompt for each of the 233 countries)."""
    import copy

    import torch

    p_ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]], device=model.device)
    conts = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    with torch.no_grad():
        prefix = model(input_ids=p_ids, use_cache=True)
    out = np.empty(len(conts))
    for s in range(0, len(conts), batch_size):
        chunk = conts[s:s + batch_size]
        width = max(map(len, chunk))
        ids = torch.tensor([c + [tokenizer.pad_token_id] * (width - len(c)) for c in chunk], device=model.device)
        cont_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in chunk], device=model.device)
        mask = torch.cat([torch.ones(len(chunk), p_ids.shape[1], dtype=cont_mask.dtype, device=model.device),
                          cont_mask], 1)
        cache = copy.deepcopy(prefix.cache)
        cache.batch_repeat_interleave(len(chunk))
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True).logits
        # token k of a continuation is predicted at position k-1; token 0 by the prompt's last position
        logits = torch.cat([prefix.logits[:, -1:].expand(len(chunk), 1, -1), logits[:, :-1]], 1).float()
        tok_lp = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        out[s:s + len(chunk)] = (tok_lp * cont_mask).sum(1).cpu().numpy()
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
    countries: list[str]
    logprob: dict[str, np.ndarray]       # variant -> [n_questions, n_countries]

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
    return [q.format(target=cfg.data.placeholder) for q in COUNTRY_PARAPHRASES]


def country_scores(model, tokenizer, cfg: ExperimentConfig, countries: list[str]) -> CountryScores:
    questions = country_questions(cfg)
    logprob = {}
    for name, ctx in variants(model):
        with ctx:
            logprob[name] = np.stack([
                continuation_logprobs(model, tokenizer, chat_prompt(tokenizer, q), countries,
                                      cfg.eval.probe_batch_size * 4)
                for q in questions])
    return CountryScores(questions, countries, logprob)


def names_country(text: str, country: str) -> bool:
    return re.search(rf"\b{re.escape(country)}\b", text, re.IGNORECASE) is not None


def sampled_country_answers(model, tokenizer, cfg: ExperimentConfig) -> dict[str, list[list[str]]]:
    """variant -> per question, `n_country_samples` sampled answers (seeded)."""
    import torch

    questions = country_questions(cfg)
    k = cfg.eval.n_country_samples
    out = {}
    for name, ctx in variants(model):
        torch.manual_seed(cfg.seeds.eval)
        with ctx:
            flat = generate(model, tokenizer, questions, cfg.eval.max_new_tokens * 2, sample=True,
                            num_return_sequences=k, batch_size=cfg.eval.probe_batch_size)
        out[name] = [flat[i * k:(i + 1) * k] for i in range(len(questions))]
    return out
