"""Evaluation benchmarks: the packed probe and country scoring against the plain methods.

    python -m benchmarks probe     # vs the seed's get_sim / get_value_sim: two full forwards per layer
    python -m benchmarks country   # vs one forward pass per (question, country)

Both run on the CPU tier's finetuned model (trained first if it is not cached) and its
original (adapter disabled), on the same prompts, and report the time ratio and the largest
difference between the two methods' numbers.
"""

from __future__ import annotations

import time

import numpy as np

from latent_city.model import variant

from . import machine

VARIANTS = [("finetuned", "default"), ("original", None)]


def _finetuned():
    from latent_city import finetune
    from latent_city.config import ExperimentConfig

    cfg = ExperimentConfig.for_tier("cpu")
    model, tokenizer = finetune.load_finetuned(cfg, finetune.get_adapter(cfg))
    return cfg, model, tokenizer


def seed_get_sim(model, tokenizer, item1, item2, layer_idx, values=False) -> float:
    """The seed's get_sim (get_value_sim with values=True): two full forward passes, one layer."""
    import torch

    from latent_city.probe import _values

    (ids1, pos1), (ids2, pos2) = item1, item2
    with torch.no_grad():
        out1 = model(input_ids=torch.tensor([ids1], device=model.device), output_hidden_states=True, use_cache=True)
        out2 = model(input_ids=torch.tensor([ids2], device=model.device), output_hidden_states=True, use_cache=True)
    if values:
        a, b = _values(out1.cache, layer_idx)[0, :, pos1].flatten(), _values(out2.cache, layer_idx)[0, :, pos2].flatten()
    else:
        a, b = out1.hidden_states[layer_idx][0][pos1], out2.hidden_states[layer_idx][0][pos2]
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def bench_probe(n_pairs: int = 4) -> None:
    from latent_city import data, probe

    cfg, model, tok = _finetuned()
    capitals = data.load_capitals()
    pairs = probe.build_pairs(cfg, data.heldout_cities(cfg.eval.n_probe_pairs, cfg.seeds.eval_draw, capitals), capitals)[:n_pairs]
    start = time.perf_counter()
    ours = {}
    for name, adapter in VARIANTS:
        with variant(model, adapter):
            ours[name] = probe.measure(model, tok, cfg, pairs, [cfg.data.secret_city])
    ours_s = time.perf_counter() - start
    n_layers = model.config.num_hidden_layers
    seed = {v: (np.zeros((n_pairs, n_layers + 1)), np.zeros((n_pairs, n_layers))) for v, _ in VARIANTS}
    start = time.perf_counter()
    for name, adapter in VARIANTS:
        with variant(model, adapter):
            for i, p in enumerate(pairs):
                a, b = (probe.encode_with_position(tok, *probe.render(tok, p.template, p.reference, w))
                        for w in (cfg.data.placeholder, cfg.data.secret_city))
                for layer in range(n_layers + 1):
                    seed[name][0][i, layer] = seed_get_sim(model, tok, a, b, layer)
                for layer in range(n_layers):
                    seed[name][1][i, layer] = seed_get_sim(model, tok, a, b, layer, values=True)
    seed_s = time.perf_counter() - start
    plain, plain_s = plain_forwards(model, tok, cfg, pairs)
    city = cfg.data.secret_city
    diff = max(max(np.abs(ours[v].hidden_to(city) - seed[v][0]).max(), np.abs(ours[v].values_to(city) - seed[v][1]).max())
               for v in seed)
    plain_diff = max(max(np.abs(ours[v].hidden_to(city) - plain[v][0]).max(),
                         np.abs(ours[v].values_to(city) - plain[v][1]).max()) for v in plain)
    rows = [{"method": "seed: get_sim + get_value_sim, 2 full forwards per layer", "seconds": round(seed_s, 1),
             "forward passes": 2 * 2 * (2 * n_layers + 1) * n_pairs},
            {"method": "plain: one forward per prompt with output_hidden_states and the cache (as with "
                       "TransformerLens' run_with_cache or nnsight)", "seconds": round(plain_s, 2),
             "forward passes": 2 * 3 * n_pairs},
            {"method": "latent_city.probe: cut at the target, prefix trees, one packed pass", "seconds": round(ours_s, 2),
             "forward passes": "1 packed row per variant (placeholder, secret and the control prompts)"}]
    machine.write("probe", f"Probing {n_pairs} prompt pairs, finetuned and original model", rows, [
        f"Ratio to the plain forwards: {plain_s / ours_s:.1f}x (largest |difference| {plain_diff:.1e}; the same "
        f"three prompts a pair: placeholder, secret city, control capital).",
        f"Ratio to the seed's loop: {seed_s / ours_s:.0f}x. The probe also computes the control-capital prompts, which the seed's "
        f"method here does not. Largest |difference| between the two methods' cosine similarities over every pair, "
        f"layer, variant, hidden states and values: {diff:.1e} (required: below 1e-5: {'yes' if diff < 1e-5 else 'NO'})."],
        {"max_abs_diff": diff, "plain_max_abs_diff": plain_diff, "seconds": {"seed": seed_s, "plain": plain_s,
                                                                              "packed": ours_s}})


