"""The Stripe a dry run talks to: it records every request and sends none.

`DryRunStripe` has the methods of StripeGateway. Each request is recorded with
the step that made it (a flow's step id, or for an action the gateway method:
`create_payment_intent`, `create_refund`, ...), its attempt number (the Nth
request of that step in the run), method, path, parameters and idempotency
key. The answer comes from the fixtures when they have one for that step and
attempt, else it is built from the request in the shape Stripe answers today
(ids such as `pi_dryrun_1`).

Fixtures map a step to its answer for every attempt, or to a list of answers,
attempt by attempt (attempts past the end of the list get the built answer).
An answer is a Stripe object, or `{error: {type, message}}` for the error
Stripe would give (`card_error`, `invalid_request_error`, `api_error`, ...):

    create_refund:
      - {error: {type: api_error, message: try again}}
      - {id: re_1, object: refund, amount: 500, currency: usd, status: succeeded}

`check_fixtures` checks every answer against the schema of the object the
step gets back before anything runs.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from .errors import ActionflowError, RunError
from .jsonvalues import parse as parse_json
from .stripe_gateway import call_error
from .stripe_objects import ERROR_ANSWER, PATHS
from .yamlfile import load_yaml, pointer_join

Answer = dict[str, Any]
Fixtures = dict[str, Answer | list[Answer]]
# Given a kind of object and its id, what the database knows of it (or None).
Lookup = Callable[[str, str], dict[str, Any] | None]

PERIOD = 30 * 24 * 3600  # the period of a built subscription: 30 days


class FixtureError(ActionflowError):
    """A fixtures file cannot be read, or an answer in it has the wrong shape."""


class MissingAnswer(RunError):
    """The stand-in cannot make up an answer; the fixtures must give one."""

    kind = "stripe"


@dataclass
class StripeRequest:
    """One request a dry run would have sent to Stripe, and the answer it got."""

    step: str
    attempt: int
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    answered_from: str  # fixture or default
    response: Answer

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "attempt": self.attempt,
            "method": self.method,
            "path": self.path,
            "params": self.params,
            "idempotency_key": self.idempotency_key,
            "answered_from": self.answered_from,
            "response": self.response,
        }


class DryRunStripe:
    """StripeGateway's methods, answered locally; see the module docstring."""

    def __init__(
        self,
        fixtures: Fixtures | None = None,
        *,
        lookup: Lookup | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fixtures = fixtures or {}
        self.lookup = lookup or (lambda kind, object_id: None)
        self.clock = clock
        self.requests: list[StripeRequest] = []
        self._made: Counter[str] = Counter()

    def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
        customer: str | None = None,
        description: str | None = None,
        step: str | None = None,
    ) -> Answer:
        params = {"amount": amount, "currency": currency, "metadata": metadata}
        params.update(_given(customer=customer, description=description))
        return self._request(
            step or "create_payment_intent",
            "POST",
            PATHS["payment_intent"],
            params,
            idempotency_key,
            lambda: self._intent(self._new_id("pi"), params),
        )

    def retrieve_payment_intent(
        self, intent_id: str, *, step: str | None = None
    ) -> Answer:
        return self.retrieve(
            "payment_intent", intent_id, step=step or "retrieve_payment_intent"
        )

    def retrieve(self, kind: str, object_id: str, *, step: str | None = None) -> Answer:
        return self._request(
            step or "retrieve",
            "GET",
            f"{PATHS[kind]}/{object_id}",
            {},
            None,
            lambda: self._retrieved(kind, object_id),
        )

    def create_refund(
        self,
        *,
        payment_intent: str,
        amount: int | None,
        metadata: dict[str, str],
        idempotency_key: str,
        reason: str | None = None,
        step: str | None = None,
    ) -> Answer:
        params: dict[str, Any] = {"payment_intent": payment_intent}
        params.update(_given(amount=amount, reason=reason))
        params["metadata"] = metadata
        return self._request(
            step or "create_refund",
            "POST",
            PATHS["refund"],
            params,
            idempotency_key,
            lambda: self._refund(params),
        )

    def create_customer(
        self,
        *,
        metadata: dict[str, str],
        idempotency_key: str,
        email: str | None = None,
        name: str | None = None,
        step: str | None = None,
    ) -> Answer:
        params = {"metadata": metadata, **_given(email=email, name=name)}
        return self._request(
            step or "create_customer",
            "POST",
            PATHS["customer"],
            params,
            idempotency_key,
            lambda: {
                "id": self._new_id("cus"),
                "object": "customer",
                "email": email,
                "name": name,
                "description": None,
                "metadata": metadata,
                "created": self._now(),
                "livemode": False,
            },
        )

    def create_subscription(
        self,
        *,
        customer: str,
        price: str,
        metadata: dict[str, str],
        idempotency_key: str,
        step: str | None = None,
    ) -> Answer:
        params: dict[str, Any] = {
            "customer": customer,
            "items": [{"price": price}],
            "metadata": metadata,
        }
        return self._request(
            step or "create_subscription",
            "POST",
            PATHS["subscription"],
            params,
            idempotency_key,
            lambda: self._subscription(
                self._new_id("sub"), customer, price, metadata, "active"
            ),
        )

    def cancel_subscription(
        self,
        subscription: str,
        *,
        at_period_end: bool,
        idempotency_key: str,
        step: str | None = None,
    ) -> Answer:
        path = f"{PATHS['subscription']}/{subscription}"
        if at_period_end:
            method, params = "POST", {"cancel_at_period_end": True}
        else:
            method, params = "DELETE", {}
        return self._request(
            step or "cancel_subscription",
            method,
            path,
            params,
            idempotency_key,
            lambda: self._canceled(subscription, at_period_end),
        )

    def _request(
        self,
        step: str,
        method: str,
        path: str,
        params: dict[str, Any],
        idempotency_key: str | None,
        build: Callable[[], Answer],
    ) -> Answer:
        attempt = 1 + sum(1 for request in self.requests if request.step == step)
        answer = self._fixture(step, attempt)
        source = "fixture"
        if answer is None:
            source = "default"
            answer = build()
        self.requests.append(
            StripeRequest(
                step,
                attempt,
                method,
                path,
                copy.deepcopy(params),
                idempotency_key,
                source,
                copy.deepcopy(answer),
            )
        )
        if "error" in answer:
            error = answer["error"]
            raise call_error(error["type"], message=error["message"])
        return copy.deepcopy(answer)

    def _fixture(self, step: str, attempt: int) -> Answer | None:
        given = self.fixtures.get(step)
        if isinstance(given, dict):
            return given
        if isinstance(given, list) and attempt <= len(given):
            return given[attempt - 1]
        return None

    def _new_id(self, prefix: str) -> str:
        self._made[prefix] += 1
        return f"{prefix}_dryrun_{self._made[prefix]}"

    def _now(self) -> int:
        return int(self.clock())

    def _intent(self, intent_id: str, params: dict[str, Any]) -> Answer:
        return {
            "id": intent_id,
            "object": "payment_intent",
            "amount": params["amount"],
            "amount_received": 0,
            "currency": params["currency"],
            "status": "requires_payment_method",
            "client_secret": f"{intent_id}_secret_dryrun",
            "capture_method": "automatic",
            "payment_method_types": ["card"],
            "customer": params.get("customer"),
            "description": params.get("description"),
            "latest_charge": None,
            "last_payment_error": None,
            "metadata": params.get("metadata", {}),
            "created": self._now(),
            "livemode": False,
        }

    def _refund(self, params: dict[str, Any]) -> Answer:
        intent = self.lookup("payment_intent", params["payment_intent"]) or {}
        amount = params.get("amount", intent.get("amount"))
        if amount is None:
            raise MissingAnswer(
                f"the dry run does not know PaymentIntent {params['payment_intent']}, "
                "so it cannot tell how much a refund of all of it is; give the "
                "refund's answer in --fixtures"
            )
        answer: Answer = {
            "id": self._new_id("re"),
            "object": "refund",
            "amount": amount,
            "status": "succeeded",
            "payment_intent": params["payment_intent"],
            "charge": None,
            "reason": params.get("reason"),
            "failure_reason": None,
            "metadata": params.get("metadata", {}),
            "created": self._now(),
        }
        if "currency" in intent:
            answer["currency"] = intent["currency"]
        return answer

    def _subscription(
        self,
        subscription_id: str,
        customer: str | None,
        price: str | None,
        metadata: dict[str, str],
        status: str,
        period_end: int | None = None,
    ) -> Answer:
        now = self._now()
        end = period_end if period_end is not None else now + PERIOD
        item = {
            "id": f"si_{subscription_id.removeprefix('sub_')}",
            "object": "subscription_item",
            "price": {"id": price, "object": "price"},
            "quantity": 1,
            "current_period_start": end - PERIOD,
            "current_period_end": end,
        }
        return {
            "id": subscription_id,
            "object": "subscription",
            "status": status,
            "customer": customer,
            "cancel_at_period_end": False,
            "cancel_at": None,
            "canceled_at": None,
            "ended_at": None,
            "items": {"object": "list", "data": [item], "has_more": False},
            "latest_invoice": self._new_id("in") if status == "active" else None,
            "metadata": metadata,
            "created": now,
            "livemode": False,
        }

    def _canceled(self, subscription_id: str, at_period_end: bool) -> Answer:
        known = self.lookup("subscription", subscription_id) or {}
        answer = self._subscription(
            subscription_id,
            known.get("customer"),
            known.get("price"),
            known.get("metadata", {}),
            "active" if at_period_end else "canceled",
            known.get("current_period_end"),
        )
        answer["latest_invoice"] = None
        now = self._now()
        if at_period_end:
            answer["cancel_at_period_end"] = True
            answer["cancel_at"] = answer["items"]["data"][0]["current_period_end"]
        else:
            answer["canceled_at"] = answer["ended_at"] = now
        return answer

    def _retrieved(self, kind: str, object_id: str) -> Answer:
        known = self.lookup(kind, object_id)
        if kind == "customer":
            return {"id": object_id, "object": "customer", "metadata": {}}
        if known is None:
            raise MissingAnswer(
                f"the dry run does not know {kind} {object_id}; give its answer "
                "in --fixtures"
            )
        if kind == "payment_intent":
            return {**self._intent(object_id, known), "status": known["status"]}
        if kind == "subscription":
            answer = self._subscription(
                object_id,
                known.get("customer"),
                known.get("price"),
                known.get("metadata", {}),
                known["status"],
                known.get("current_period_end"),
            )
            answer["latest_invoice"] = None
            return answer
        return {"id": object_id, "object": kind, **known}


