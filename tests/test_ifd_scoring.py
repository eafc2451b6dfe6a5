"""IFD scores and Cherry selection: formulas by hand, batched scoring equal to one-sample forwards."""

from __future__ import annotations

import math

import pytest
import torch

from data.instructions.records import InstructionRecord
from data.instructions.template import RESPONSE_MARKER, format_prompt
from data.llm.loader import load_causal_lm, offline_model
from methods.ifd.packing import pack_rows, tree_row
from methods.ifd.scoring import (
    IFDScore,
    answer_losses,
    encode_pairs,
    ifd_scores,
    select,
    template_prefixes,
)

SMOLLM2 = offline_model("smollm2_135m")


def test_ifd_variants_by_hand() -> None:
    score = IFDScore("a", conditioned=1.0, direct=2.0, answer_tokens=3)
    assert score.ifd == pytest.approx(0.5) and score.ifd_ppl == pytest.approx(math.exp(-1.0))


def scores(values: list[float]) -> list[IFDScore]:
    return [IFDScore(f"r{i}", conditioned=v, direct=1.0, answer_tokens=2) for i, v in enumerate(values)]


def test_selection_drops_ifd_above_one_and_keeps_the_hardest() -> None:
    ifd = [1.2, 0.9, 0.5, 0.97, 0.3]
    # IFD > 1 dropped → [0.9, 0.5, 0.97, 0.3]; by IFD descending → r3 (0.97), r1 (0.9); int(4 × 0.5) = 2
    assert select(scores(ifd), rate=0.5) == ["r3", "r1"]
    assert select(scores(ifd), rate=0.5, variant="ifd_ppl") == ["r3", "r1"]  # same cut, same order here
    # a margin of 0.95 also drops r3 → [0.9, 0.5, 0.3]; int(3 × 0.5) = 1
    assert select(scores(ifd), rate=0.5, margin=0.95) == ["r1"]


@pytest.fixture(scope="module")
def smollm2():
    return load_causal_lm(SMOLLM2)


RECORDS = [
    InstructionRecord("a", "Reverse the word.", "planet", "tenalp"),
    InstructionRecord("b", "What is 12 plus 30?", "", "42"),
    InstructionRecord("c", "Sort these words alphabetically.", "pear apple fig", "apple fig pear"),
]


def test_batched_losses_equal_one_sample_forwards(smollm2) -> None:
    model, tok = smollm2.model, smollm2.tokenizer
    pairs = encode_pairs(tok, RECORDS, max_length=512)
    # As the official code: one joint encoding with special tokens, split at the prompt's length; the
    # direct context is the marker with the prompt's own ending, also with special tokens.
    joint = tok(format_prompt(RECORDS[0]) + RECORDS[0].output).input_ids
    assert pairs[0][0] + pairs[0][1] == joint and pairs[0][0] == tok(format_prompt(RECORDS[0])).input_ids
    assert pairs[1][0] == tok(RESPONSE_MARKER + "\n").input_ids
    assert pairs[0][1] == pairs[1][1]  # the same answer tokens in both scores
    batched = answer_losses(model, pairs, batch_size=4, pad_id=tok.pad_token_id)
    prefixes = template_prefixes(tok)
    # every context starts with one of the template's prefixes, so all of them take the cached path
    assert all(any(c[: len(p)] == p for p in prefixes) for c, _ in pairs)
    reused = answer_losses(model, pairs, batch_size=4, pad_id=tok.pad_token_id, prefixes=prefixes)
    assert reused == pytest.approx(batched, abs=1e-4)
    for (context, answer), loss in zip(pairs, batched, strict=True):
        ids = torch.tensor([context + answer])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, len(context) :]
        expected = -logp[len(context) - 1 :].gather(-1, targets[:, None]).mean().item()
        assert loss == pytest.approx(expected, abs=2e-4)


def test_the_instruction_helps_a_real_model(smollm2) -> None:
    """On answers the prompt determines, the instruction lowers the answer loss: IFD < 1. (Reversing a
    word is beyond a 135M model: once both contexts end alike its IFD is above 1, so it is not used.)"""
    copy = InstructionRecord("a", "Repeat the word exactly.", "planet", "planet")
    result = ifd_scores(smollm2.model, smollm2.tokenizer, [copy, *RECORDS[1:]], batch_size=2)
    assert [s.id for s in result] == ["a", "b", "c"]
    assert all(0 < s.ifd < 1 for s in result)
    assert all(s.ifd_ppl == pytest.approx(math.exp(s.conditioned - s.direct)) for s in result)


