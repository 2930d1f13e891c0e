"""Mistyped input and unusable databases give an `Error:` line, not a traceback.

Usage errors (a bad argument) exit 2, failures while running exit 1; nothing
that a user typed or a file held is echoed beyond what names the problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from actionflow.engine import db
from actionflow.engine.errors import ConfigError
from actionflow.engine.tables import Payment
from actionflow.server.app import build_runtime
from actionflow.server.cli import main
from actionflow.server.config import load_settings
from tests.conftest import POSTGRES_URL, WEBHOOK_SECRET, LiveServer, server_settings

FLOW = str(
    Path(__file__).resolve().parents[2] / "flows" / "examples" / "MarkOrderPaid.yaml"
)
HUGE = "99999999999999999999"


def _run(arguments: list[str], database_url: str, **env: str) -> Result:
    environment = {
        "ACTIONFLOW_DATABASE_URL": database_url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_SECRET_KEY": "",
        **env,
    }
    return CliRunner().invoke(main, arguments, env=environment)


def _refused_cleanly(result: Result, code: int, message: str) -> None:
    """The command exited with `code` and an Error line, not with an exception."""
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert "Error: " in result.output
    assert message in result.output


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["runs", "show", HUGE], id="runs-show"),
        pytest.param(["runs", "show", "3000000000"], id="runs-show-above-int32"),
        pytest.param(["events", "show", HUGE + "999"], id="events-show"),
        pytest.param(["events", "replay", HUGE], id="events-replay"),
        pytest.param(["events", "list", "--limit", HUGE], id="events-list-limit"),
        pytest.param(["runs", "list", "--limit", HUGE], id="runs-list-limit"),
        pytest.param(
            [
                *("dry-run", FLOW, "--event-type", "payment_intent.succeeded"),
                *("--order", HUGE + "9"),
            ],
            id="dry-run-order",
        ),
        pytest.param(
            ["trigger", "payment_intent.succeeded", "--order", HUGE],
            id="trigger-order",
        ),
        pytest.param(
            ["trigger", "payment_intent.succeeded", "--payment", HUGE],
            id="trigger-payment",
        ),
    ],
)
def test_an_id_beyond_what_the_database_holds_is_a_usage_error(
    arguments: list[str], sqlite_url: str
) -> None:
    result = _run(arguments, sqlite_url)
    _refused_cleanly(result, 2, "must be a whole number from 1 to 2147483647")


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["runs", "show", "1_0"], id="underscore"),
        pytest.param(["runs", "show", "\u0661\u0660"], id="arabic-indic-digits"),
        pytest.param(["runs", "show", "0"], id="zero"),
        pytest.param(["events", "list", "--limit", "-1"], id="negative-limit"),
        pytest.param(
            ["trigger", "charge.refunded", "--order", "1", "--amount", "1_000"],
            id="amount-underscore",
        ),
        pytest.param(
            ["trigger", "charge.refunded", "--order", "1", "--amount", "1e3"],
            id="amount-exponent",
        ),
    ],
)
def test_a_number_not_written_plainly_is_a_usage_error(
    arguments: list[str], sqlite_url: str
) -> None:
    result = _run(arguments, sqlite_url)
    _refused_cleanly(result, 2, "must be a whole number from 1 to")


def test_a_port_out_of_range_is_a_usage_error(sqlite_url: str) -> None:
    result = _run(["serve", "--port", "99999"], sqlite_url)
    _refused_cleanly(result, 2, "a TCP port must be a whole number from 1 to 65535")


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["db", "upgrade"], id="db-upgrade"),
        pytest.param(["secrets"], id="secrets"),
        pytest.param(["events", "list"], id="events-list"),
        pytest.param(["runs", "show", "1"], id="runs-show"),
        pytest.param(["token", "--user", "7"], id="token"),
        pytest.param(
            [
                "dry-run",
                FLOW,
                "--event-type",
                "payment_intent.succeeded",
                "--order",
                "1",
            ],
            id="dry-run",
        ),
        pytest.param(
            ["trigger", "payment_intent.succeeded", "--order", "1", "--url", "-"],
            id="trigger",
        ),
        pytest.param(["serve", "--port", "1"], id="serve"),
        pytest.param(["worker"], id="worker"),
    ],
)
def test_a_sqlite_file_in_a_missing_folder_is_reported(
    arguments: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing" / "actionflow.db"
    if arguments[0] == "trigger":
        arguments = [*arguments[:-1], "http://127.0.0.1:1/webhooks/stripe"]
        # trigger checks the server before the database; this one is absent.
        result = _run(arguments, f"sqlite:///{missing}")
        _refused_cleanly(result, 1, "cannot reach http://127.0.0.1:1/webhooks/stripe")
        return
    result = _run(arguments, f"sqlite:///{missing}")
    _refused_cleanly(
        result, 1, f"cannot create the SQLite database {missing}: No such file"
    )
    assert f"create the folder {missing.parent} first" in result.output
    assert not missing.parent.exists()


def _postgres(user_and_password: str, rest: str) -> str:
    host = POSTGRES_URL.split("@", 1)[1].split("/", 1)[0]
    return f"postgresql://{user_and_password}@{host}/{rest}"


UNUSABLE = [
    pytest.param("bogus://user:hunter2secret@127.0.0.1/x", id="unknown-scheme"),
    pytest.param(
        "postgresql://user:hunter2secret@127.0.0.1:1/test", id="nothing-listening"
    ),
    pytest.param(
        "postgresql://postgres:hunter2secret@{host}/actionflow_no_such_database",
        id="no-such-database",
    ),
]


@pytest.mark.parametrize("url", UNUSABLE)
@pytest.mark.parametrize(
    "arguments",
    [pytest.param(["db", "upgrade"], id="db-upgrade"), pytest.param(["secrets"])],
)
def test_an_unusable_database_is_reported_with_its_password_hidden(
    arguments: list[str], url: str
) -> None:
    host = POSTGRES_URL.split("@", 1)[1].split("/", 1)[0]
    result = _run(arguments, url.format(host=host))
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: "), result.output
    assert "Traceback" not in result.output
    assert "hunter2secret" not in result.output
    assert (
        "cannot use the database at" in result.output
        or "unsupported database URL scheme" in result.output
    )


def test_init_in_a_place_that_cannot_hold_a_folder_is_reported(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(main, ["init", str(blocker / "shop")])
    _refused_cleanly(result, 1, f"cannot write {blocker / 'shop'}")


def test_validate_does_not_print_a_file_that_is_not_a_flow(tmp_path: Path) -> None:
    env_file = tmp_path / "settings.yaml"
    env_file.write_text("STRIPE_SECRET_KEY=sk_live_51AbcDefGhiJklMnoPqr\nDEBUG=1\n")
    for output in ("text", "json", "github"):
        result = CliRunner().invoke(
            main, ["validate", "--format", output, str(env_file)]
        )
        assert result.exit_code == 1
        assert "the flow must be a mapping, got a string" in result.output
        assert "sk_live_51" not in result.output
        assert "STRIPE_SECRET_KEY" not in result.output


def test_validate_masks_a_stripe_key_quoted_in_a_problem(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: Leaky\n"
        "trigger: {stripe: [payment_intent.succeeded]}\n"
        "steps: 'whsec_abcdefghijklmnop'\n"
    )
    result = CliRunner().invoke(main, ["validate", str(flow)])
    assert result.exit_code == 1
    assert "whsec_abcdefghijklmnop" not in result.output
    assert "steps: '[redacted]' is not of type 'array'" in result.output


def test_trigger_refuses_a_billing_reason_stripe_does_not_send(
    sqlite_url: str,
) -> None:
    result = _run(
        ["trigger", "invoice.paid", "--order", "1", "--billing-reason", "bogus"],
        sqlite_url,
    )
    _refused_cleanly(result, 2, "'bogus' is not one of")
    assert "'subscription_cycle'" in result.output
    assert "'subscription_create'" in result.output


def test_trigger_refuses_a_url_that_is_not_http(sqlite_url: str) -> None:
    result = _run(
        ["trigger", "payment_intent.succeeded", "--order", "1", "--url", "ftp://x/y"],
        sqlite_url,
    )
    _refused_cleanly(result, 2, "is not an http:// or https:// address")


@pytest.fixture
def sqlite_server(sqlite_url: str) -> Iterator[LiveServer]:
    with LiveServer(build_runtime(server_settings(sqlite_url))) as server:
        yield server


def _payments(database_url: str) -> list[int]:
    engine = db.create_db_engine(database_url)
    try:
        with db.read(engine) as connection:
            table = Payment.__table__  # type: ignore[attr-defined]
            return list(connection.execute(select(table.c.id)).scalars())
    finally:
        engine.dispose()


def test_trigger_to_the_server_root_hints_at_the_endpoint_and_writes_nothing(
    sqlite_server: LiveServer,
) -> None:
    url = sqlite_server.runtime.settings.database_url
    with sqlite_server.client() as client:
        answer = client.post(
            "/orders", json={"price": "10.00", "currency": "usd", "userId": "7"}
        )
    order_id = answer.json()["id"]
    result = _run(
        [
            *("trigger", "payment_intent.succeeded", "--order", str(order_id)),
            *("--url", sqlite_server.url),
        ],
        url,
    )
    _refused_cleanly(result, 1, "answered HTTP 404")
    assert f"such as {sqlite_server.url}/webhooks/stripe" in result.output
    assert _payments(url) == []


@pytest.mark.parametrize(
    "price",
    [
        pytest.param("10_00", id="underscore"),
        pytest.param("1_0.0_0", id="underscores"),
        pytest.param("1e1", id="exponent"),
        pytest.param("\u0661\u0660.\u0660\u0660", id="arabic-indic-digits"),
        pytest.param("-0", id="negative-zero"),
    ],
)
def test_an_order_price_not_written_plainly_is_refused(
    sqlite_server: LiveServer, price: str
) -> None:
    with sqlite_server.client() as client:
        answer = client.post(
            "/orders", json={"price": price, "currency": "usd", "userId": "7"}
        )
    assert answer.status_code == 400, answer.text
    assert "is not a plain decimal number" in answer.json()["error"]["message"]


def test_an_order_price_written_plainly_is_stored_as_written(
    sqlite_server: LiveServer,
) -> None:
    with sqlite_server.client() as client:
        answer = client.post(
            "/orders", json={"price": "10.00", "currency": "usd", "userId": "7"}
        )
        assert answer.status_code == 201, answer.text
        stored = client.get(f"/orders/{answer.json()['id']}").json()
    assert Decimal(stored["price"]) == Decimal("10.00")


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        pytest.param("ACTIONFLOW_RETRY_CAP_SECONDS", "nan", id="nan"),
        pytest.param("ACTIONFLOW_RETRY_CAP_SECONDS", "inf", id="infinity"),
        pytest.param("ACTIONFLOW_RETRY_BASE_SECONDS", "1_0", id="underscore"),
        pytest.param("ACTIONFLOW_RETRY_ATTEMPTS", "\u0663", id="arabic-indic-digit"),
    ],
)
def test_a_retry_setting_not_written_plainly_is_refused(
    variable: str, raw: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigError, match=f"{variable} must be a positive number"):
        load_settings(None)


def test_dry_run_replay_of_an_id_beyond_the_database_finds_no_event(
    sqlite_url: str,
) -> None:
    result = _run(["dry-run", FLOW, "--replay", HUGE], sqlite_url)
    _refused_cleanly(result, 1, f"no event '{HUGE}'")
