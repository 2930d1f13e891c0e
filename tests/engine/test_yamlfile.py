"""The YAML loader: positions, and refusal of unsafe or ambiguous documents."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from actionflow.engine.errors import FlowError
from actionflow.engine.yamlfile import load_yaml


def test_positions_are_kept_for_values_and_keys() -> None:
    document = load_yaml("a: 1\nsteps:\n  - id: x\n    use: y\n", "f.yaml")
    assert str(document.position("/steps/0/use")) == "f.yaml:4:10"
    assert str(document.position("/steps/0/use", key=True)) == "f.yaml:4:5"


def test_floats_load_as_exact_decimals() -> None:
    assert load_yaml("price: 4.35\n", "f.yaml").data == {"price": Decimal("4.35")}


def test_a_repeated_key_is_refused_at_its_position() -> None:
    with pytest.raises(FlowError, match="key 'a' appears twice") as caught:
        load_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert str(caught.value.position) == "f.yaml:3:1"


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for index in range(1, 10):
        prev = chr(ord("a") + index - 1)
        name = chr(ord("a") + index)
        lines.append(
            f"{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]"
        )
    started = time.monotonic()
    with pytest.raises(FlowError, match="anchors and aliases are not supported"):
        load_yaml("\n".join(lines), "bomb.yaml")
    assert time.monotonic() - started < 5


def test_very_deep_nesting_is_refused() -> None:
    with pytest.raises(FlowError, match="nesting is deeper than"):
        load_yaml("[" * 10_000 + "]" * 10_000, "deep.yaml")


def test_a_syntax_error_names_its_line_and_column() -> None:
    with pytest.raises(FlowError, match="YAML syntax error") as caught:
        load_yaml("a: [1, 2\nb: 3\n", "f.yaml")
    assert caught.value.position is not None and caught.value.position.line >= 2


def test_python_tags_are_refused_by_the_safe_loader() -> None:
    with pytest.raises(FlowError):
        load_yaml("a: !!python/object/apply:os.system ['true']\n", "f.yaml")


def test_a_python_tag_on_a_mapping_key_is_refused() -> None:
    with pytest.raises(FlowError, match="the YAML tag .* is not supported"):
        load_yaml("steps:\n  !!python/object:os.system with: 1\n", "f.yaml")
