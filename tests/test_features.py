"""Tests of cl_core.embed.features: pooling, output selection, layer hooks, batch splitting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cl_core.embed.features import (
    capture_layer,
    forward_features,
    pool_features,
    select_output,
    split_batch,
)
from cl_core.embed.models import load_model


def test_pool_cnn_maps_averages_spatial_dims_only() -> None:
    maps = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    pooled = pool_features(maps)
    assert pooled.shape == (2, 3)
    torch.testing.assert_close(pooled, maps.mean(dim=(2, 3)))


def test_pool_tokens_cls_or_mean_over_tokens_never_channels() -> None:
    tokens = torch.randn(4, 7, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pool_features(tokens, "auto"), tokens[:, 0])
    torch.testing.assert_close(pool_features(tokens, "cls"), tokens[:, 0])
    mean = pool_features(tokens, "mean")
    assert mean.shape == (4, 6)  # channel dim kept
    torch.testing.assert_close(mean, tokens.mean(dim=1))


def test_masked_mean_ignores_padding_tokens() -> None:
    tokens = torch.ones(2, 4, 3)
    tokens[1, 2:] = 100.0  # padding that must not count
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    torch.testing.assert_close(pool_features(tokens, "mean", mask), torch.ones(2, 3))


def test_pool_vectors_pass_through_and_bad_combinations_raise() -> None:
    vectors = torch.randn(3, 5)
    assert pool_features(vectors, "none") is vectors
    assert pool_features(torch.randn(3), "auto").shape == (3, 1)
    with pytest.raises(ValueError, match="pooling='none' needs"):
        pool_features(torch.randn(2, 3, 4), "none")
    with pytest.raises(ValueError, match="pooling='cls' needs token"):
        pool_features(torch.randn(2, 3, 4, 4), "cls")
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pool_features(vectors, "max")


def test_select_output_dicts_model_outputs_and_tuples() -> None:
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    hidden, pooled = torch.randn(2, 5, 4), torch.randn(2, 4)
    output = BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=pooled)
    assert select_output(output) is pooled  # documented order: pooler_output first
    assert select_output(output, "last_hidden_state") is hidden
    assert select_output({"logits": hidden}) is hidden  # no known key: first tensor
    assert select_output((hidden, pooled)) is hidden
    with pytest.raises(ValueError, match=r"unknown output_key 'nope'.*last_hidden_state"):
        select_output(output, "nope")
    with pytest.raises(TypeError, match="cannot take features"):
        select_output("not a tensor")


class _TwoStage(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)
        self.head_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.stem(x)
        self.head_calls += 1
        return self.head(maps.mean(dim=(2, 3)))


def test_hook_captures_layer_stops_early_and_is_removed() -> None:
    model = _TwoStage().eval()
    loaded = load_model(model)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), capture_layer(model, "stem") as capture:
        features = forward_features(loaded, x, capture)
        assert len(model.stem._forward_hooks) == 1
    assert model.head_calls == 0  # the forward stopped after the hooked layer
    assert not model.stem._forward_hooks  # removed on exit
    torch.testing.assert_close(features, model.stem(x).mean(dim=(2, 3)).detach())


def test_unknown_layer_lists_close_matches() -> None:
    with (
        pytest.raises(ValueError, match=r"unknown layer 'stemm'.*close matches: stem"),
        capture_layer(_TwoStage(), "stemm"),
    ):
        pass


def test_split_batch_keeps_integer_labels_from_tuples_and_dicts() -> None:
    x, y = torch.randn(3, 2), torch.tensor([0, 1, 2])
    inputs, labels = split_batch([x, y])
    assert inputs is x and labels is y
    inputs, labels = split_batch({"pixel_values": x, "label": y})
    assert inputs is x and labels is y
    inputs, labels = split_batch({"input_ids": x, "attention_mask": x})
    assert isinstance(inputs, dict) and set(inputs) == {"input_ids", "attention_mask"}
    assert labels is None
    _, labels = split_batch((x, torch.rand(3)))  # float targets are not class labels
    assert labels is None
    assert split_batch(x) == (x, None)


def test_hooks_of_concurrent_threads_do_not_mix() -> None:
    import threading

    model = _TwoStage().eval()
    model.body = nn.Conv2d(4, 4, 1)  # a second hookable layer after the stem
    loaded = load_model(model)
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = {
            "stem": model.stem(x).mean(dim=(2, 3)),
            "body": model.body(model.stem(x)).mean(dim=(2, 3)),
        }
    model.forward = lambda inputs: model.head(model.body(model.stem(inputs)).mean(dim=(2, 3)))
    barrier, errors = threading.Barrier(2), []

    def embed(layer: str) -> None:
        with torch.inference_mode(), capture_layer(model, layer) as capture:
            barrier.wait()  # both hooks are registered before either thread runs
            for _ in range(20):
                try:
                    got = forward_features(loaded, x, capture)
                except RuntimeError as error:  # the other thread's hook stopped this forward
                    errors.append(f"{layer}: {error}")
                    continue
                if not torch.allclose(got, expected[layer]):
                    errors.append(f"{layer}: wrong features")

    threads = [threading.Thread(target=embed, args=(layer,)) for layer in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
