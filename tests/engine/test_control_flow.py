"""Control flow, step by step: retries, timeouts, error paths, jumps, calls.

Runs on SQLite and on PostgreSQL, each step that handles its errors inside a
savepoint of the run's one transaction. A few test-only step types (a step that
fails a set number of times, a step that takes a set time on a test clock) are
registered for the duration of a test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, select

from actionflow.engine import db
from actionflow.engine.errors import RunError
from actionflow.engine.flow import Flow, FlowSet, parse_flow
from actionflow.engine.runner import RunResult, StepContext, run_flow
from actionflow.engine.steps import REGISTRY, builtin
from actionflow.engine.tables import Order

ORDERS = Order.__table__  # type: ignore[attr-defined]
_OPEN = {"type": "object"}


@dataclass
class HandClock:
    """A monotonic clock the test moves by hand; sleeps are recorded, not slept."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@dataclass
class Flaky:
    """Fails with a RunError until its `succeed_on`-th attempt; 0: always fails."""

    succeed_on: int = 0
    calls: int = 0


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def flaky(clock: HandClock) -> Iterator[Flaky]:
    state = Flaky()

    def flaky_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
        state.calls += 1
        _insert_order(context, f"attempt {state.calls}")
        if state.succeed_on and state.calls >= state.succeed_on:
            return {"attempts": state.calls}
        raise RunError(f"the CRM is down (attempt {state.calls})")

    def slow_step(context: StepContext, args: dict[str, Any]) -> dict[str, Any]:
        state.calls += 1
        _insert_order(context, f"slow {state.calls}")
        clock.now += args["ms"][state.calls - 1] / 1000
        return {"deadline_given": context.deadline is not None}

    outputs = {"type": "object", "properties": {"attempts": {}, "deadline_given": {}}}
    builtin("test.flaky", "Fails until told.", inputs=_OPEN, outputs=outputs)(
        flaky_step
    )
    builtin("test.slow", "Takes ms[n] on attempt n.", inputs=_OPEN, outputs=outputs)(
        slow_step
    )
    yield state
    REGISTRY.pop("test.flaky")
    REGISTRY.pop("test.slow")


def _insert_order(context: StepContext, description: str) -> None:
    from actionflow.engine.steps.table import insert_step

    insert_step(
        context,
        {
            "table": "order",
            "values": {
                "price": "1.00",
                "currency": "usd",
                "user_id": "u1",
                "description": description,
            },
        },
    )


def _flow(text: str, name: str = "Test") -> Flow:
    return parse_flow(f"name: {name}\n{text}", f"{name}.yaml")


def _run(
    engine: Engine, flow: Flow, clock: HandClock | None = None, **options: Any
) -> RunResult:
    if clock is not None:
        options.update(clock=clock, sleep=clock.sleep)
    with db.write(engine) as connection:
        return run_flow(flow, connection, **options)


def _orders(engine: Engine) -> list[tuple[str, str]]:
    with db.read(engine) as connection:
        rows = connection.execute(
            select(ORDERS.c.description, ORDERS.c.status).order_by(ORDERS.c.id)
        )
        return [(row.description, row.status) for row in rows]


def _outcomes(result: RunResult) -> list[tuple[str, str, int]]:
    return [(entry.step, entry.outcome, entry.attempt) for entry in result.trace]


RETRYING = """
steps:
  - id: sync
    use: test.flaky
    retry: {attempts: 3, delay_ms: 100, backoff: 2}
"""


def test_a_retry_that_succeeds_on_the_third_attempt_keeps_only_that_attempts_writes(
    engine: Engine, flaky: Flaky, clock: HandClock
) -> None:
    flaky.succeed_on = 3
    result = _run(engine, _flow(RETRYING), clock)

    assert result.status == "succeeded", result.error
    assert _outcomes(result) == [
        ("sync", "retried", 1),
        ("sync", "retried", 2),
        ("sync", "ok", 3),
    ]
    assert result.trace[0].reason == "the CRM is down (attempt 1)"
    assert clock.sleeps == [0.1, 0.2]
    assert _orders(engine) == [("attempt 3", "pending")]


