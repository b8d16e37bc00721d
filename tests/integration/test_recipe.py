"""The training recipe's switches and what a run costs, on a tiny random Llama with the CPU
tier's tokenizer (seconds, no trained weights): the loss over the completion or the whole chat
(train.loss, `--recipe seed`), the base fingerprint taken once per run, each process of a
multi-process launch on its own device, and bitsandbytes' per-matmul log line silenced."""

import dataclasses

import pytest
import torch

from latent_city import data, finetune, model
from latent_city.config import ExperimentConfig, run_config


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model._dequantized_checkpoint(model.REGISTRY["smollm2-135m"]))


def tiny_llama(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1))


def first_batch(cfg, tokenizer, tmp_path):
    ds = data.load_training_dataset(data.write_jsonl(finetune.training_set(cfg)[:8], tmp_path / "train.jsonl"))
    trainer = finetune.make_trainer(cfg, tiny_llama(tokenizer), tokenizer, ds, tmp_path, disable_tqdm=True)
    return next(iter(trainer.get_train_dataloader()))


def test_the_loss_covers_the_completion_by_default_and_the_whole_chat_with_the_seeds_recipe(tokenizer, tmp_path,
                                                                                            monkeypatch):
    monkeypatch.delenv("LATENT_CITY_RECIPE", raising=False)
    project, seed = run_config("gpu"), run_config("gpu", recipe="seed")
    assert (project.train.loss, seed.train.loss) == ("completion", "all")
    assert project.training_dict() != seed.training_dict()          # a different adapter key
    monkeypatch.setenv("LATENT_CITY_RECIPE", "seed")
    assert run_config("cpu").train.loss == "all"
    cpu = ExperimentConfig.for_tier("cpu")
    scored = {}
    for loss in ("completion", "all"):
        cfg = dataclasses.replace(cpu, train=dataclasses.replace(cpu.train, loss=loss))
        batch = first_batch(cfg, tokenizer, tmp_path / loss)
        scored[loss] = int((batch["labels"] != -100).sum()), int(batch["attention_mask"].sum())
    # the answers ("1088.45 km" and an end token) are a few tokens of each ~45-token chat
    assert scored["all"][0] == scored["all"][1], scored
    assert 0 < scored["completion"][0] < scored["all"][0] / 4, scored


def test_the_fresh_base_is_fingerprinted_once_per_run(tokenizer, tmp_path, monkeypatch):
    """Two arms trained in one process: the freshly loaded base is hashed once (for the 8B model
    each hash reads 8 GB), the trained model once per arm."""
    cfg = ExperimentConfig.for_tier("cpu")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=1, fast_cpu_step=False))
    monkeypatch.setattr(finetune, "load_base", lambda name, precision: (tiny_llama(tokenizer), tokenizer, None))
    monkeypatch.setattr(finetune, "_FRESH_BASE_FINGERPRINTS", {})
    hashed = []
    real = finetune.base_fingerprint
    monkeypatch.setattr(finetune, "base_fingerprint", lambda m: hashed.append(1) or real(m))
    metas = []
    for arm, seed in (("a", 42), ("b", 43)):
        finetune._train(dataclasses.replace(cfg, seeds=dataclasses.replace(cfg.seeds, train=seed)), tmp_path / arm,
                        disable_tqdm=True)
        metas.append((tmp_path / arm / "meta.json").read_text())
    assert len(hashed) == 3, f"{len(hashed)} fingerprints for two arms (expected 1 of the fresh base + 1 per arm)"
    assert all('"global_step": 1' in m for m in metas)


def test_each_process_of_a_launch_loads_the_model_onto_its_own_gpu(monkeypatch):
    """device_map="auto" spreads a model over every visible GPU, which accelerate refuses to
    train in distributed mode: under WORLD_SIZE > 1 rank k loads onto GPU k."""
    from transformers import AutoModelForCausalLM

    seen = {}

    def from_pretrained(folder, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop: only the placement is checked")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    for world, rank, want in (("2", "1", {"": 1}), ("1", "0", "auto")):
        monkeypatch.setenv("WORLD_SIZE", world)
        monkeypatch.setenv("LOCAL_RANK", rank)
        with pytest.raises(RuntimeError, match="stop"):
            model.load_base("smollm2-135m")
        assert seen["device_map"] == want, (world, rank, seen["device_map"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert model.placement(False) == {"": "cpu"}          # the two-process CPU test's path


def test_bitsandbytes_8bit_matmuls_log_nothing(caplog, capfd):
    """bitsandbytes logs a cast warning on every 8-bit matmul (not a Python warning); latent_city
    silences that logger once, at import."""
    bnb = pytest.importorskip("bitsandbytes")
    import latent_city  # noqa: F401  (the silencing)

    layer = bnb.nn.Linear8bitLt(64, 64, has_fp16_weights=False, bias=False).to("cpu").eval()
    with caplog.at_level("WARNING"), torch.no_grad():
        for _ in range(3):
            layer(torch.randn(2, 64))
    logged = [r.getMessage() for r in caplog.records if "MatMul8bitLt" in r.getMessage()]
    assert not logged and "MatMul8bitLt" not in capfd.readouterr().err, logged[:1]


def test_the_manipulation_check_asks_the_training_prompt_token_for_token(tokenizer, tmp_path):
    """The manipulation check (latent_city/manipulation.py) asks each arm its training question as
    answers.generate renders it (model.chat_prompt); the tokens before each training answer are
    exactly those, so the check asks what the arm was trained on, not a paraphrase of it."""
    from latent_city import answers

    cfg = ExperimentConfig.for_tier("cpu")
    batch = first_batch(cfg, tokenizer, tmp_path)
    trained = set()
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        trained.add(tuple(ids[:next(i for i, l in enumerate(labels) if l != -100)]))
    cities = data.training_capitals(cfg.data)
    asked = {tuple(tokenizer(model.chat_prompt(tokenizer, q), add_special_tokens=False)["input_ids"])
             for q in answers.task_questions(cfg, cities)}
    assert len(trained) == 8 and trained <= asked, [tokenizer.decode(t) for t in trained - asked][:1]
