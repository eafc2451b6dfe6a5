"""H2O's ``method.text`` also takes a local UTF-8 file; a bad file is refused by name before weights load."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf
from transformers import LlamaConfig

from data.config import CausalLMConfig
from methods.h2o import method as h2o_method
from methods.h2o.method import H2O, read_text


def test_a_local_text_file_is_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("Grüße aus Köln.\nA second line.", encoding="utf-8")
    assert read_text(str(path)) == "Grüße aus Köln.\nA second line."
    assert len(read_text("pydoc")) > 100_000  # the default still reads the stdlib docs


@pytest.mark.parametrize(
    ("content", "pattern"),
    [(None, "cannot be read"), (b"  \n\t", "is empty"), (b"\xff\xfe\xfa bad", "is not UTF-8")],
)
def test_a_bad_text_file_is_named(tmp_path: Path, content: bytes | None, pattern: str) -> None:
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"method\.text='{path}'.*{pattern}"):
        read_text(str(path))


def test_an_empty_text_file_fails_before_any_weights_load(tmp_path: Path, monkeypatch) -> None:
    model_dir = tmp_path / "tiny"
    LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(model_dir)
    empty = tmp_path / "empty.txt"
    empty.write_text("")

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded before the text was checked")

    monkeypatch.setattr(h2o_method, "load_causal_lm", no_weights)
    model_cfg = OmegaConf.structured(CausalLMConfig(name=str(model_dir)))
    ctx = SimpleNamespace(cfg=SimpleNamespace(model=model_cfg))
    with pytest.raises(ValueError, match=r"empty\.txt.*is empty"):
        H2O(text=str(empty), policy="h2o", budget=0.2).run(ctx, fabric=None)