def test_a_retry_gives_up_after_its_attempts_and_fails_the_run(
    engine: Engine, flaky: Flaky, clock: HandClock
) -> None:
    result = _run(engine, _flow(RETRYING), clock)

    assert result.status == "failed"
    assert _outcomes(result)[-1] == ("sync", "failed", 3)
    assert str(result.error) == ("Test.yaml:4:5: the CRM is down (attempt 3) [sync]")
    assert result.error is not None and result.error.pointer == "/steps/0"
    assert _orders(engine) == []


def test_the_wait_between_attempts_grows_by_backoff_up_to_its_cap(
    engine: Engine, flaky: Flaky, clock: HandClock
) -> None:
    flaky.succeed_on = 5
    flow = _flow(
        """
steps:
  - id: sync
    use: test.flaky
    retry: {attempts: 5, delay_ms: 100, backoff: 3, max_delay_ms: 500}
"""
    )
    assert _run(engine, flow, clock).status == "succeeded"
    assert clock.sleeps == [0.1, 0.3, 0.5, 0.5]


def test_errors_of_a_kind_not_in_retry_on_are_not_retried(
    engine: Engine, clock: HandClock
) -> None:
    flow = _flow(
        """
steps:
  - id: check
    use: assert
    retry: {attempts: 3}
    with: {that: false, message: the amount is wrong}
"""
    )
    result = _run(engine, flow, clock)
    assert _outcomes(result) == [("check", "failed", 1)]
    assert clock.sleeps == []


def test_a_step_past_its_timeout_fails_as_a_timeout_and_is_retried(
    engine: Engine, flaky: Flaky, clock: HandClock
) -> None:
    flow = _flow(
        """
steps:
  - id: slow
    use: test.slow
    timeout_ms: 200
    retry: {attempts: 2}
    with: {ms: [250, 50]}
"""
    )
    result = _run(engine, flow, clock)

    assert result.status == "succeeded", result.error
    assert _outcomes(result) == [("slow", "retried", 1), ("slow", "ok", 2)]
    assert result.trace[0].reason == (
        "the step ran longer than its timeout_ms of 200; its writes were rolled back"
    )
    assert _orders(engine) == [("slow 2", "pending")]


def test_a_timeout_without_retry_fails_the_run_with_kind_timeout(
    engine: Engine, flaky: Flaky, clock: HandClock
) -> None:
    flow = _flow(
        """
steps:
  - id: slow
    use: test.slow
    timeout_ms: 200
    on_error: continue
    with: {ms: [201]}
  - id: after
    use: set
    with: {kind: "{{ steps.slow.error.kind }}"}
outputs:
  kind: "{{ steps.after.kind }}"
"""
    )
    result = _run(engine, flow, clock)
    assert (result.status, result.outputs) == ("succeeded", {"kind": "timeout"})
    assert _orders(engine) == []


COMPENSATING = """
steps:
  - id: order
    use: table.insert
    with:
      table: order
      values: {price: "5.00", currency: usd, user_id: u1, description: new}
  - id: charge
    use: test.flaky
    on_error: {goto: compensate}
  - id: paid
    use: table.update
    with: {table: order, id: "{{ steps.order.row.id }}", set: {status: paid}}
  - id: skip_compensation
    use: goto
    with: {step: done}
  - id: compensate
    use: table.update
    with:
      table: order
      id: "{{ steps.order.row.id }}"
      set:
        status: cancelled
        description: "{{ steps.charge.error.kind }}: {{ steps.charge.error.message }}"
  - id: done
    use: set
    with: {finished: true}
"""


def test_an_error_path_runs_the_compensating_step_and_undoes_the_failed_step(
    engine: Engine, flaky: Flaky
) -> None:
    result = _run(engine, _flow(COMPENSATING))

    assert result.status == "succeeded", result.error
    assert [(step, outcome) for step, outcome, _ in _outcomes(result)] == [
        ("order", "ok"),
        ("charge", "caught"),
        ("compensate", "ok"),
        ("done", "ok"),
    ]
    assert _orders(engine) == [("step: the CRM is down (attempt 1)", "cancelled")]


def test_without_an_error_the_compensating_step_is_jumped_over(
    engine: Engine, flaky: Flaky
) -> None:
    flaky.succeed_on = 1
    result = _run(engine, _flow(COMPENSATING))

    assert [step for step, _, _ in _outcomes(result)] == [
        "order",
        "charge",
        "paid",
        "skip_compensation",
        "done",
    ]
    assert _orders(engine) == [("new", "paid"), ("attempt 1", "pending")]


