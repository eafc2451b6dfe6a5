"""Zero-shot scoring of instructions on the black box: per-example score vectors, cached per instruction.

Each instruction v is scored on one fixed dev set: the black box answers "Instruction: v / Input: x /
Output:" for every dev input (all requests of a batch of instructions go to the client at once, so the
local backend generates them in padded batches and an HTTP backend concurrently); the answers are scored
with the task metric (data.induction_tasks), giving s(v) ∈ R^{n_dev} and h(v) = mean s(v). A second
request for the same instruction is answered from memory without any client call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from data.induction_tasks import Example, score
from data.llm.client import ChatRequest, LLMClient


@dataclass(frozen=True)
class Scored:
    instruction: str
    scores: tuple[float, ...]  # s(v), one per example

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0


class BlackBoxScorer:
    def __init__(
        self,
        client: LLMClient,
        examples: Sequence[Example],
        metric: str,
        template: str,
        max_tokens: int,
    ) -> None:
        self.client, self.examples, self.metric = client, list(examples), metric
        self.template, self.max_tokens = template, max_tokens
        self.memory: dict[str, Scored] = {}

    def request(self, instruction: str, example: Example) -> ChatRequest:
        text = self.template.format(instruction=instruction, input=example.input)
        return ChatRequest([{"role": "user", "content": text}], temperature=0.0, max_tokens=self.max_tokens)

    def __call__(self, instructions: Sequence[str]) -> list[Scored]:
        """Scores in order; instructions seen before (in this call or earlier) are not sent again."""
        new = list(dict.fromkeys(v for v in instructions if v not in self.memory))
        if new:
            requests = [self.request(v, e) for v in new for e in self.examples]
            answers = self.client.complete(requests)
            n = len(self.examples)
            for k, v in enumerate(new):
                chunk = answers[k * n : (k + 1) * n]
                self.memory[v] = Scored(
                    v,
                    tuple(
                        score(a, e.answers, self.metric) for a, e in zip(chunk, self.examples, strict=True)
                    ),
                )
        return [self.memory[v] for v in instructions]
