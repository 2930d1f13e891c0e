"""Start-up checks and bad input that must never become a 500."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from actionflow.engine import db
from actionflow.engine.errors import ConfigError
from actionflow.engine.flow import load_project
from actionflow.server.app import first_announcement
from actionflow.server.config import load_settings
from tests.conftest import LiveServer


def test_a_new_sqlite_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    engine = db.create_db_engine(f"sqlite:///{tmp_path / 'new.db'}")
    db.prepare(engine)
    engine.dispose()
    mode = stat.S_IMODE((tmp_path / "new.db").stat().st_mode)
    assert mode == 0o600


def test_generated_secrets_are_announced_once_per_database(sqlite_url: str) -> None:
    engine = db.create_db_engine(sqlite_url)
    db.prepare(engine)
    assert [first_announcement(engine) for _ in range(3)] == [True, False, False]
    engine.dispose()


def test_a_missing_flows_folder_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the flows folder .*nowhere does not exist"):
        load_project([tmp_path / "nowhere"])


def test_a_relative_sqlite_path_in_a_config_file_is_relative_to_the_file(
    tmp_path: Path,
) -> None:
    config = tmp_path / "project" / "actionflow.yaml"
    config.parent.mkdir()
    config.write_text("database_url: sqlite:///shop.db\nflows: []\n")
    settings = load_settings(config)
    assert settings.database_url == f"sqlite:///{config.parent.resolve() / 'shop.db'}"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("GET", "/orders/99999999999999999999999", None, 404, id="huge-id"),
        pytest.param("GET", "/orders/%C2%B2", None, 404, id="superscript-digit"),
        pytest.param(
            "GET", "/payments?orderId=99999999999", None, 400, id="huge-query"
        ),
        pytest.param(
            "POST",
            "/actions/stripe-payment",
            {"orderId": 99999999999999999999999, "currency": "usd", "amount": 1},
            400,
            id="huge-json-id",
        ),
        pytest.param(
            "POST",
            "/orders",
            {"price": "1.00", "currency": "usd", "userId": "x" * 65},
            400,
            id="long-user-id",
        ),
        pytest.param(
            "POST",
            "/orders",
            {"price": "1.00", "currency": "usd", "userId": "a\u0000b"},
            400,
            id="nul-in-user-id",
        ),
        pytest.param(
            "POST",
            "/orders",
            {"price": "1e999999", "currency": "usd", "userId": "u"},
            400,
            id="absurd-price",
        ),
        pytest.param("GET", "/no-such-page", None, 404, id="unknown-path"),
        pytest.param("DELETE", "/orders/1", None, 405, id="wrong-method"),
    ],
)
def test_bad_input_gets_a_json_error_never_a_500(
    live_server: LiveServer, method: str, path: str, body: object, status: int
) -> None:
    with live_server.client() as client:
        answer = client.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["status"] == status