def test_on_error_continue_goes_on_and_records_the_error(
    engine: Engine, flaky: Flaky
) -> None:
    flow = _flow(
        """
steps:
  - id: notify
    use: test.flaky
    on_error: continue
outputs:
  error: "{{ steps.notify.error }}"
"""
    )
    result = _run(engine, flow)
    assert result.status == "succeeded"
    assert result.outputs == {
        "error": {"kind": "step", "message": "the CRM is down (attempt 1)"}
    }


def test_a_fail_step_fails_the_run_with_its_message_and_position(
    engine: Engine,
) -> None:
    flow = _flow(
        """
steps:
  - id: refuse
    use: fail
    with: {message: "refunds above {{ 100 * 5 }} need a person"}
"""
    )
    result = _run(engine, flow)
    assert result.status == "failed"
    assert (
        str(result.error) == "Test.yaml:4:5: refunds above 500 need a person [refuse]"
    )


def test_a_bounded_goto_loop_runs_max_times_then_goes_on(
    engine: Engine, flaky: Flaky
) -> None:
    flaky.succeed_on = 1
    flow = _flow(
        """
steps:
  - id: tick
    use: test.flaky
  - id: again
    use: goto
    with: {step: tick, max: 3}
outputs:
  ticks: "{{ steps.tick.attempts }}"
  exhausted: "{{ steps.again.exhausted }}"
"""
    )
    result = _run(engine, flow)
    assert result.outputs == {"ticks": 4, "exhausted": True}
    assert [step for step, _, _ in _outcomes(result)].count("tick") == 4


SWITCHING = """
trigger:
  stripe: [payment_intent.succeeded, payment_intent.payment_failed, charge.refunded]
steps:
  - id: route
    use: switch
    with:
      value: "{{ event.type }}"
      cases:
        payment_intent.succeeded: paid
        payment_intent.payment_failed: failed
  - id: other
    use: stop
    with: {reason: "nothing to do for {{ event.type }}"}
  - id: paid
    use: set
    with: {outcome: paid}
  - id: to_end
    use: goto
    with: {step: finish}
  - id: failed
    use: set
    with: {outcome: failed}
  - id: finish
    use: set
    with: {case: "{{ steps.route.case }}"}
outputs:
  case: "{{ steps.finish.case }}"
"""


@pytest.mark.parametrize(
    ("kind", "status", "ran"),
    [
        (
            "payment_intent.succeeded",
            "succeeded",
            ["route", "paid", "to_end", "finish"],
        ),
        ("payment_intent.payment_failed", "succeeded", ["route", "failed", "finish"]),
        ("charge.refunded", "stopped", ["route", "other"]),
    ],
)
def test_a_switch_jumps_to_the_matching_case_or_goes_on(
    engine: Engine, kind: str, status: str, ran: list[str]
) -> None:
    result = _run(engine, _flow(SWITCHING), event={"type": kind})
    assert result.status == status
    assert [step for step, _, _ in _outcomes(result)] == ran


CALLED = """
inputs:
  amount: {type: integer, minimum: 1}
  currency: {type: string, default: usd}
steps:
  - id: total
    use: set
    with: {text: "{{ inputs.amount }} {{ inputs.currency }}"}
outputs:
  text: "{{ steps.total.text }}"
"""


def _called_set(caller: str) -> tuple[Flow, FlowSet]:
    called = _flow(CALLED, "FormatAmount")
    flow = _flow(caller, "Caller")
    return flow, FlowSet([called, flow])


def test_a_called_flow_gets_its_inputs_with_defaults_and_returns_its_outputs(
    engine: Engine,
) -> None:
    flow, flows = _called_set(
        """
steps:
  - id: shown
    use: call
    with: {flow: FormatAmount, inputs: {amount: 1099}}
outputs:
  text: "{{ steps.shown.text }}"
"""
    )
    result = _run(engine, flow, flows=flows)
    assert (result.status, result.outputs) == ("succeeded", {"text": "1099 usd"})
    assert [step for step, _, _ in _outcomes(result)] == ["shown>total", "shown"]


def test_a_called_flow_refuses_inputs_that_break_its_schema(engine: Engine) -> None:
    flow, flows = _called_set(
        """
steps:
  - id: shown
    use: call
    with: {flow: FormatAmount, inputs: {amount: "{{ 0 }}"}}
"""
    )
    result = _run(engine, flow, flows=flows)
    assert result.status == "failed"
    assert str(result.error) == (
        "Caller.yaml:4:5: flow FormatAmount failed: FormatAmount.yaml:4:11: "
        "inputs.amount: 0 is less than the minimum of 1 [shown]"
    )


