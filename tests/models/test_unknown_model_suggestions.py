"""The "did you mean" of an unknown model name covers the pattern-named families too."""

from __future__ import annotations

import pytest

from reslab.errors import ModelConfigError
from reslab.models import create_model


@pytest.mark.parametrize("typo, meant", [
    ("tranformer4", "transformer4"),          # a family named by a pattern: transformer{d}
    ("tranformer7", "transformer7"),          # a depth no example lists
    ("plain_tranformer2", "plain_transformer2"),
    ("lstn3", "lstm3"),
    ("cifar_resnt14", "cifar_resnet14"),      # a generic CIFAR name
    ("densenet_bc_40_1z", "densenet_bc_40_1"),
    ("resnt20", "resnet20"),                  # a registered name, as before
])
def test_misspelt_pattern_family_name_gets_a_did_you_mean(typo, meant):
    with pytest.raises(ModelConfigError, match=rf"unknown model '{typo}'; did you mean [^?]*\b{meant}\b"):
        create_model(typo)