def sentencepiece_like_tokenizer():
    """A Llama-like tokenizer built offline: Metaspace pre-tokenizer (a leading ``▁`` on a text's first
    word) and a BOS added to every encoding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from data.instructions.template import PROMPT_NO_INPUT, PROMPT_WITH_INPUT

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    texts = [PROMPT_WITH_INPUT, PROMPT_NO_INPUT] + [f"{r.instruction} {r.input} {r.output}" for r in RECORDS]
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )


def test_both_contexts_get_bos_and_the_answer_is_split_from_one_encoding() -> None:
    """Before: the direct context "### Response:" had no BOS, ended without the prompt's newline, and the
    answer was tokenized apart (a spurious leading ``▁`` on a SentencePiece tokenizer)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    tok = sentencepiece_like_tokenizer()
    bos = tok.bos_token_id
    pairs = encode_pairs(tok, RECORDS, max_length=512)
    for k, record in enumerate(RECORDS):
        (context, answer), (direct, direct_answer) = pairs[2 * k], pairs[2 * k + 1]
        assert context[0] == bos and direct[0] == bos
        assert tok.decode(direct, skip_special_tokens=True).strip() == RESPONSE_MARKER
        assert context + answer == tok(format_prompt(record) + record.output).input_ids
        assert answer == direct_answer and len(answer) > 0
        assert answer != tok(record.output, add_special_tokens=False).input_ids  # no spurious leading ▁
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    prefixes = template_prefixes(tok)
    assert all(any(c[: len(p)] == p for p in prefixes) for c, _ in pairs)  # every pair takes the fast path
    plain = answer_losses(model, pairs, batch_size=2, pad_id=tok.pad_token_id)
    reused = answer_losses(model, pairs, batch_size=2, pad_id=tok.pad_token_id, prefixes=prefixes)
    assert reused == pytest.approx(plain, abs=1e-5)
    scored = ifd_scores(model, tok, RECORDS, batch_size=2)
    assert [s.direct for s in scored] == pytest.approx(plain[1::2], abs=1e-5)


def test_token_tree_rows_by_hand() -> None:
    seqs = [[5], [1, 2, 4], [1, 2, 3]]
    # lexicographic: [1,2,3] (3 tokens), [1,2,4] (+1 after the shared [1,2]), [5] (+1 = 5 > 4: new row)
    assert pack_rows(seqs, budget=4) == [[2, 1], [0]]
    assert pack_rows(seqs, budget=5) == [[2, 1, 0]]
    tokens, depth, chains = tree_row([[1, 2, 3], [1, 2, 4], [1, 2, 4], [1, 7]])
    assert tokens == [1, 2, 3, 4, 7] and depth == [0, 1, 2, 2, 1]
    assert chains == [[0, 1, 2], [0, 1, 3], [0, 1, 3], [0, 4]]  # a duplicate adds no node


SHARED = [
    *RECORDS,
    InstructionRecord("d", "Reverse the word.", "stone", "enots"),  # same instruction as "a"
    InstructionRecord("e", "What is 12 plus 30?", "", "forty-two"),  # same prompt as "b"
    InstructionRecord("f", "Reverse the word.", "stone", "enots"),  # a duplicate of "d"
]


def test_packed_token_trees_equal_the_padded_path(smollm2) -> None:
    """Packing (shared prefixes stored once, a 4-D tree mask, per-chain position ids) gives the padded
    path's losses: a wrong mask or position would move them by far more than float error."""
    model, tok = smollm2.model, smollm2.tokenizer
    pairs = encode_pairs(tok, SHARED, max_length=512)
    plain = answer_losses(model, pairs, batch_size=4, pad_id=tok.pad_token_id)
    seqs = [c + a for c, a in pairs]
    assert len(tree_row(sorted(seqs))[0]) < sum(map(len, seqs))  # the rows do share tokens
    # several rows, padded, two per forward, no cached header; then all in one row after the header
    for pack, rows, prefixes in ((40, 2, ()), (512, 1, template_prefixes(tok))):
        packed = answer_losses(
            model, pairs, batch_size=rows, pad_id=tok.pad_token_id, prefixes=prefixes, pack=pack
        )
        assert packed == pytest.approx(plain, abs=1e-4)
