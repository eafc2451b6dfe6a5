"""The open LLM as an instruction writer: a soft prompt p = A z prepended to the demonstration prompt.

z ∈ [−1, 1]^d is what Bayesian optimisation searches; the fixed random matrix A ∈ R^{(N·D)×d} (seeded)
lifts it to N soft-token embeddings of the LLM's width D. The official code draws
A's entries from U(−1, 1) (run_instructzero.py: ``torch.nn.init.uniform_(linear.weight, -1, 1)``):
``scale="official"``, the paper-scale default (config.py). That makes soft tokens ~50× larger than a
small model's token embeddings, so ``scale="embedding"`` (this class's default and the CPU budgets')
scales A so that the entries of A z have the embedding table's standard deviation (z uniform on
[−1, 1]^d). The official "normal" option draws N(−1, 1) entries (``normal_(weight, -1, 1)``: mean −1; the
std it computes is unused); ``kind="normal"`` here is zero-mean, the paper's option being uniform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from data.induction_tasks import Example
from data.llm.client import VICUNA_SYSTEM

PROJECTIONS = ("uniform", "normal")
SCALES = ("embedding", "official")
# The official instruction-induction prompt: demonstrations, then the question to the open LLM.
DEMO_TEMPLATE = "Input: {input}\nOutput: {output}"
INDUCTION_QUESTION = "The instruction was to?"


def demo_prompt(demos: Sequence[Example]) -> str:
    """The official ``"[full_DEMO]\\n\\nThe instruction was to?"`` with ``"Input: x\\nOutput: y"`` demos."""
    body = "\n\n".join(DEMO_TEMPLATE.format(input=d.input, output=d.answers[0]) for d in demos)
    return f"{body}\n\n{INDUCTION_QUESTION}"


# The official open-LLM prompt for Vicuna (run_instructzero.py LMForwardAPI: ``f"{system_prompt}
# USER:{init_token} ASSISTANT:"`` with init_token = "\n" + the demo prompt), used when the tokenizer has
# no chat template (Vicuna's 2023 tokenizers have none: apply_chat_template raises).
VICUNA_TEMPLATE = "{system} USER:\n{prompt} ASSISTANT:"


def induction_text(tokenizer: Any, demos: Sequence[Example]) -> tuple[str, bool]:
    """The open LLM's input text and whether encoding it must add special tokens: the tokenizer's chat
    template (its text already holds them), else the official Vicuna prompt, encoded with the BOS as the
    official code does."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": demo_prompt(demos)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), False
    return VICUNA_TEMPLATE.format(system=VICUNA_SYSTEM, prompt=demo_prompt(demos)), True


def projection_matrix(
    out_dim: int, intrinsic_dim: int, kind: str, scale: str, embedding_std: float, seed: int
) -> torch.Tensor:
    """A ∈ R^{out_dim×d}, fixed by ``seed``.

    With z_i ~ U(−1, 1) (variance 1/3) and i.i.d. entries of variance v, Var[(A z)_j] = d·v/3. Matching
    the embedding std σ gives v = 3σ²/d: uniform entries on ±3σ/√d, normal entries with std σ√(3/d).
    """
    g = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        a = torch.rand(out_dim, intrinsic_dim, generator=g) * 2 - 1  # U(−1, 1), the official draw
        factor = 3 * embedding_std / math.sqrt(intrinsic_dim)
    elif kind == "normal":
        a = torch.randn(out_dim, intrinsic_dim, generator=g)
        factor = embedding_std * math.sqrt(3 / intrinsic_dim)
    else:
        raise ValueError(f"projection={kind!r}; choose one of: {', '.join(PROJECTIONS)}")
    if scale == "official":
        factor = 1.0
    elif scale != "embedding":
        raise ValueError(f"projection_scale={scale!r}; choose one of: {', '.join(SCALES)}")
    return a * factor


class SoftPromptWriter:
    """Turns points z into instructions: embed [A z ; prompt], greedy decoding, batched over z.

    Every z in a batch shares the same text prompt, so the batch needs no padding.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        n_tokens: int,
        intrinsic_dim: int,
        projection: str = "uniform",
        scale: str = "embedding",
        seed: int = 0,
        max_new_tokens: int = 128,
        first_line: bool = True,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.n_tokens, self.intrinsic_dim = n_tokens, intrinsic_dim
        self.max_new_tokens, self.first_line = max_new_tokens, first_line
        weight = model.get_input_embeddings().weight.detach()
        self.width = weight.shape[1]
        self.embedding_std = float(weight.float().std())
        self.A = projection_matrix(
            n_tokens * self.width, intrinsic_dim, projection, scale, self.embedding_std, seed
        )
        self.prompt_ids: torch.Tensor | None = None

    def set_demos(self, demos: Sequence[Example]) -> None:
        text, special = induction_text(self.tokenizer, demos)
        self.prompt_ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=special).input_ids

    def soft_prompt(self, z: torch.Tensor) -> torch.Tensor:
        """(B, d) → (B, N, D): p = A z, one row of soft tokens per point."""
        return (z.float() @ self.A.T).reshape(z.shape[0], self.n_tokens, self.width)

    def postprocess(self, text: str) -> str:
        text = text.strip()
        if self.first_line:
            text = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return text

    @torch.no_grad()
    def write(self, z: torch.Tensor, batch_size: int = 8) -> list[str]:
        if self.prompt_ids is None:
            raise RuntimeError("set_demos() first")
        device = self.model.device
        embed = self.model.get_input_embeddings()
        prompt = embed(self.prompt_ids.to(device))
        out = []
        for start in range(0, z.shape[0], batch_size):
            soft = self.soft_prompt(z[start : start + batch_size]).to(device, prompt.dtype)
            inputs = torch.cat([soft, prompt.expand(soft.shape[0], -1, -1)], dim=1)
            mask = torch.ones(inputs.shape[:2], dtype=torch.long, device=device)
            ids = self.model.generate(
                inputs_embeds=inputs,
                attention_mask=mask,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            # With inputs_embeds only, generate returns just the new tokens.
            out += [self.postprocess(t) for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return out

    @torch.no_grad()
    def sample_plain(
        self,
        demo_sets: Sequence[Sequence[Example]],
        temperature: float,
        top_p: float,
        seed: int,
        batch_size: int = 8,
    ) -> list[str]:
        """APE-style proposals: no soft prompt, one sampled instruction per demonstration subset."""
        tok, device = self.tokenizer, self.model.device
        encoded = [induction_text(tok, d) for d in demo_sets]
        texts, special = [t for t, _ in encoded], encoded[0][1] if encoded else False
        torch.manual_seed(seed)
        out = []
        side, tok.padding_side = tok.padding_side, "left"
        try:
            for start in range(0, len(texts), batch_size):
                batch = tok(
                    texts[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=special,
                ).to(device)
                ids = self.model.generate(
                    **batch,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=True,
                    temperature=temperature,
                    top_p=top_p,
                    top_k=None,
                    pad_token_id=tok.pad_token_id,
                )
                new = ids[:, batch["input_ids"].shape[1] :]
                out += [self.postprocess(t) for t in tok.batch_decode(new, skip_special_tokens=True)]
        finally:
            tok.padding_side = side
        return out
