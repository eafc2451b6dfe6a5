"""Instruction tuning of a causal LM as a Lightning ``fit``: the loss covers the response (and EOS)
only, never the prompt, as in Alpaca, AlpaGasus and Cherry. Full fine-tuning or LoRA through PEFT.

Paper hyper-parameters (7B, ``scale=paper``): lr 2e-5, 3 epochs, batch 128, warm-up 0.03, cosine decay,
weight decay 0, max length 512. ``scale=small`` trains SmolLM2-135M with LoRA for a CPU-sized budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning
import torch
from torch.utils.data import DataLoader

from data.config import TuningConfig
from data.instructions.parallel_fit import fit_episode, strategy_for, unsharded, world_size
from data.instructions.records import InstructionRecord
from data.instructions.template import format_prompt
from runners.distributed import accumulation


def encode(
    tokenizer: Any, record: InstructionRecord, max_length: int, template: str = "alpaca"
) -> dict[str, list[int]]:
    """Prompt tokens labelled -100 (ignored), response + EOS tokens labelled with themselves."""
    prompt = tokenizer(format_prompt(record, template)).input_ids
    response = [*tokenizer(record.output, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
    ids = (prompt + response)[:max_length]
    labels = ([-100] * len(prompt) + response)[:max_length]
    return {"input_ids": ids, "labels": labels}


def collate(batch: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), width), pad_id)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item["input_ids"])
        ids[row, :n], labels[row, :n], mask[row, :n] = (
            torch.tensor(item["input_ids"]),
            torch.tensor(item["labels"]),
            1,
        )
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class InstructionData(lightning.LightningDataModule):
    def __init__(
        self,
        records: Sequence[InstructionRecord],
        tokenizer: Any,
        cfg: TuningConfig,
        seed: int,
        template: str = "alpaca",
    ) -> None:
        super().__init__()
        self.items = [encode(tokenizer, r, cfg.max_length, template) for r in records]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.cfg, self.seed = cfg, seed

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.items,
            batch_size=self.cfg.micro_batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=lambda b: collate(b, self.pad_id),
        )


def with_lora(model: Any, cfg: TuningConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


class InstructionTuner(lightning.LightningModule):
    def __init__(self, model: Any, cfg: TuningConfig, total_steps: int) -> None:
        super().__init__()
        self.model = with_lora(model, cfg) if cfg.mode == "lora" else model
        self.cfg, self.total_steps = cfg, total_steps

    def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        loss = self.model(**batch).loss  # HF shifts the labels; -100 (the prompt) is ignored
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_gradient_clipping(
        self,
        optimizer: Any,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Under FSDP, clip by the norm over every shard through the root module's ``clip_grad_norm_`` (a
        collective), as HF Trainer does for the official ``--fsdp`` runs: Lightning's FSDP precision clips
        by value only and raises for ``"norm"`` (Lightning-AI/pytorch-lightning#19235)."""
        from torch.distributed.fsdp import FullyShardedDataParallel

        root = self.trainer.strategy.model
        if gradient_clip_val and isinstance(root, FullyShardedDataParallel):
            root.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        total = max(1, self.total_steps)
        warmup = max(1, round(self.cfg.warmup_ratio * total))

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay to 0
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@torch.no_grad()
def generate_answers(
    model: Any,
    tokenizer: Any,
    records: Sequence[InstructionRecord],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    template: str = "alpaca",
    device: torch.device | str | None = None,
) -> list[str]:
    """Greedy answers to each record's prompt (left-padded batches), as the official generation scripts
    (greedy ``model.generate``; they cap prompt + answer at 1024 tokens, we cap the answer). ``device``
    (the runner's, ``ctx.device``) is where the model is moved and generates; None: where it is."""
    if device is not None:
        model = model.to(device)
    answers: list[str] = []
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(records), batch_size):
            prompts = [format_prompt(r, template) for r in records[start : start + batch_size]]
            # input ids and mask only: a tokenizer that also returns token_type_ids breaks Llama's generate
            batch = tokenizer(prompts, return_tensors="pt", padding=True, return_token_type_ids=False).to(
                model.device
            )
            out = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            for row in out[:, batch["input_ids"].shape[1] :]:
                answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        tokenizer.padding_side = side
    return answers


