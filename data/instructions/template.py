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
# The WizardLM prompt of the official Cherry code (cherry_seletion/data_analysis.py, data_by_IFD.py
# ``--prompt wiz``; evaluation/generation/eva_generation.py PROMPT_DICT_WIZARDLM): the instruction, a blank
# line, the marker. Its "with input" form puts the input on the next line.
WIZARDLM_NO_INPUT = "{instruction}\n\n### Response:"
WIZARDLM_WITH_INPUT = "{instruction}\n{input}\n\n### Response:"
TEMPLATES = ("alpaca", "wizardlm")


class _HasInstruction(Protocol):
    instruction: str
    input: str


def format_prompt(record: _HasInstruction, template: str = "alpaca") -> str:
    """The prompt that precedes the response (``template``: alpaca or wizardlm). A whitespace-only input
    counts as no input, so records from datasets that store an empty context as " " do not get an
    empty ``### Input:`` block."""
    if template not in TEMPLATES:
        raise ValueError(f"template {template!r} is not one of {', '.join(TEMPLATES)}")
    with_input, no_input = (
        (PROMPT_WITH_INPUT, PROMPT_NO_INPUT)
        if template == "alpaca"
        else (WIZARDLM_WITH_INPUT, WIZARDLM_NO_INPUT)
    )
    if record.input.strip():
        return with_input.format(instruction=record.instruction, input=record.input)
    return no_input.format(instruction=record.instruction)


def question_text(record: _HasInstruction) -> str:
    """The instruction and its input as one question (what a judge or a grader is shown)."""
    return f"{record.instruction}\n\n{record.input}" if record.input.strip() else record.instruction