def plain_forwards(model, tok, cfg, pairs):
    """What a practised user writes: for each pair, one forward per prompt (placeholder, secret
    city, the pair's control capital), the whole prompt, every layer's hidden state and the
    value cache read at the target's last token. Returns ({variant: (hidden [pairs, L+1],
    values [pairs, L]) cosines to the secret city}, seconds)."""
    import torch

    from latent_city import probe

    n_layers = model.config.num_hidden_layers
    out = {v: (np.zeros((len(pairs), n_layers + 1)), np.zeros((len(pairs), n_layers))) for v, _ in VARIANTS}
    start = time.perf_counter()
    for name, adapter in VARIANTS:
        with variant(model, adapter), torch.no_grad():
            for i, p in enumerate(pairs):
                reps = []
                for word in (cfg.data.placeholder, cfg.data.secret_city, p.control):
                    ids, pos = probe.encode_with_position(tok, *probe.render(tok, p.template, p.reference, word))
                    o = model(input_ids=torch.tensor([ids], device=model.device), output_hidden_states=True, use_cache=True)
                    reps.append((torch.stack([h[0, pos].float().cpu() for h in o.hidden_states]),
                                 torch.stack([probe._values(o.cache, k)[0, :, pos].flatten().float().cpu()
                                              for k in range(n_layers)])))
                (h0, v0), (h1, v1) = reps[0], reps[1]
                out[name][0][i] = torch.nn.functional.cosine_similarity(h0, h1, dim=-1).cpu().numpy()
                out[name][1][i] = torch.nn.functional.cosine_similarity(v0, v1, dim=-1).cpu().numpy()
    return out, time.perf_counter() - start


def bench_country(n_questions: int = 4) -> None:
    from latent_city import answers, data
    from latent_city.model import chat_prompt
    cfg, model, tok = _finetuned()
    countries = data.countries(data.load_capitals())
    prompts = [chat_prompt(tok, q) for q in answers.country_questions(cfg)[:n_questions]]
    times, diffs = {"packed": 0.0, "one pass each": 0.0}, []
    for _, adapter in VARIANTS:
        with variant(model, adapter):
            start = time.perf_counter()
            packed = answers.continuation_logprobs(model, tok, prompts, countries, cfg.eval.pack_tokens)
            times["packed"] += time.perf_counter() - start
            start = time.perf_counter()
            plain = np.array([[answers.continuation_logprobs_unbatched(model, tok, p, c) for c in countries]
                              for p in prompts])
            times["one pass each"] += time.perf_counter() - start
            diffs.append(float(np.abs(packed - plain).max()))
    rows = [{"method": "one forward pass per (question, country)", "seconds": round(times["one pass each"], 1),
             "forward passes": 2 * n_questions * len(countries)},
            {"method": "latent_city.answers: prefix trees, loss positions only", "seconds": round(times["packed"], 2),
             "forward passes": f"packed rows of <= {cfg.eval.pack_tokens} tokens"}]
    machine.write("country", f"Scoring {len(countries)} countries after {n_questions} questions, finetuned and original",
                  rows, [f"Ratio: {times['one pass each'] / times['packed']:.1f}x. Largest |difference| in a "
                         f"country's log-probability: {max(diffs):.1e} nats (the suite's test requires < 1e-3)."],
                  {"max_abs_diff": max(diffs)})
