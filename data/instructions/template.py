"""The Alpaca prompt template, in one place, so every method formats instructions the same way."""

from __future__ import annotations

from typing import Protocol

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
# IFD's direct score s(A) conditions the answer on this marker alone: RESPONSE_MARKER + output.
RESPONSE_MARKER = "### Response:"


class _HasInstruction(Protocol):
    instruction: str
    input: str


def format_prompt(record: _HasInstruction) -> str:
    """The prompt that precedes the response. A whitespace-only input counts as no input, so records
    from datasets that store an empty context as " " do not get an empty ``### Input:`` block."""
    if record.input.strip():
        return PROMPT_WITH_INPUT.format(instruction=record.instruction, input=record.input)
    return PROMPT_NO_INPUT.format(instruction=record.instruction)


def question_text(record: _HasInstruction) -> str:
    """The instruction and its input as one question (what a judge or a grader is shown)."""
    return f"{record.instruction}\n\n{record.input}" if record.input.strip() else record.instruction
