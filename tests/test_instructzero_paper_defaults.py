"""InstructZero's paper-scale defaults (issue 13): what the official code does, checked one by one, and the
sources a paper run needs, checked before anything heavy loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data.induction_tasks import NO_EXECUTE_FILE, OFFICIAL_TASKS, load_task
from data.llm.client import ChatRequest, ModelUnavailable
from data.llm.endpoint import check_model_served
from data.llm.serve import make_server, serve_in_thread
from methods.instructzero.config import InstructZeroConfig
from methods.instructzero.soft_prompt import SoftPromptWriter


def method_config(cfg) -> InstructZeroConfig:
    return InstructZeroConfig(**dict(cfg.method.items()))


def test_paper_budget_is_the_official_setting(compose) -> None:
    paper = compose(["method=instructzero", "scale=paper"])
    m = method_config(paper)
    assert (paper.model.name, paper.model.dtype, paper.model.device_map) == (
        "lmsys/vicuna-13b-v1.3",
        "float16",
        "auto",
    )
    assert paper.hardware.accelerator == "gpu"
    assert (m.black_box, m.black_box_model, m.black_box_max_tokens) == ("openai", "gpt-3.5-turbo", 256)
    assert (m.task_source, m.task) == ("official", "antonyms")
    assert (m.projection, m.projection_scale, m.instruction_first_line) == ("uniform", "official", False)
    assert (m.n_soft_tokens, m.intrinsic_dim, m.max_instruction_tokens, m.budget) == (5, 10, 128, 150)
    # The CPU budgets keep their own choices (a 135M model), named in their files.
    small = method_config(compose(["method=instructzero", "scale=small"]))
    assert (small.projection_scale, small.instruction_first_line) == ("embedding", True)


def test_the_whole_decoded_instruction_is_kept_by_default() -> None:
    """The official code keeps ``batch_decode(outputs)[0]`` whole; first_line=True was the default before."""

    class Writer(SoftPromptWriter):
        def __init__(self, first_line: bool) -> None:  # postprocess needs no model
            self.first_line = first_line

    text = "  Write the larger number.\nThen stop.\n\nNothing else. "
    assert InstructZeroConfig().instruction_first_line is False
    assert Writer(InstructZeroConfig().instruction_first_line).postprocess(text) == text.strip()
    assert Writer(True).postprocess(text) == "Write the larger number."


class Embeddings(torch.nn.Module):
    """What SoftPromptWriter reads of an LM: its input embedding table (here of std ``std``)."""

    def __init__(self, vocab: int = 300, width: int = 64, std: float = 0.01) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(vocab, width)
        torch.nn.init.normal_(self.table.weight, std=std, generator=torch.Generator().manual_seed(0))

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.table


def test_default_projection_is_the_official_unscaled_uniform_init() -> None:
    """run_instructzero.py: ``torch.nn.init.uniform_(linear.weight, -1, 1)``: entries U(−1, 1), mean 0,
    variance 1/3, whatever the embedding's scale; (A z)_j then has variance d/9 for z ~ U(−1, 1)^d."""
    c = InstructZeroConfig()
    model = Embeddings(std=0.01)  # a tiny embedding std must not shrink A
    writer = SoftPromptWriter(model, None, c.n_soft_tokens, c.intrinsic_dim, c.projection, c.projection_scale)
    A = writer.A
    assert A.shape == (5 * 64, 10)
    assert float(A.abs().max()) <= 1.0 and float(A.abs().max()) > 0.99
    assert float(A.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(A.var()) == pytest.approx(1 / 3, rel=0.1)
    z = torch.rand(200, 10, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert float(writer.soft_prompt(z).var()) == pytest.approx(10 / 9, rel=0.1)
    # The embedding-matched option (the CPU budgets) is 3σ/√d times that draw.
    scaled = SoftPromptWriter(model, None, 5, 10, "uniform", "embedding")
    torch.testing.assert_close(scaled.A, A * 3 * scaled.embedding_std / 10**0.5)


class ListedModel:
    """A scripted black box the loopback server lists under the model name ``identity``."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.requests: list[ChatRequest] = []

    def complete(self, request: ChatRequest) -> str:
        self.requests.append(request)
        return "ok"


@pytest.fixture
def endpoint():
    backend = ListedModel("gpt-3.5-turbo")
    server = make_server(backend)
    serve_in_thread(server)
    try:
        yield backend, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_black_box_model_name_is_checked_before_any_record(endpoint, tmp_path: Path) -> None:
    backend, url = endpoint
    check_model_served(url, "gpt-3.5-turbo")
    with pytest.raises(ModelUnavailable, match=r"does not serve model 'gpt-3\.5-turbo-0301'.*gpt-3\.5-turbo"):
        check_model_served(url, "gpt-3.5-turbo-0301")
    # In the method: the check comes after the task files and before the open LLM loads.
    from methods.instructzero.method import InstructZero

    method = InstructZero(
        task="sum", black_box="openai", black_box_model="retired-model", base_url=url, n_pool=4, n_demos=2
    )
    with pytest.raises(ModelUnavailable, match="retired-model"):
        method.check_sources()
    assert backend.requests == []  # not one record was sent


def test_official_task_names_are_checked_and_a_missing_execute_file_holds_out_test(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"method\.task='larger_number'.*antonyms"):
        InstructZeroConfig(task="larger_number", task_source="official")
    assert set(NO_EXECUTE_FILE) <= set(OFFICIAL_TASKS) and len(OFFICIAL_TASKS) == 33
    # cs_algorithms has only raw/induce/ in the official repo: before, the run died on execute/.
    (tmp_path / "induce").mkdir()
    examples = {str(i + 1): {"input": f"Strings: s{i}", "output": str(i % 7)} for i in range(157)}
    (tmp_path / "induce" / "cs_algorithms.json").write_text(json.dumps({"examples": examples}))
    task = load_task("cs_algorithms", str(tmp_path), n_pool=100, n_dev=20, n_test=100, n_demos=10)
    assert (len(task.demos), len(task.dev), len(task.test)) == (78, 20, 59)
    seen = [{e.input for e in part} for part in (task.demos, task.dev, task.test)]
    assert seen[0].isdisjoint(seen[1]) and seen[0].isdisjoint(seen[2]) and seen[1].isdisjoint(seen[2])
    with pytest.raises(ValueError, match=r"no .*induce/antonyms\.json; the official tasks are"):
        load_task("antonyms", str(tmp_path), 100, 20, 100)


def test_official_files_by_url_fail_with_the_file_they_need(endpoint) -> None:
    """A URL prefix (the default is the official repo's): a missing file names itself, an unreachable
    host names the URL and the offline alternative (before: a urllib traceback)."""
    _, url = endpoint
    with pytest.raises(ValueError, match=r"no http://127\.0\.0\.1:\d+/raw/induce/antonyms\.json"):
        load_task("antonyms", url.replace("/v1", "/raw"), 100, 20, 100)
    with pytest.raises(ValueError, match=r"could not download http://127\.0\.0\.1:9/raw.*local folder"):
        load_task("antonyms", "http://127.0.0.1:9/raw", 100, 20, 100)
