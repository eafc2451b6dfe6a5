"""InstructZero's parts: task metrics and data, the soft-prompt projection, cached black-box scoring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from data.induction_tasks import (
    contains_score,
    em_score,
    exact_set_score,
    f1_score,
    generate_task,
    load_task,
    normalize_prediction,
    parse_official,
    plural,
    score,
)
from data.llm.client import LLMClient
from data.llm.response_cache import ResponseCache
from methods.instructzero.scoring import BlackBoxScorer
from methods.instructzero.soft_prompt import demo_prompt, projection_matrix

# ------------------------------------------------------------------------------------------- metrics


def test_normalisation_follows_the_official_steps() -> None:
    # first line, first sentence, lower case, "-" → space, punctuation dropped
    assert normalize_prediction("The Well-Known ANSWER: cats!\nsecond line") == "the well known answer cats"
    assert normalize_prediction("Cats. And more.") == "cats"
    assert normalize_prediction("cats and dogs") == "cats dogs"  # " and " is dropped
    assert normalize_prediction("Sentence 1: a Sentence 2: b") == "a   b"


def test_metrics_on_examples() -> None:
    assert em_score("Cats.", "cats") == 1.0 and em_score("The cats", "cats") == 0.0
    # F1 of "the larger number is 69" against "69": precision 1/5, recall 1 → 2·(1/5)/(6/5) = 1/3
    assert f1_score("The larger number is 69.", "69") == pytest.approx(1 / 3)
    assert f1_score("no overlap", "69") == 0.0
    assert exact_set_score("b a a", "a b") == 1.0 and exact_set_score("a b c", "a b") == 0.0
    assert contains_score("I think the answer is cats", "cats") == 1.0
    assert contains_score("concatenate", "cat") == 0.0  # whole words only
    # several accepted answers: the best one counts
    assert score("Voiture", ["car", "voiture"], "em") == 1.0
    assert score("a b", ["a", "a b c"], "f1") == pytest.approx(max(2 / 3, 0.8))


# ---------------------------------------------------------------------------------------------- tasks


def test_generated_tasks_are_deterministic_disjoint_and_correct() -> None:
    a = generate_task("sum", n_pool=10, n_dev=8, n_test=8)
    assert a == generate_task("sum", n_pool=10, n_dev=8, n_test=8)
    inputs = [e.input for e in a.demos + a.dev + a.test]
    assert len(set(inputs)) == len(inputs) == 26
    for e in a.dev:
        x, y = map(int, e.input.split())
        assert e.answers == (str(x + y),)
    letters = generate_task("letters_list", 2, 3, 3)
    assert all(e.answers[0] == " ".join(e.input) for e in letters.dev)
    sort = generate_task("word_sorting", 2, 3, 3)
    assert all(e.answers[0] == " ".join(sorted(e.input.removeprefix("List: ").split())) for e in sort.dev)
    assert [plural(w) for w in ("cat", "box", "city", "toy", "wolf", "child")] == [
        "cats", "boxes", "cities", "toys", "wolves", "children",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="choose one of"):
        generate_task("no_such_task", 1, 1, 1)


def test_official_json_format_is_read(tmp_path: Path) -> None:
    def write(split: str, n: int) -> None:
        examples = {str(i + 1): {"input": f"w{split}{i}", "output": f"W{split}{i}"} for i in range(n)}
        (tmp_path / split).mkdir()
        (tmp_path / split / "toy.json").write_text(json.dumps({"metadata": {}, "examples": examples}))

    write("induce", 30)
    write("execute", 12)
    task = load_task("toy", str(tmp_path), n_pool=20, n_dev=5, n_test=10)
    # the official split: the pool is half of induce (15 of 30, under n_pool=20), dev from the rest
    assert (len(task.demos), len(task.dev), len(task.test)) == (15, 5, 10)
    assert {e.input for e in task.demos}.isdisjoint(e.input for e in task.dev)
    assert all(e.input.startswith("wexecute") for e in task.test) and task.metric == "em"
    # per-task fields of the official loader
    import random

    data = {"examples": {"1": {"input": "cat", "possible_translations": ["chat", "le chat"]}}}
    assert parse_official("translation_en-fr", data, random.Random(0))[0].answers == ("chat", "le chat")
    data = {"examples": {"1": {"cause": "It rained.", "effect": "The grass is wet."}}}
    ex = parse_official("cause_and_effect", data, random.Random(0))[0]
    assert ex.answers == ("It rained.",) and "Sentence 1:" in ex.input and "Sentence 2:" in ex.input


def test_demo_prompt_is_the_official_template() -> None:
    task = generate_task("first_word_letter", 2, 1, 1)
    text = demo_prompt(task.demos)
    d0, d1 = task.demos
    assert (
        text
        == f"Input: {d0.input}\nOutput: {d0.answers[0]}\n\nInput: {d1.input}\nOutput: {d1.answers[0]}"
        + ("\n\nThe instruction was to?")
    )


# --------------------------------------------------------------------------------------- projection


@pytest.mark.parametrize("kind", ["uniform", "normal"])
def test_projection_matches_embedding_std(kind: str) -> None:
    d, out, sigma = 10, 4000, 0.05
    A = projection_matrix(out, d, kind, "embedding", sigma, seed=3)
    assert A.shape == (out, d)
    torch.testing.assert_close(A, projection_matrix(out, d, kind, "embedding", sigma, seed=3))
    z = torch.rand(64, d, generator=torch.Generator().manual_seed(0)) * 2 - 1
    p = z @ A.T
    assert float(p.std()) == pytest.approx(sigma, rel=0.1)
    if kind == "uniform":
        assert float(A.abs().max()) <= 3 * sigma / math.sqrt(d)


def test_official_projection_is_unscaled_uniform() -> None:
    A = projection_matrix(500, 10, "uniform", "official", 0.05, seed=0)
    assert float(A.abs().max()) <= 1.0 and float(A.abs().max()) > 0.9
    with pytest.raises(ValueError, match="choose one of"):
        projection_matrix(5, 2, "cauchy", "official", 0.05, seed=0)


def test_soft_prompt_writer_shapes_and_determinism() -> None:
    """A tiny random Llama with the real SmolLM2 tokenizer: soft prompts of shape (B, N, D), and the same z
    always writes the same instruction (greedy)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from data.llm.loader import load_config, offline_model, resolve
    from methods.instructzero.soft_prompt import SoftPromptWriter

    tokenizer = AutoTokenizer.from_pretrained(resolve(offline_model()))
    vocab = load_config(offline_model()).vocab_size
    torch.manual_seed(0)
    sizes = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_key_value_heads": 1}
    config = LlamaConfig(vocab_size=vocab, num_hidden_layers=1, max_position_embeddings=512, **sizes)
    model = LlamaForCausalLM(config).eval()
    writer = SoftPromptWriter(model, tokenizer, n_tokens=3, intrinsic_dim=4, seed=0, max_new_tokens=4)
    writer.set_demos(generate_task("sum", 3, 1, 1).demos)
    z = torch.rand(2, 4) * 2 - 1
    assert writer.soft_prompt(z).shape == (2, 3, 16)
    first = writer.write(torch.cat([z, z[:1]]), batch_size=3)
    assert len(first) == 3 and first[0] == first[2]
    assert writer.write(z[:1]) == first[:1]


