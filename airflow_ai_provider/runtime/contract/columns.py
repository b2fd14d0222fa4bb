"""Column-name quirks: duplicate names in an input file and look-alike names of a missing column.

Two names look alike when they print the same or nearly so: equal after Unicode NFKC normalisation,
case folding, trimming, dropping zero-width and other invisible characters and mapping common
Cyrillic and Greek homoglyphs to Latin letters. When a required column is missing and the input has
a look-alike, the message shows both names' code points, on one line.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable

from airflow_ai_provider.runtime.contract.errors import JobInputError

#: Characters that print as nothing: zero-width space/joiners, word joiner, BOM, soft hyphen.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"))
#: Cyrillic and Greek letters that print like Latin ones (after case folding).
_HOMOGLYPHS = str.maketrans(
    {
        "а": "a",
        "в": "b",
        "с": "c",
        "е": "e",
        "һ": "h",
        "і": "i",
        "ј": "j",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "ѕ": "s",
        "т": "t",
        "у": "y",
        "х": "x",
        "ԁ": "d",
        "ԛ": "q",
        "ԝ": "w",
        "ӏ": "l",
        "ё": "e",
        "ї": "i",
        "α": "a",
        "β": "b",
        "ε": "e",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ζ": "z",
        "η": "n",
        "μ": "u",
    }  # fmt: skip
)
MAX_SHOWN = 3


def look_alike_key(name: str) -> str:
    """What ``name`` looks like: the key two look-alike names share."""
    folded = unicodedata.normalize("NFKC", name).translate(_INVISIBLE).casefold().strip()
    return "".join(char for char in folded if unicodedata.category(char) not in ("Cf", "Mn")).translate(
        _HOMOGLYPHS
    )


def code_points(name: str) -> str:
    """``'name' (U+006E U+0061 ...)``."""
    return f"{name!r} ({' '.join(f'U+{ord(char):04X}' for char in name)})"


def look_alikes(missing: Iterable[str], present: Iterable[str]) -> str:
    """A message part naming, for each missing name, the present names that look like it; or ``""``.

    E.g. ``column 'customer_id' (U+0063 ...) looks like input column 'сustomer_id' (U+0441 ...)``.
    """
    by_key: dict[str, list[str]] = {}
    for name in present:
        by_key.setdefault(look_alike_key(name), []).append(name)
    parts = []
    for name in missing:
        similar = [other for other in by_key.get(look_alike_key(name), []) if other != name]
        if similar:
            shown = " and ".join(code_points(other) for other in similar[:MAX_SHOWN])
            parts.append(f"{code_points(name)} looks like input column {shown}")
    if not parts:
        return ""
    shown = parts[:MAX_SHOWN] + ([f"and {len(parts) - MAX_SHOWN} more"] if len(parts) > MAX_SHOWN else [])
    return "; ".join(shown) + ": rename the column in the input or fix the name you pass"


def with_look_alikes(message: str, missing: Iterable[str], present: Iterable[str]) -> str:
    """``message`` followed by the look-alike names, if any (see :func:`look_alikes`)."""
    hint = look_alikes(missing, present)
    return f"{message} ({hint})" if hint else message


def check_unique_names(names: Iterable[str], where: str) -> None:
    """Refuse a file whose columns repeat a name (Parquet and CSV headers allow it)."""
    repeated = [(name, count) for name, count in Counter(names).items() if count > 1]
    if repeated:
        shown = ", ".join(f"{name!r} ({count} times)" for name, count in repeated[:MAX_SHOWN])
        raise JobInputError(
            f"input {where} has duplicate column name(s) {shown}: give each column a unique name"
        )
