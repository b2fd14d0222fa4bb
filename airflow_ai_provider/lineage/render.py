"""The walked chain and how it is shown: as text or as a JSON-friendly dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Hop:
    """One link of the chain: a label, one line of text, and whether its record was found."""

    label: str
    text: str
    found: bool = True
    ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DagRunRecord:
    """An Airflow DAG run the chain passes through, with its state (``None``: unknown)."""

    dag_id: str
    run_id: str
    state: str | None


@dataclass
class Lineage:
    """The chain for one target: ``hops`` newest first, then the DAG runs involved, oldest first."""

    target: str
    hops: list[Hop] = field(default_factory=list)
    dag_runs: list[DagRunRecord] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every hop's record was found."""
        return all(hop.found for hop in self.hops)

    def render(self) -> str:
        """The chain as text: the first hop, then ``<-`` lines, then one ``DAG runs:`` line."""
        width = max((len(hop.label) for hop in self.hops), default=0)
        lines = []
        for position, hop in enumerate(self.hops):
            text = hop.text if hop.found else f"not recorded: {hop.text}"
            prefix = "" if position == 0 else "  <- "
            lines.append(f"{prefix}{hop.label.ljust(width)}  {text}")
        runs = "; ".join(f"{r.dag_id}/{r.run_id} {r.state or 'state unknown'}" for r in self.dag_runs)
        lines.append(f"DAG runs: {runs or 'none recorded'}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The chain as one JSON-friendly dict: ``target``, ``complete``, ``hops``, ``dag_runs``."""
        return {
            "target": self.target,
            "complete": self.complete,
            "hops": [
                {"hop": hop.label, "found": hop.found, "text": hop.text, "ids": hop.ids} for hop in self.hops
            ],
            "dag_runs": [{"dag_id": r.dag_id, "run_id": r.run_id, "state": r.state} for r in self.dag_runs],
        }
