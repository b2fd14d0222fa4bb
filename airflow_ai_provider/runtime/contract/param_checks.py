"""One-value checks for job parameters, shared by the runtime and the operators.

Each converts what a spec or a rendered template holds, or raises a one-line :class:`JobInputError`
naming the parameter. Light: no heavy import.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airflow_ai_provider.runtime.contract.errors import JobInputError

#: Upper bound of integer parameters (row counts): Arrow readers take a C int64, and no batch,
#: sample or shard count comes near it.
MAX_INT = 2**31 - 1
FUNCTION_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

Check = Callable[[Any, str], Any]


def reject_unknown_params(job: str, params: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse a parameter the job does not know: a typo must not be silently ignored."""
    known = sorted(known)
    unknown = sorted(set(params) - set(known))
    if unknown:
        hints = [
            f"{name} (did you mean {close[0]}?)"
            if (close := difflib.get_close_matches(name, known, 1))
            else name
            for name in unknown
        ]
        raise JobInputError(f"unknown {job} parameter(s): {', '.join(hints)}")


def integer(value: Any, name: str, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """An integer in ``[minimum, maximum]``; a string of digits (a rendered template) is converted."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise JobInputError(f"{name} must be {kind}, got {value!r}")
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise JobInputError(f"{name} must be {kind}, got {value}")
    if value > maximum:
        raise JobInputError(f"{name} must be at most {maximum}, got {value}")
    return value


def positive_int(maximum: int = MAX_INT) -> Check:
    return lambda value, name: integer(value, name, 1, maximum)


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or a float (a bool is neither)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(
    value: Any,
    name: str,
    *,
    above: float | None = None,
    below: float | None = None,
    minimum: float | None = None,
) -> float:
    """A finite number (a numeric string is converted), ``> above``, ``< below`` and ``>= minimum``."""
    original = value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise JobInputError(f"{name} must be a number, got {original!r}") from None
    if not is_number(value):
        raise JobInputError(f"{name} must be a number, got {original!r}")
    if not math.isfinite(value):
        raise JobInputError(f"{name} must be a finite number, got {original!r}")
    if above is not None and value <= above:
        raise JobInputError(f"{name} must be > {above:g}, got {original!r}")
    if below is not None and value >= below:
        raise JobInputError(f"{name} must be < {below:g}, got {original!r}")
    if minimum is not None and value < minimum:
        raise JobInputError(f"{name} must be >= {minimum:g}, got {original!r}")
    return float(value)


def boolean(value: Any, name: str) -> bool:
    """``True``/``False``, or the strings ``true``/``false`` a template renders to."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise JobInputError(f"{name} must be true or false, got {value!r}")


def choice(*choices: str) -> Check:
    def check(value: Any, name: str) -> str:
        if value not in choices:
            raise JobInputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def text(value: Any, name: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise JobInputError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _literal(value: Any, name: str, kind: type) -> Any:
    """A list or dict that a template rendered to its text (``"['a', 'b']"``), parsed back."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise JobInputError(f"{name} must be a {kind.__name__}, got the string {value!r}") from None
        if isinstance(parsed, kind):
            return parsed
    return value


def column_list(value: Any, name: str) -> list[str]:
    """Column names: a list, or one name as a string (as pandas ``on=``); a comma needs a list."""
    value = _literal(value, name, list)
    if isinstance(value, str):
        if not value.strip():
            return []
        if "," in value:
            parts = [part.strip() for part in value.split(",")]
            raise JobInputError(
                f"{name} is the single string {value!r}: pass a list of column names, e.g. {parts!r} "
                f"(or [{value!r}] if that is one column)"
            )
        value = [value]
    return _distinct_strings(value, name, "column names")


def string_list(value: Any, name: str) -> list[str]:
    """Non-empty strings: a list, or one string."""
    value = _literal(value, name, list)
    if isinstance(value, str):
        value = [value]
    return _distinct_strings(value, name, "strings")


def _distinct_strings(value: Any, name: str, what: str) -> list[str]:
    """``value`` as a list of non-empty strings without repeats (first occurrence kept)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        raise JobInputError(f"{name} must be a list of {what}, got {value!r}")
    return list(dict.fromkeys(value))


def output_names(value: Any, name: str) -> list[str] | dict[str, str]:
    """Output column names: a list (one per model output, in order), one name as a string, or a dict
    from the model's output name to the column name; the column names must not repeat."""
    value = _literal(value, name, dict if isinstance(value, str) and value.strip()[:1] == "{" else list)
    if isinstance(value, Mapping):
        if not value or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
        ):
            raise JobInputError(
                f"{name} must map model output names to column names (non-empty strings), got {value!r}"
            )
        columns = list(value.values())
        renamed = dict(value)
    else:
        columns = [value] if isinstance(value, str) else value
        if not isinstance(columns, (list, tuple)) or not columns:
            raise JobInputError(f"{name} must be a list of column names, one name, or a dict, got {value!r}")
        renamed = None
    if not all(isinstance(item, str) and item for item in columns) or len(set(columns)) != len(columns):
        raise JobInputError(
            f"{name} must name each output column once with a non-empty string, got {value!r}"
        )
    return renamed if renamed is not None else list(columns)


def mapping(value: Any, name: str) -> dict[str, Any]:
    value = _literal(value, name, dict)
    if not isinstance(value, Mapping):
        raise JobInputError(f"{name} must be a dict, got {value!r}")
    return dict(value)


def thresholds(minimum: float | None = None) -> Check:
    """A dict of metric name to finite number (numeric strings converted), each ``>= minimum``."""

    def check(value: Any, name: str) -> dict[str, float]:
        raw = mapping(value, name)
        return {str(key): number(item, f"{name}[{str(key)!r}]", minimum=minimum) for key, item in raw.items()}

    return check


def function_reference(value: Any, name: str) -> str:
    reference = text(value, name).strip()
    if not FUNCTION_REFERENCE.match(reference):
        raise JobInputError(f"{name} must be 'package.module:function', got {reference!r}")
    return reference


def model_name(value: Any, name: str) -> str:
    model = text(value, name).strip()
    if any(char in model for char in "/:'\"%"):
        raise JobInputError(f"{name} {model!r} must not contain '/', ':', '%' or quotes")
    return model


def alias_name(value: Any, name: str) -> str:
    alias = value if isinstance(value, str) else ""
    if not ALIAS.match(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise JobInputError(
            f"{name} {value!r} is not valid: use letters, digits, '_' and '-', not 'latest' or 'v<number>'"
        )
    return alias


def shard(index: Any, count: Any) -> tuple[int, int]:
    """``(shard_index, shard_count)`` checked: ``0 <= shard_index < shard_count``."""
    count = integer(count, "shard_count")
    index = integer(index, "shard_index", minimum=0)
    if index >= count:
        raise JobInputError(
            f"shard_index {index} is out of range for shard_count {count}: need 0 <= shard_index < shard_count"
        )
    return index, count