def fp32_master_weights(model: Any) -> Any:
    """Upcast every trainable floating-point parameter held in 16 bits to fp32, in place.

    AdamW on bf16 parameters rounds each small update away (at lr 2e-5 a weight of size 0.02 moves less
    than half a bf16 ulp per step), so full fine-tuning keeps fp32 master weights and computes in 16 bits
    under autocast (``precision=bf16-mixed``), as HF Trainer with ``--bf16`` on an fp32-loaded model does
    (the official Alpaca/Cherry/AlpaGasus train.py load fp32 and train with ``--bf16 True``)."""
    half = (torch.float16, torch.bfloat16)
    if any(p.requires_grad and p.dtype in half for p in model.parameters()):
        for p in model.parameters():
            if p.requires_grad and p.dtype in half:
                p.data = p.data.float()
    return model


def tune(
    model: Any,
    tokenizer: Any,
    records: Sequence[InstructionRecord],
    cfg: TuningConfig,
    seed: int,
    accelerator: str = "cpu",
    max_steps: int | None = None,
    precision: str = "32-true",
    template: str = "alpaca",
    hardware: Any | None = None,
) -> Any:
    """Fine-tune ``model`` on ``records`` and return the tuned model (a PEFT model in LoRA mode), on the
    device the fit ran on.

    ``max_steps`` fixes the number of optimizer steps whatever the data size (equal-compute comparisons
    of data selections); otherwise ``cfg.epochs`` epochs are run. ``precision`` is Lightning's
    (``hardware.precision``: ``32-true``, ``bf16-mixed``, ...); the trained parameters are fp32 masters
    whatever the dtype the model was loaded in (``fp32_master_weights``), so a full fine-tune returns
    fp32 weights: the caller casts them for saving. Gradients are clipped at ``cfg.max_grad_norm``
    (1.0: HF Trainer's default ``max_grad_norm``, which the official train.py scripts keep).

    ``hardware`` (the run's ``HardwareConfig`` node) sets accelerator, devices, nodes, strategy and
    precision, and then overrides ``accelerator``/``precision``. Under ddp or fsdp ``cfg.batch_size`` stays
    the global batch (each rank accumulates fewer micro-batches), rank 0 returns the tuned model and the
    ranks launched for this fit leave once it is done (data.instructions.parallel_fit).
    """
    if not records:  # the stage that selected nothing says why; this is the last guard before Lightning
        raise ValueError("tune: no records to train on (the selection is empty)")
    if hardware is not None:
        accelerator, precision = str(hardware.accelerator), str(hardware.precision)
    world = world_size(hardware)
    accumulate = accumulation(cfg.batch_size, cfg.micro_batch_size, world)
    lightning.seed_everything(seed, verbose=False)
    data = InstructionData(records, tokenizer, cfg, seed, template)
    total = max_steps if max_steps is not None else cfg.epochs * math.ceil(len(records) / cfg.batch_size)
    tuner = InstructionTuner(model, cfg, total_steps=total)
    fp32_master_weights(tuner.model)  # after LoRA wrapping: only the trainable parameters are upcast
    tuner.model.train()  # from_pretrained returns eval mode (dropout off); HF Trainer trains in train mode
    strategy = strategy_for(hardware, tuner.model)
    trainer = lightning.Trainer(
        accelerator=accelerator,
        devices=hardware.devices if world > 1 else 1,
        num_nodes=int(getattr(hardware, "num_nodes", 1) or 1) if world > 1 else 1,
        strategy=strategy,
        precision=precision,
        gradient_clip_val=cfg.max_grad_norm,
        gradient_clip_algorithm="norm",
        max_epochs=-1 if max_steps is not None else cfg.epochs,
        max_steps=max_steps if max_steps is not None else -1,
        accumulate_grad_batches=accumulate,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    with fit_episode(hardware):
        trainer.fit(tuner, datamodule=data)
        if isinstance(strategy, str):
            tuned = tuner.model
        else:
            tuned = unsharded(trainer, model, lambda m: with_lora(m, cfg) if cfg.mode == "lora" else m)
    if tuned is None:  # an FSDP rank other than 0 outside a launch of its own: it holds no full model
        return None
    # Lightning's teardown moves the module to the CPU; the tuned model stays on the fit's device
    return tuned.to(trainer.strategy.root_device).eval()
