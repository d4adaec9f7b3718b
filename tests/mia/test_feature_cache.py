"""The model digest that ties a feature cache to the weights it was computed with."""

from __future__ import annotations

import torch

from voxaudit.mia.feature_cache import model_digest


class Wrapper:
    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model


def test_the_digest_follows_the_weights_not_the_object() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    copy = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    copy.load_state_dict(net.state_dict())
    digest = model_digest(net, "run-a")
    assert digest.startswith("sha256:")
    # The same weights under another path or wrapper: the same model.
    assert model_digest(copy, "run-b") == model_digest(Wrapper(copy), "x") == digest
    with torch.no_grad():
        copy[0].weight[0, 0] += 1e-6
    assert model_digest(copy, "run-a") != digest
    # Buffers count too (batch-norm statistics change what the model outputs).
    copy.load_state_dict(net.state_dict())
    copy[1].running_mean += 1.0
    assert model_digest(copy, "run-a") != digest
    # Half-precision weights, which numpy cannot hold, are digested all the same.
    assert model_digest(net.to(torch.bfloat16), "run-a").startswith("sha256:")


def test_a_model_without_weights_here_is_named_by_its_source() -> None:
    assert model_digest(object(), "pocketsphinx (bundled en-us models)") == (
        "pocketsphinx (bundled en-us models)"
    )