def test_a_tokenizer_without_chat_template_gets_the_official_vicuna_prompt() -> None:
    """Vicuna's 2023 tokenizers have no chat template; apply_chat_template raised. The official prompt is
    "{system} USER:\n{demos}\n\nThe instruction was to? ASSISTANT:"."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from data.llm.loader import load_config, offline_model, resolve
    from methods.instructzero.soft_prompt import VICUNA_SYSTEM, SoftPromptWriter, demo_prompt

    tokenizer = AutoTokenizer.from_pretrained(resolve(offline_model()))
    tokenizer.chat_template = None
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token  # as load_causal_lm does
    vocab = load_config(offline_model()).vocab_size
    torch.manual_seed(0)
    sizes = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_key_value_heads": 1}
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, num_hidden_layers=1, **sizes)).eval()
    writer = SoftPromptWriter(model, tokenizer, n_tokens=3, intrinsic_dim=4, seed=0, max_new_tokens=3)
    demos = generate_task("sum", 3, 1, 1).demos
    writer.set_demos(demos)
    text = tokenizer.decode(writer.prompt_ids[0], skip_special_tokens=True)
    assert text == f"{VICUNA_SYSTEM} USER:\n{demo_prompt(demos)} ASSISTANT:"
    assert text.endswith("\n\nThe instruction was to? ASSISTANT:")
    assert len(writer.write(torch.zeros(1, 4))) == 1
    assert len(writer.sample_plain([demos[:2], demos[1:]], temperature=1.0, top_p=1.0, seed=0)) == 2


# ------------------------------------------------------------------------------------------- scoring


class EchoBackend:
    """A stand-in black box that answers with the input's last word."""

    identity = "echo"

    def complete(self, request):
        return request.messages[-1]["content"].split("Input: ")[1].split("\n")[0]


