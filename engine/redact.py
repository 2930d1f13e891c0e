"""Remove secrets from text before it is logged, stored in a run or printed.

Two nets: the values the process knows to be secret (its Stripe key, webhook
secrets, admin token, database password), and the shapes secrets have even
when their value is not known here (Stripe keys, signing secrets, client
secrets, admin tokens, passwords in URLs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[redacted]"

SECRET_SHAPES = re.compile(
    r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{6,}"  # Stripe secret and restricted keys
    r"|\bwhsec_[A-Za-z0-9_\-]{6,}"  # webhook signing secrets
    r"|\baft_[A-Za-z0-9_\-]{6,}"  # admin tokens actionflow generates
    r"|\b(?:pi|seti)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"  # client secrets
)
URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@\s]+@", re.I)

# Shorter values are too likely to occur by chance to be replaced everywhere.
SHORTEST_KNOWN = 6


def redact(text: str, known: Iterable[str] = ()) -> str:
    """`text` with every known secret value and every secret-shaped string masked."""
    # Longest first, so a secret that contains another is masked whole.
    values = sorted({v for v in known if v and len(v) >= SHORTEST_KNOWN}, key=len)
    for value in reversed(values):
        text = text.replace(value, MASK)
    text = SECRET_SHAPES.sub(MASK, text)
    return URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)
