"""The stand-ins load through the same calls that take a hub id, with each family's tokenizer rules."""

from __future__ import annotations

import pytest

from tests.paper.standins import hub_image_dataset, tiny_causal_lm


@pytest.mark.parametrize(("family", "first_token"), [("llama", "<s>"), ("opt", "</s>"), ("gpt_neox", None)])
def test_tiny_causal_lm_loads_by_path_with_its_family_and_bos_rule(tmp_path, family, first_token) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_causal_lm(tmp_path / family, family)
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == family
    ids = tokenizer("Give three tips for staying healthy.").input_ids
    if first_token is None:
        assert tokenizer.convert_ids_to_tokens(ids[0]) not in tokenizer.all_special_tokens
    else:
        assert tokenizer.convert_ids_to_tokens(ids[0]) == first_token
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Give three tips for staying healthy."


def test_hub_image_dataset_loads_with_datasets_as_images_and_class_labels(tmp_path) -> None:
    from datasets import load_dataset

    folder = hub_image_dataset(
        tmp_path / "cifar100", {"train": 12, "test": 6}, 4, ("fine_label", "coarse_label")
    )
    ds = load_dataset(str(folder))
    assert ds["train"].num_rows == 12 and ds["test"].num_rows == 6
    assert ds["train"][0]["img"].size == (32, 32)
    assert ds["train"].features["fine_label"].num_classes == 4