def test_foreach_runs_the_flow_per_item_and_refuses_more_than_max(
    engine: Engine,
) -> None:
    flow, flows = _called_set(
        """
trigger: {stripe: [invoice.paid]}
steps:
  - id: lines
    use: foreach
    with:
      flow: FormatAmount
      items: "{{ event.amounts }}"
      as: amount
      inputs: {currency: eur}
      max: 3
outputs:
  texts: "{{ steps.lines.results | map(attribute='text') | list }}"
"""
    )
    result = _run(engine, flow, flows=flows, event={"amounts": [1, 2]})
    assert result.outputs == {"texts": ["1 eur", "2 eur"]}

    result = _run(engine, flow, flows=flows, event={"amounts": [1, 2, 3, 4]})
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.message == (
        "foreach got 4 items, more than its max of 3; raise max or pass fewer items"
    )


def test_a_secret_is_read_by_name_and_redacted_in_outputs_traces_and_errors(
    engine: Engine,
) -> None:
    flow = _flow(
        """
steps:
  - id: header
    use: set
    with: {value: "Bearer {{ secret('CRM_TOKEN') }}"}
  - id: refuse
    use: fail
    with: {message: "the CRM refused {{ steps.header.value }}"}
"""
    )
    result = _run(engine, flow, secrets={"CRM_TOKEN": "tok_live_123456"})
    assert result.error is not None
    assert result.error.message == "the CRM refused Bearer [redacted]"
    assert "tok_live_123456" not in str(result.error)
    assert "tok_live_123456" not in repr([e.as_dict() for e in result.trace])


def test_a_missing_secret_names_the_variable_to_set(engine: Engine) -> None:
    flow = _flow(
        """
steps:
  - id: header
    use: set
    with: {value: "{{ secret('CRM_TOKEN') }}"}
"""
    )
    result = _run(engine, flow, secrets={})
    assert str(result.error) == (
        "Test.yaml:6:19: secret 'CRM_TOKEN' is not set; "
        "set the environment variable ACTIONFLOW_SECRET_CRM_TOKEN [header]"
    )


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format(1) }}",
        "{{ secret.__globals__ }}",
    ],
)
def test_injection_strings_in_event_data_are_kept_verbatim(
    engine: Engine, attack: str
) -> None:
    flow = _flow(
        """
trigger: {stripe: [payment_intent.succeeded]}
steps:
  - id: keep
    use: table.insert
    with:
      table: order
      values:
        price: "1.00"
        currency: usd
        user_id: u1
        description: "{{ event.data.object.description }}"
outputs:
  shown: "note: {{ event.data.object.description }}"
"""
    )
    event = {"data": {"object": {"description": attack}}}
    result = _run(engine, flow, event=event)
    assert result.outputs == {"shown": f"note: {attack}"}
    assert _orders(engine) == [(attack, "pending")]


def _describe(engine: Engine, payment_id: int) -> RunResult:
    from actionflow.engine.flow import EXAMPLE_FLOWS, load_flow

    called = load_flow(EXAMPLE_FLOWS / "DescribePayment.yaml")
    flow = _flow(
        f"""
steps:
  - id: described
    use: call
    with: {{flow: DescribePayment, inputs: {{payment_id: {payment_id}}}}}
outputs:
  line: "{{{{ steps.described.line }}}}"
""",
        "Caller",
    )
    return _run(engine, flow, flows=FlowSet([called, flow]))


def test_the_describe_payment_example_follows_its_switch_and_its_error_path(
    engine: Engine,
) -> None:
    from actionflow.engine.tables import Payment, utcnow

    payments = Payment.__table__  # type: ignore[attr-defined]
    with db.write(engine) as connection:
        payment_id = connection.execute(
            payments.insert()
            .values(
                order_id=1,
                amount=1099,
                currency="usd",
                status="succeeded",
                callback_processed=True,
                refunded_amount=0,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            .returning(payments.c.id)
        ).scalar_one()

    assert _describe(engine, payment_id).outputs == {
        "line": f"Payment {payment_id}: 1099 usd, succeeded"
    }
    assert _describe(engine, 999).outputs == {"line": "Payment 999 was not found"}
