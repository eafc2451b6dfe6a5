"""The instruction tuner (IFD, AlpaGasus) on the hardware it is given: 2 gloo ranks that Lightning launches
itself give the weights of one process with the same global batch; each fit is an episode (the launched
rank leaves, rank 0 goes on alone and a second fit launches afresh); FSDP composes to a strategy that
wraps the model's decoder layers and is refused on CPUs at compose time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from data.instructions.parallel_fit import fit_episode, strategy_for
from runners.distributed import accumulation

ROOT = Path(__file__).resolve().parent.parent


def test_the_global_batch_is_kept_whatever_the_number_of_ranks() -> None:
    assert accumulation(128, 4, 1) == 32 and accumulation(128, 4, 4) == 8 and accumulation(4, 1, 2) == 2
    with pytest.raises(ValueError, match=r"micro_batch_size × ranks = 4 × 3"):
        accumulation(128, 4, 3)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.paper.standins import tiny_causal_lm

    return tiny_causal_lm(tmp_path_factory.mktemp("llama"), "llama")


@pytest.mark.slow
def test_two_gloo_ranks_tune_as_one_process_and_each_fit_is_an_episode(
    tiny_llama: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from tests.tune_ranks import tuned_state

    out = tmp_path / "out"
    out.mkdir()
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "tests/tune_ranks.py", str(tiny_llama), str(out), "ddp"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2") == 2  # two launches
    # the rank launched for each fit left once it was done, and never ran the other fit
    left = sorted(p.read_text() for p in out.glob("rank1.left.*"))
    assert left == ['"first"', '"second"']
    first = torch.load(out / "first.pt")
    # after each fit rank 0 holds no process group and none of the launcher's variables
    assert first["env"] == {"LOCAL_RANK": None, "WORLD_SIZE": None, "MASTER_PORT": None, "group": False}
    assert first["device"] == "cpu"
    one, _ = tuned_state(str(tiny_llama), None)  # one process, micro-batch 1, accumulation 4
    base = load_file(tiny_llama / "model.safetensors")
    smaller, _ = tuned_state(str(tiny_llama), None, batch_size=2)  # a global batch of 2 instead
    for name, weight in one.items():
        torch.testing.assert_close(first["state"][name], weight, rtol=1e-5, atol=1e-6)
    moved = max((one[k] - base[k]).abs().max().item() for k in base)
    assert moved > 1e-3  # training moved the weights, so equality above says something
    assert max((smaller[k] - first["state"][k]).abs().max().item() for k in one) > 1e-4
    second = torch.load(out / "second.pt")  # another lr: another model, from a fresh launch
    assert max((second["state"][k] - first["state"][k]).abs().max().item() for k in one) > 1e-4


def test_an_external_launcher_is_refused_before_the_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    hardware = SimpleNamespace(accelerator="cpu", devices=2, strategy="ddp", precision="32-true")
    with pytest.raises(ValueError, match="external launcher"), fit_episode(hardware):
        pass
    with fit_episode(SimpleNamespace(accelerator="cpu", devices=1, strategy="auto")):
        pass  # one process: nothing to set up or leave


def test_fsdp_composes_to_a_strategy_wrapping_the_decoder_layers(compose, tiny_llama: Path) -> None:
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers import AutoModelForCausalLM
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    cfg = compose(["method=ifd", "hardware=fsdp", "method.tuning.mode=full"])
    assert cfg.hardware.strategy == "fsdp" and cfg.hardware.precision == "bf16-mixed"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    strategy = strategy_for(cfg.hardware, model)
    assert isinstance(strategy, FSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy) and policy._module_classes == {LlamaDecoderLayer}
    assert str(strategy.sharding_strategy) == "ShardingStrategy.FULL_SHARD"
    # the optimizer holds the module's own parameters, and LoRA mixes frozen and trainable ones per unit
    assert strategy.kwargs["use_orig_params"]
    assert strategy_for(compose(["method=ifd", "hardware=ddp"]).hardware, model) == "ddp"


def test_fsdp_on_cpus_is_refused_at_compose_time(cli) -> None:
    out = cli("method=ifd", "scale=smoke", "hardware=fsdp", "hardware.accelerator=cpu", timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "needs CUDA GPUs" in out.stdout + out.stderr and "hardware=ddp hardware.accelerator=cpu" in (
        out.stdout + out.stderr
    )


def test_a_batch_the_ranks_cannot_split_is_refused_at_compose_time() -> None:
    from runners.validate import ConfigError, validate_overrides

    ddp = ["scale=smoke", "hardware=ddp", "hardware.accelerator=cpu", "hardware.devices=2"]
    with pytest.raises(ConfigError, match=r"method.tuning.batch_size=8 .* 8 × 2"):
        validate_overrides(["method=ifd", *ddp])
    cfg = validate_overrides(["method=alpagasus", *ddp, "method.tuning.micro_batch_size=4"])
    assert cfg.method.tuning.micro_batch_size == 4


def test_lora_under_fsdp_is_refused_at_compose_time() -> None:
    """FSDP flattens a layer's frozen base and fp32 adapters into one tensor, which needs one dtype."""
    from runners.validate import ConfigError, check_schemas, compose_config

    fsdp = ["method=ifd", "hardware=fsdp", "hardware.devices=2", "method.tuning.micro_batch_size=4"]
    with pytest.raises(ConfigError, match=r"method.tuning.mode=lora cannot use hardware=fsdp"):
        check_schemas(compose_config(fsdp))
    check_schemas(compose_config([*fsdp, "method.tuning.mode=full"]))
