"""db.rolled_back: code that commits many transactions, none of them kept."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, insert, select

from actionflow.engine import db
from actionflow.engine.tables import Setting, utcnow

SETTINGS = Setting.__table__  # type: ignore[attr-defined]


def _put(engine: Engine, name: str) -> None:
    with db.write(engine) as connection:
        connection.execute(
            insert(SETTINGS).values(name=name, value="v", created_at=utcnow())
        )


def _names(engine: Engine) -> list[str]:
    with db.read(engine) as connection:
        query = select(SETTINGS.c.name).where(SETTINGS.c.name.like("t-%"))
        return sorted(connection.execute(query).scalars())


def test_writes_inside_see_each_other_and_none_is_kept(engine: Engine) -> None:
    with db.rolled_back(engine):
        _put(engine, "t-first")
        _put(engine, "t-second")
        seen = _names(engine)

    assert seen == ["t-first", "t-second"]
    assert _names(engine) == []


def test_a_failed_write_inside_undoes_only_itself(engine: Engine) -> None:
    with db.rolled_back(engine):
        _put(engine, "t-kept-for-now")
        with pytest.raises(RuntimeError), db.write(engine) as connection:
            connection.execute(
                insert(SETTINGS).values(name="t-undone", value="v", created_at=utcnow())
            )
            raise RuntimeError("the action refused")
        seen = _names(engine)

    assert seen == ["t-kept-for-now"]
    assert _names(engine) == []


def test_outside_it_writes_are_committed_as_before(engine: Engine) -> None:
    _put(engine, "t-committed")

    assert _names(engine) == ["t-committed"]
