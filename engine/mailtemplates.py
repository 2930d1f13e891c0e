"""Mail templates: Jinja2 files in the project's templates folder, sandboxed.

Templates come from the project; the values they show come from events and
tables, and are passed in as variables only. A customer who writes `{{ 7*7 }}`
in an order's description gets those characters back, never 49: data is never
compiled as a template. `.html` templates escape every value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from jinja2.exceptions import TemplateNotFound, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ActionflowError, RunError
from .money import from_minor_units


class MailTemplates:
    """The templates of one folder, loaded through a sandboxed environment."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.environment = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(folder)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(["html", "htm"], default_for_string=False),
            keep_trailing_newline=True,
        )
        self.environment.filters["money"] = money

    def exists(self, name: str) -> bool:
        """True if the folder has a template called `name`."""
        try:
            self.environment.get_template(name)
        except TemplateNotFound:
            return False
        except TemplateError:
            return True  # it exists; render() reports what is wrong with it
        return True

    def render(self, name: str, data: dict[str, Any]) -> str:
        """The template `name` rendered with `data` as its variables."""
        try:
            return self.environment.get_template(name).render(data)
        except TemplateNotFound as exc:
            missing = exc.name or name
            raise RunError(
                f"template {missing!r} is not in the templates folder {self.folder}; "
                "add it there or fix the name"
            ) from None
        except UndefinedError as exc:
            raise RunError(
                f"template {name!r}: {exc.message}; pass it in the step's `data`"
            ) from None
        except ActionflowError as exc:
            raise RunError(f"template {name!r}: {exc.message}") from None
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f" line {line}" if line else ""
            raise RunError(f"template {name!r}{where}: {exc.message}") from None


def money(amount: int, currency: str) -> str:
    """`amount` minor units of `currency` as a price: 1099, "usd" -> "10.99 USD"."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise RunError(
            f"money: the amount must be in minor units (an integer), got {amount!r}"
        )
    return f"{from_minor_units(amount, currency)} {currency.upper()}"
