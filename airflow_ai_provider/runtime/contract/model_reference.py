"""The one model reference both planes use: ``churn``, ``churn@champion``, ``churn/3``, parsed and pinned."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.params import MAX_INT

_REFERENCE = re.compile(r"^(?:models:/)?(?P<name>[^@/\s]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))?$")

#: What to write instead of a reference that does not parse.
REFERENCE_FORMS = "use 'name', 'name@alias', 'name/version' or 'models:/name@alias'"


@dataclass(frozen=True)
class ModelReference:
    """A registered model, by name and at most one alias or version until it is pinned.

    Pinning keeps the alias the version was resolved from, for the record: a pinned reference has a
    ``version`` and may still have an ``alias``. The runtime only ever gets pinned references, and
    never follows an alias itself.

    :param name: registered model name.
    :param version: concrete registry version (pinned), or ``None``.
    :param alias: the alias written by the user (and, once pinned, the one the version came from).
    """

    name: str
    version: str | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise JobInputError(f"model reference needs a model name, got {self.name!r}")
        if self.version is None:
            return
        if isinstance(self.version, bool) or not isinstance(self.version, (str, int)):
            raise JobInputError(
                f"model {self.name!r}: version must be a registry version number, got {self.version!r}"
            )
        if str(self.version).isdigit() and int(self.version) > MAX_INT:
            raise JobInputError(
                f"model {self.name!r}: version {self.version} is not a registry version number "
                f"(at most {MAX_INT})"
            )

    @classmethod
    def parse(cls, text: str, error: type[Exception] = JobInputError) -> ModelReference:
        """Parse ``name``, ``name@alias``, ``name/version``, or the same behind ``models:/``.

        :param error: the exception class raised for text that is not a reference (the control
            plane passes its never-retried configuration error).
        """
        match = _REFERENCE.match(str(text).strip())
        if not match:
            raise error(f"model reference {text!r} is not valid: {REFERENCE_FORMS}")
        return cls(match["name"], match["version"], match["alias"])

    @property
    def pinned(self) -> bool:
        """Whether the reference names one concrete registry version."""
        return self.version is not None

    def pin(self, version: str | int) -> ModelReference:
        """This reference resolved to ``version`` (the alias is kept as where it came from)."""
        return replace(self, version=str(version))

    @property
    def uri(self) -> str:
        """``models:/name/version`` when pinned, else ``models:/name@alias`` or ``models:/name``."""
        if self.version is not None:
            return f"models:/{self.name}/{self.version}"
        if self.alias:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}"