def _given(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def load_fixtures(path: Path) -> Fixtures:
    """The fixtures in `path` (YAML, or JSON for a .json file), their form checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FixtureError(f"cannot read the fixtures {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            data = parse_json(text, exact=True)
        except ValueError as exc:
            raise FixtureError(f"{path} is not valid JSON: {exc}") from None
    else:
        data = load_yaml(text, str(path)).data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FixtureError(
            f"{path}: fixtures are a mapping of step ids to answers, "
            f"got {type(data).__name__}"
        )
    for step, answers in data.items():
        listed = answers if isinstance(answers, list) else [answers]
        if not listed or not all(isinstance(answer, dict) for answer in listed):
            raise FixtureError(
                f"{path}: the fixture for step '{step}' must be an answer (a "
                "mapping) or a non-empty list of answers, one per attempt"
            )
    return data


def check_fixtures(
    fixtures: Fixtures, schemas: dict[str, dict[str, Any]], source: str
) -> None:
    """Refuse an answer that does not fit the object its step gets back.

    `schemas` maps each step that calls Stripe to the schema of its answer.
    The message names the step, the attempt and the field (a JSON pointer).
    """
    for step, answers in fixtures.items():
        if step not in schemas:
            known = ", ".join(sorted(schemas)) or "none"
            raise FixtureError(
                f"{source}: there is a fixture for '{step}', but nothing of that "
                f"name calls Stripe here; the Stripe calls are: {known}"
            )
        listed = answers if isinstance(answers, list) else [answers]
        for attempt, answer in enumerate(listed, start=1):
            schema = ERROR_ANSWER if "error" in answer else schemas[step]
            problem = _first_problem(Draft202012Validator(schema), answer)
            if problem is None:
                continue
            pointer, message = problem
            which = f"attempt {attempt}" if isinstance(answers, list) else "answer"
            raise FixtureError(
                f"{source}: step '{step}', {which}: {pointer}: {message}; the "
                f"answer must fit {schema.get('title', 'a Stripe error')}"
            )


def _first_problem(
    validator: Draft202012Validator, answer: Answer
) -> tuple[str, str] | None:
    errors = sorted(
        validator.iter_errors(answer),
        key=lambda error: [str(part) for part in error.absolute_path],
    )
    if not errors:
        return None
    error: ValidationError = errors[0]
    pointer = ""
    for part in error.absolute_path:
        pointer = pointer_join(pointer, part)
    if error.validator == "required":
        instance = error.instance if isinstance(error.instance, dict) else {}
        missing = [name for name in error.validator_value if name not in instance]
        return pointer_join(pointer, missing[0]), "is required but missing"
    return pointer or "/", error.message
