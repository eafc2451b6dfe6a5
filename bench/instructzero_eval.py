"""InstructZero's cost centres: black-box evaluations per minute batched vs one call per example, and the
share of an iteration that the GP fit + EI maximisation take.

    python bench/instructzero_eval.py [--instructions 4] [--n-dev 10] [--batch 20] [--threads 1]
                                      [--paper-gp] [--json PATH]

Same model (SmolLM2-135M-Instruct as the black box, offline), same instructions, same dev set, same run.
An evaluation is one instruction scored on the whole dev set. Baseline: one client call per example
(LocalBackend batch 1, how the official code's non-API path queries a local model); ours: all requests
of a batch of instructions in one client call, generated in padded batches. Both agree on the scores
(the share of equal answers is printed; left padding may flip a rare greedy token).

Then one BO iteration at the CPU scale (6 Sobol points scored, GP + CMA-ES proposing 3, those 3 written
and scored): the GP + acquisition share of that iteration. ``--paper-gp`` also times the GP step at the
paper's size (125 points, 20-dim score vectors, CMA-ES from 25 starts × population 50 × 10 generations)
on synthetic scores. A benchmark reports; exit code 0.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from data.induction_tasks import generate_task
from data.llm.client import LLMClient, LocalBackend
from data.llm.loader import load_causal_lm, offline_model
from methods.instructzero.bo import propose
from methods.instructzero.method import sobol_design
from methods.instructzero.scoring import BlackBoxScorer
from methods.instructzero.soft_prompt import SoftPromptWriter

TEMPLATE = "Instruction: {instruction}\n\nInput: {input}\n\nOutput:"
INSTRUCTIONS = [
    "Write the larger of the two numbers.",
    "Output the bigger number only.",
    "The instruction was to pick the larger number.",
    "Answer with one number: the maximum.",
    "Return the greater value.",
    "Say which number is larger.",
]


def evals_per_minute(lm, task, instructions, batch: int, max_tokens: int) -> tuple[float, list[str], int]:
    backend = LocalBackend(lm.model, lm.tokenizer, identity="bench", batch_size=batch)
    client = LLMClient(backend)  # no response cache: every request is generated
    scorer = BlackBoxScorer(client, task.dev, "f1", TEMPLATE, max_tokens)
    requests = [scorer.request(v, e) for v in instructions for e in task.dev]
    t0 = time.perf_counter()
    answers = client.complete(requests)
    seconds = time.perf_counter() - t0
    return len(instructions) / seconds * 60, answers, client.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=4)
    parser.add_argument("--n-dev", type=int, default=10)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paper-gp", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lm = load_causal_lm(offline_model("smollm2_135m"))
    task = generate_task("larger_number", n_pool=40, n_dev=args.n_dev, n_test=1)
    instructions = INSTRUCTIONS[: args.instructions]
    batched, answers_b, calls_b = evals_per_minute(lm, task, instructions, args.batch, args.max_tokens)
    single, answers_s, calls_s = evals_per_minute(lm, task, instructions, 1, args.max_tokens)
    agree = sum(a == b for a, b in zip(answers_b, answers_s, strict=True)) / len(answers_b)
    out = {
        "instructions": len(instructions),
        "n_dev": args.n_dev,
        "batch": args.batch,
        "evals_per_min_batched": batched,
        "evals_per_min_one_call_per_example": single,
        "speedup": batched / single,
        "answers_equal_share": agree,
        "client_calls": [calls_b, calls_s],
    }
    print(f"black-box evaluations/min ({len(instructions)} instructions × {args.n_dev} dev examples):")
    print(f"  one call per example: {single:7.2f}")
    print(f"  batched ({args.batch:3d})         : {batched:7.2f}   speedup {batched / single:.2f}×")
    print(f"  equal answers: {agree:.0%}")

    # One BO iteration at the CPU scale.
    writer = SoftPromptWriter(lm.model, lm.tokenizer, 5, 10, seed=0, max_new_tokens=16)
    writer.set_demos(task.demos[:5])
    client = LLMClient(LocalBackend(lm.model, lm.tokenizer, identity="bench", batch_size=args.batch))
    scorer = BlackBoxScorer(client, task.dev, "f1", TEMPLATE, args.max_tokens)
    X = sobol_design(6, 10, seed=0)
    scored = scorer(writer.write(X))
    S = torch.tensor([s.scores for s in scored], dtype=torch.float64)
    y = S.mean(-1)
    t0 = time.perf_counter()
    z = propose(X, y, S, True, 3, 3, 0.8, 20, 10, 1e-4, seed=0)
    gp = time.perf_counter() - t0
    t0 = time.perf_counter()
    scorer(writer.write(z))
    rest = time.perf_counter() - t0
    out.update(
        {"gp_seconds_small": gp, "write_and_score_seconds_small": rest, "gp_share_small": gp / (gp + rest)}
    )
    print(f"BO iteration at scale=small: GP + EI/CMA-ES {gp:.2f} s, write + score {rest:.2f} s "
          f"→ GP share {gp / (gp + rest):.1%}")  # fmt: skip

    if args.paper_gp:
        g = torch.Generator().manual_seed(0)
        Xp = torch.rand(125, 10, generator=g) * 2 - 1
        Sp = (torch.rand(125, 20, generator=g) < 0.5).double()
        t0 = time.perf_counter()
        propose(Xp, Sp.mean(-1), Sp, True, 25, 25, 0.8, 50, 10, 1e-4, seed=0)
        paper = time.perf_counter() - t0
        out["gp_seconds_paper"] = paper
        print(
            f"GP + EI/CMA-ES at the paper's last iteration (125 points, 25 starts × 50 × 10): {paper:.1f} s"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