def test_cached_re_evaluation_makes_no_client_call(tmp_path: Path) -> None:
    task = generate_task("lowercase", 2, 5, 1)  # echoing the input is right under the normalisation
    cache = ResponseCache(tmp_path / "r.sqlite")
    client = LLMClient(EchoBackend(), cache=cache, concurrency=2)
    template = "Instruction: {instruction}\n\nInput: {input}\n\nOutput:"
    scorer = BlackBoxScorer(client, task.dev, "em", template, max_tokens=4)
    a, b, c = scorer(["Repeat it.", "Say it.", "Repeat it."])
    assert c is a and b.instruction == "Say it."
    assert a.scores == (1.0,) * 5 and a.mean == pytest.approx(1.0)
    assert client.calls == 10  # two distinct instructions × five dev examples, the repeat is free
    scorer(["Say it.", "Repeat it."])
    assert client.calls == 10
    # A fresh scorer (a resumed run) finds every answer in the on-disk cache.
    fresh = LLMClient(EchoBackend(), cache=ResponseCache(tmp_path / "r.sqlite"))
    again = BlackBoxScorer(fresh, task.dev, "em", template, max_tokens=4)(["Repeat it."])
    assert fresh.calls == 0 and again[0] == a


# -------------------------------------------------------------------------------------------- config


def test_config_budgets_and_bad_values(compose) -> None:
    from methods.instructzero.config import InstructZeroConfig
    from runners.validate import ConfigError, check_schemas

    small = compose(["method=instructzero", "scale=small"])
    assert small.model.name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert InstructZeroConfig(**{k: v for k, v in small.method.items()}).budget == 12
    paper = compose(["method=instructzero", "scale=paper"])
    assert InstructZeroConfig(**{k: v for k, v in paper.method.items()}).budget == 150
    with pytest.raises(ConfigError, match=r"method\.arm='bogus'.*instructzero, matern, random, ape"):
        check_schemas(compose(["method=instructzero", "method.arm=bogus"]))


def test_scoring_through_an_openai_compatible_endpoint() -> None:
    """The same scorer over HTTP: data.llm.serve on loopback in front of the stand-in black box."""
    from data.llm.client import OpenAIBackend
    from data.llm.serve import make_server, serve_in_thread

    server = make_server(EchoBackend())
    serve_in_thread(server)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        client = LLMClient(OpenAIBackend(url, "echo"), concurrency=4)
        task = generate_task("lowercase", 2, 4, 1)
        template = "Instruction: {instruction}\n\nInput: {input}\n\nOutput:"
        scored = BlackBoxScorer(client, task.dev, "em", template, max_tokens=4)(["Repeat it."])
        assert scored[0].scores == (1.0,) * 4 and server.requests_served == 4 == client.calls
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("task", "n_induce", "sizes"),
    [
        ("cause_and_effect", 26, (13, 13)),  # before: a pool of 6 < n_demos, random.sample raised
        ("common_concept", 103, (51, 20)),  # before: a dev set of 3
        ("informal_to_formal", 105, (52, 20)),  # before: 5
        ("odd_one_out", 101, (50, 20)),  # before: 1
    ],
)
def test_small_official_tasks_keep_demos_and_a_usable_dev_set(
    tmp_path: Path, task: str, n_induce: int, sizes: tuple[int, int]
) -> None:
    write_official(tmp_path, task, n_induce)
    loaded = load_task(task, str(tmp_path), n_pool=100, n_dev=20, n_test=10, n_demos=10)
    assert (len(loaded.demos), len(loaded.dev)) == sizes
    assert {e.input for e in loaded.demos}.isdisjoint(e.input for e in loaded.dev)
    import random

    assert len(random.Random(0).sample(loaded.demos, 10)) == 10  # what the run does with them


def test_a_task_too_small_for_the_demos_is_refused_by_name(tmp_path: Path) -> None:
    write_official(tmp_path, "auto_debugging", 16)  # before: a pool of 0
    with pytest.raises(ValueError, match=r"task 'auto_debugging' has 16 induce.*pool of 8.*n_demos=10"):
        load_task("auto_debugging", str(tmp_path), n_pool=100, n_dev=20, n_test=10, n_demos=10)


def write_official(root: Path, task: str, n_induce: int) -> None:
    """Official-format induce/execute files: cause/effect pairs, concept items, or input/output."""

    def example(i: int) -> dict:
        if task == "cause_and_effect":
            return {"cause": f"cause {i}.", "effect": f"effect {i}."}
        if task == "common_concept":
            return {"items": [f"a{i}", f"b{i}", "extra"], "all_common_concepts": [f"c{i}"]}
        return {"input": f"in {i}", "output": f"out {i}"}

    for split, n in (("induce", n_induce), ("execute", 12)):
        (root / split).mkdir(exist_ok=True)
        examples = {str(i + 1): example(i + 1000 * (split == "execute")) for i in range(n)}
        (root / split / f"{task}.json").write_text(json.dumps({"metadata": {}, "examples": examples}))
