"""InstructZero as a ``loop`` method: each iteration is one BO step (the first is the initial design).

Every arm spends the same number of black-box evaluations (objective queries): ``n_init`` points, then
``n_iterations`` batches of ``batch_size``. A query whose instruction was already scored costs no client
call (it still counts as an evaluation, as in the official code). After each iteration the run's state
(points, instructions, score vectors, curves) is checkpointed, so an interrupted run resumes at the next
iteration and repeats no call. At the end the best instruction on dev is scored on the test set, and it
is written to ``best_instruction.txt`` beside every evaluated instruction (``instructions.jsonl``).
"""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Any

import torch
from lightning.fabric import Fabric
from omegaconf import OmegaConf

from data.induction_tasks import InductionTask, load_task
from data.llm.client import LLMClient, LocalBackend, OpenAIBackend
from data.llm.endpoint import check_model_served
from data.llm.loader import OFFLINE_MODELS, LoadedLM, cache_dir, load_causal_lm, offline_model
from data.llm.response_cache import ResponseCache
from methods.instructzero.config import InstructZeroConfig
from methods.instructzero.scoring import BlackBoxScorer, Scored
from methods.instructzero.soft_prompt import SoftPromptWriter
from runners.atomic import write_atomic
from runners.context import RunContext
from runners.contract import LoopMethod
from runners.validate import ConfigError

log = logging.getLogger("reprolab")

# One copy of each model per process: a sequential multirun reuses it across jobs.
_MODELS: dict[str, LoadedLM] = {}


def _load(cfg: Any) -> LoadedLM:
    key = repr(cfg)
    if key not in _MODELS:
        _MODELS[key] = load_causal_lm(cfg)
    return _MODELS[key]


def sobol_design(n: int, dim: int, seed: int) -> torch.Tensor:
    """n scrambled Sobol points in [−1, 1]^d (the official code draws them in [0, 1]^d: a pitfall)."""
    return torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n) * 2 - 1


