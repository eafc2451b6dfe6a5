"""Each query round feeds the pool through the network once: the strategies' probabilities come from the
last-layer inputs they also get, and equal a plain forward's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import methods.chain.method as chain_method
from tests.loop_resume import run_in_process

SMOKE = ["method=chain", "scale=smoke", "data=digits", "logger=none", "method.strategy=badge"]


def test_pool_passes_the_network_once_per_round(
    compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple] = []  # (net, params, x, embed) of every predict call
    rounds: list[tuple[int, float]] = []  # per query: pool passes, max |probs − softmax(forward)|
    real_predict, real_select = chain_method.predict, chain_method.select

    def predict(net, params, x, chunk=4096, embed=False):
        calls.append((net, params, x, embed))
        return real_predict(net, params, x, chunk, embed)

    def select(strategy, k, probs, pool_emb, lab_emb, gen, seed):
        pool = [c for c in calls if len(c[2]) == len(probs)]
        net, params, x, _ = pool[-1]
        with torch.no_grad():
            plain = torch.softmax(net.forward(params, x), -1)
        rounds.append((len(pool), float((probs - plain).abs().max())))
        calls.clear()
        return real_select(strategy, k, probs, pool_emb, lab_emb, gen, seed)

    monkeypatch.setattr(chain_method, "predict", predict)
    monkeypatch.setattr(chain_method, "select", select)
    run_in_process(compose, SMOKE, tmp_path)

    assert len(rounds) >= 2
    assert all(passes == 1 for passes, _ in rounds)  # the embeddings only, not the logits again
    assert max(diff for _, diff in rounds) < 1e-6
