"""Expressions: native values, strict undefined, the sandbox, data stays data."""

from __future__ import annotations

from typing import Any

import pytest

from actionflow.engine.errors import ExpressionError, FlowError, Position
from actionflow.engine.expressions import compile_value


def _render(value: Any, **scope: Any) -> Any:
    compiled = compile_value(
        value, "/with", lambda pointer: Position("flow.yaml", 3, 7)
    )
    return compiled.render(scope)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("{{ 40 + 2 }}", 42, id="int"),
        pytest.param("{{ amount == 1000 }}", True, id="bool"),
        pytest.param("{{ {'a': amount} }}", {"a": 1000}, id="dict"),
        pytest.param("  {{ amount }}  ", 1000, id="surrounding-space"),
        pytest.param("total {{ amount }}", "total 1000", id="text"),
        pytest.param("{{ a }}{{ b }}", "12", id="two-expressions"),
    ],
)
def test_a_whole_expression_yields_a_native_value_and_text_yields_a_string(
    source: str, expected: Any
) -> None:
    assert _render(source, amount=1000, a=1, b=2) == expected


def test_an_undefined_name_is_an_error_naming_the_field() -> None:
    with pytest.raises(ExpressionError, match="undefined value") as caught:
        _render({"where": "{{ paymnet.id }}"}, payment={"id": 1})
    assert caught.value.pointer == "/with/where"


def test_an_undefined_key_in_text_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(ExpressionError, match="no key 'missing'; keys are: id"):
        _render("id={{ obj.missing }}", obj={"id": 1})


def test_a_dict_key_wins_over_a_dict_method() -> None:
    subscription = {"items": {"data": [{"current_period_end": 5}]}}
    assert _render("{{ sub.items.data[0].current_period_end }}", sub=subscription) == 5


def test_is_defined_tells_a_missing_key_without_failing() -> None:
    assert _render("{{ obj.amount_received is defined }}", obj={"amount": 1}) is False


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param("{{ ''.__class__.__mro__ }}", id="class-walk"),
        pytest.param("{{ cycler.__init__.__globals__ }}", id="cycler-globals"),
        pytest.param("{{ ().__class__.__base__.__subclasses__() }}", id="subclasses"),
        pytest.param("{{ joiner.__init__.__globals__.os }}", id="joiner-globals"),
        pytest.param("{{ '{0.__class__}'.format(1) }}", id="format-string"),
        pytest.param("{{ data.update({'x': 1}) }}", id="mutation"),
    ],
)
def test_sandbox_escapes_fail_with_a_clear_error(attack: str) -> None:
    with pytest.raises(ExpressionError):
        _render(attack, data={})


def test_text_arriving_as_data_is_never_rendered() -> None:
    assert _render("{{ description }}", description="{{ 7*7 }}") == "{{ 7*7 }}"


def test_an_expression_syntax_error_is_reported_at_load_with_its_position() -> None:
    with pytest.raises(FlowError, match="expression syntax error") as caught:
        compile_value(
            "{{ amount + }}", "/with/x", lambda pointer: Position("f.yaml", 9, 4)
        )
    assert str(caught.value.position) == "f.yaml:9:4"