class InstructZero(LoopMethod):
    def __init__(self, **cfg: Any) -> None:
        self.cfg = InstructZeroConfig(**cfg)

    # ------------------------------------------------------------------ building blocks

    def task(self) -> InductionTask:
        c = self.cfg
        return load_task(c.task, c.task_source, c.n_pool, c.n_dev, c.n_test, c.split_seed, c.n_demos)

    def client(self, ctx: RunContext, open_llm: LoadedLM) -> LLMClient:
        c = self.cfg
        if c.black_box == "openai":
            backend = OpenAIBackend(c.base_url, c.black_box_model, c.api_key_env)
        else:
            if c.black_box_model is None:
                lm, name = open_llm, ctx.cfg.model.name
            else:
                model_cfg = (
                    offline_model(c.black_box_model)
                    if c.black_box_model in OFFLINE_MODELS
                    else type(offline_model())(name=c.black_box_model, source="hub")
                )
                lm, name = _load(model_cfg), model_cfg.name
            backend = LocalBackend(
                lm.model, lm.tokenizer, identity=f"local:{name}", batch_size=c.black_box_batch_size
            )
        cache = None
        if c.response_cache == "run":
            cache = ResponseCache(ctx.out_dir / "responses.sqlite")
        elif c.response_cache == "shared":
            cache = ResponseCache(cache_dir() / "instructzero" / "responses.sqlite")
        return LLMClient(backend, cache=cache, concurrency=c.concurrency)

    def next_batch(
        self, iteration: int, state: dict[str, Any], writer: SoftPromptWriter, task: InductionTask, seed: int
    ) -> tuple[torch.Tensor | None, list[str], float]:
        """The points (None for APE) and instructions of ``iteration``, and the seconds spent in GP + EI."""
        c = self.cfg
        n = c.n_init if iteration == 0 else c.batch_size
        if c.arm == "ape":
            rng = random.Random(f"{seed}:{iteration}")
            demo_sets = [rng.sample(task.demos, c.n_demos) for _ in range(n)]
            instructions = writer.sample_plain(
                demo_sets, c.ape_temperature, c.ape_top_p, seed * 1000 + iteration, c.generation_batch_size
            )
            return None, instructions, 0.0
        t0 = time.perf_counter()
        if iteration == 0:
            # Every z-arm starts from the same Sobol design, so the arms differ only in what follows.
            z = sobol_design(n, c.intrinsic_dim, seed)
        elif c.arm == "random":
            g = torch.Generator().manual_seed(seed * 1000 + iteration)
            z = torch.rand(n, c.intrinsic_dim, generator=g) * 2 - 1
        else:
            from methods.instructzero.bo import propose

            X = torch.stack(state["z"])
            y = torch.tensor([sum(s) / len(s) for s in state["scores"]], dtype=torch.float64)
            S = torch.tensor(state["scores"], dtype=torch.float64)
            z = propose(
                X, y, S, c.arm == "instructzero", n, c.n_starts, c.cma_sigma0, c.cma_popsize,
                c.cma_max_generations, c.kernel_jitter, seed * 1000 + iteration,
            )  # fmt: skip
        gp_seconds = time.perf_counter() - t0 if iteration > 0 and c.arm != "random" else 0.0
        return z, writer.write(z, c.generation_batch_size), gp_seconds

    # ------------------------------------------------------------------ the loop

    def check_sources(self) -> InductionTask:
        """The task files and the black-box model name, checked before the open LLM loads (minutes for
        Vicuna-13B): a missing task file or a model the endpoint does not serve fails first, named."""
        c = self.cfg
        try:
            task = self.task()
        except ValueError as ex:
            raise ConfigError(str(ex)) from None
        if c.black_box == "openai":
            check_model_served(c.base_url, c.black_box_model, c.api_key_env)
        return task

    def run(self, ctx: RunContext, fabric: Fabric) -> dict[str, float]:
        c = self.cfg
        task = self.check_sources()
        metric = task.metric if c.metric == "official" else c.metric
        lm = _load(OmegaConf.to_object(ctx.cfg.model))
        lm.model.to(fabric.device)
        writer = SoftPromptWriter(
            lm.model, lm.tokenizer, c.n_soft_tokens, c.intrinsic_dim, c.projection, c.projection_scale,
            seed=ctx.seed, max_new_tokens=c.max_instruction_tokens, first_line=c.instruction_first_line,
        )  # fmt: skip
        demos = random.Random(ctx.seed).sample(task.demos, c.n_demos)
        writer.set_demos(demos)
        client = self.client(ctx, lm)
        dev = BlackBoxScorer(client, task.dev, metric, c.eval_template, c.black_box_max_tokens)

        state: dict[str, Any] = {
            "iteration": 0, "z": [], "instructions": [], "scores": [], "gp_seconds": 0.0, "loop_seconds": 0.0,
        }  # fmt: skip
        saved = ctx.checkpoint.load()  # the runner's service restores RNG states and curves itself
        if saved is not None:
            state = saved["state"]
            dev.memory.update(
                {v: Scored(v, tuple(s)) for v, s in zip(state["instructions"], state["scores"], strict=True)}
            )
            log.info("resumed from %s at iteration %d", ctx.checkpoint.path, state["iteration"])

        calls_before = client.calls
        label = f"{c.arm} {c.task} seed {ctx.seed}"
        with ctx.progress(c.budget, label, completed=len(state["instructions"])) as bar:
            for iteration in range(state["iteration"], c.n_iterations + 1):
                t0 = time.perf_counter()
                z, instructions, gp_seconds = self.next_batch(iteration, state, writer, task, ctx.seed)
                scored = dev(instructions)
                for k, s in enumerate(scored):
                    state["instructions"].append(s.instruction)
                    state["scores"].append(list(s.scores))
                    if z is not None:
                        state["z"].append(z[k].float())
                    best = max(sum(v) / len(v) for v in state["scores"])
                    ctx.log({"best_dev": best}, step=len(state["instructions"]), curve=True)
                state["gp_seconds"] += gp_seconds
                state["loop_seconds"] += time.perf_counter() - t0
                state["iteration"] = iteration + 1
                ctx.log(
                    {"iteration_seconds": time.perf_counter() - t0, "gp_seconds": gp_seconds},
                    step=len(state["instructions"]),
                )
                bar.update(advance=len(scored), info=f"best dev {best:.3f}")
                if ctx.cfg.checkpoint_every > 0 and iteration < c.n_iterations:
                    ctx.checkpoint.save({"state": state})

        means = [sum(s) / len(s) for s in state["scores"]]
        # The official code keeps the last instruction reaching the best dev score (>=).
        best_i = max(range(len(means)), key=lambda i: (means[i], i))
        best_instruction = state["instructions"][best_i]
        test_scorer = BlackBoxScorer(client, task.test, metric, c.eval_template, c.black_box_max_tokens)
        test = test_scorer([best_instruction])[0].mean
        self.write_artefacts(ctx, state, means, best_instruction, test)
        return {
            "best_dev": means[best_i],
            "test": test,
            "evaluations": float(len(means)),
            "unique_instructions": float(len(set(state["instructions"]))),
            "client_calls_this_session": float(client.calls - calls_before),
            "gp_time_share": state["gp_seconds"] / max(state["loop_seconds"], 1e-9),
        }

    def write_artefacts(
        self, ctx: RunContext, state: dict[str, Any], means: list[float], best: str, test: float
    ) -> None:
        rows = [
            {"evaluation": i + 1, "instruction": v, "dev": m, "scores": s}
            for i, (v, m, s) in enumerate(zip(state["instructions"], means, state["scores"], strict=True))
        ]
        write_atomic(
            ctx.out_dir / "instructions.jsonl", lambda f: f.write("".join(json.dumps(r) + "\n" for r in rows))
        )
        write_atomic(ctx.out_dir / "best_instruction.txt", lambda f: f.write(best + "\n"))
        log.info("best instruction (dev %.3f, test %.3f): %s", max(means), test, best)
