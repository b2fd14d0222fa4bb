"""The alias ledger: compare-and-set moves of a registry alias, claimed once per epoch."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from airflow_ai_provider.exceptions import AiProviderConfigError, ConcurrentPromotionError
from airflow_ai_provider.hooks.mlflow_entities import MlflowApiError
from airflow_ai_provider.mlflow_registry import check_alias_name

if TYPE_CHECKING:
    from airflow_ai_provider.hooks.mlflow import MlflowHook
    from airflow_ai_provider.hooks.mlflow_entities import Experiment
    from airflow_ai_provider.hooks.mlflow_rest import MlflowRestClient as MlflowClient

MAX_VERSION_TAG_KEY_LENGTH = 250
MAX_VERSION_TAG_VALUE_LENGTH = 100_000
MAX_EXPERIMENT_NAME_LENGTH = 500

CLAIM_EXPERIMENT_PREFIX = "airflow-ai-provider/alias-claims"
EPOCH_TAG_PREFIX = "ai.alias_epoch."
CLAIM_TAG_PREFIX = "ai.claim."
_NO_VERSION = "none"


def check_version_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Refuse, before anything is written, version tags MLflow would refuse after the alias moved."""
    for key, value in tags.items():
        if len(key) > MAX_VERSION_TAG_KEY_LENGTH or len(str(value)) > MAX_VERSION_TAG_VALUE_LENGTH:
            raise AiProviderConfigError(
                f"model version tag {key[:60]!r} is too long for MLflow (key at most "
                f"{MAX_VERSION_TAG_KEY_LENGTH}, value at most {MAX_VERSION_TAG_VALUE_LENGTH} characters): "
                "shorten the reason or comment"
            )
    return {key: str(value) for key, value in tags.items()}


@dataclass(frozen=True)
class AliasMove:
    """One compare-and-set of an alias: point ``alias`` at ``target`` if it points at ``expected``.

    ``None`` means "no alias" on either side (a first promotion expects none; a rollback to nothing
    targets none). ``claimant`` names the task asking, ``dag_id/run_id/task_id``: every try of one
    task is the same claimant.
    """

    name: str
    alias: str
    expected: str | None
    target: str | None
    claimant: str

    @property
    def change(self) -> str:
        return f"{self.expected or _NO_VERSION}->{self.target or _NO_VERSION}"

    def claim_name(self, epoch: int) -> str:
        """The experiment whose creation claims ``epoch``: unique per (model, alias, epoch)."""
        name = f"{CLAIM_EXPERIMENT_PREFIX}/{self.name}/{self.alias}/{epoch}"
        if len(name) <= MAX_EXPERIMENT_NAME_LENGTH:
            return name
        digest = hashlib.sha256(f"{self.name}\0{self.alias}".encode()).hexdigest()[:32]
        return f"{CLAIM_EXPERIMENT_PREFIX}/sha256-{digest}/{epoch}"

    def claim_tags(self, epoch: int) -> dict[str, str]:
        """What a claim records, at creation (MLflow cannot tag a deleted experiment later)."""
        return {
            f"{CLAIM_TAG_PREFIX}model": self.name,
            f"{CLAIM_TAG_PREFIX}alias": self.alias,
            f"{CLAIM_TAG_PREFIX}epoch": str(epoch),
            f"{CLAIM_TAG_PREFIX}claimant": self.claimant,
            f"{CLAIM_TAG_PREFIX}expected": self.expected or _NO_VERSION,
            f"{CLAIM_TAG_PREFIX}target": self.target or _NO_VERSION,
            f"{CLAIM_TAG_PREFIX}claimed_at": datetime.now(timezone.utc).isoformat(),
            "mlflow.note.content": (
                f"alias {self.alias} of model {self.name}: {self.change} by {self.claimant}"
            ),
        }

    def owns(self, claim: Experiment | None) -> bool:
        """True when ``claim`` was made by this claimant for this very change."""
        if claim is None:
            return False
        tags = claim.tags
        return (
            tags.get(f"{CLAIM_TAG_PREFIX}claimant") == self.claimant
            and tags.get(f"{CLAIM_TAG_PREFIX}expected") == (self.expected or _NO_VERSION)
            and tags.get(f"{CLAIM_TAG_PREFIX}target") == (self.target or _NO_VERSION)
        )


@dataclass(frozen=True)
class AliasState:
    """What the registry says now: the version the alias points to and the alias's epoch."""

    current: str | None
    epoch: int


def move_alias(hook: MlflowHook, move: AliasMove, version_tags: Mapping[str, str] | None = None) -> bool:
    """Point ``move.alias`` at ``move.target`` only if it still points at ``move.expected``.

    Every alias has an *epoch*, the model tag ``ai.alias_epoch.<alias>`` (0 when absent). A move
    claims the current epoch by creating the experiment :meth:`AliasMove.claim_name`; the tracking
    server's database keeps experiment names unique, also for deleted experiments, so of any number
    of racers exactly one creates it and the others fail with :class:`ConcurrentPromotionError`
    having written nothing. The winner re-reads the model (epoch and alias must be as it read them),
    moves the alias, writes ``version_tags`` onto the target (so they exist only for a move that
    happened), bumps the epoch and soft-deletes its claim (which keeps the name taken).

    A retry by the same claimant finds its claim and completes the move; one whose move already
    completed changes nothing.

    :param hook: the MLflow connection.
    :param move: what to move, from where to where, and who asks.
    :param version_tags: tags for the target version.
    :return: True if this call moved the alias, False if an earlier try of the claimant had.
    :raises ConcurrentPromotionError: the alias moved or is being moved by another claimant.
    """
    check_alias_name(move.alias)
    tags = check_version_tags(version_tags or {})
    with hook.errors(f"moving alias {move.alias!r} of model {move.name!r}"), hook.client() as client:
        return _AliasMover(client, hook, move).run(tags)


class _AliasMover:
    """The steps of one :func:`move_alias` call, on one client."""

    def __init__(self, client: MlflowClient, hook: MlflowHook, move: AliasMove) -> None:
        self.client = client
        self.hook = hook
        self.move = move

    def run(self, tags: dict[str, str]) -> bool:
        move = self.move
        state = self.state()
        if move.target is not None:
            self.client.get_model_version(move.name, move.target)  # an unknown version fails here
        if state.epoch > 0:
            previous = self.claim_at(state.epoch - 1)
            if move.owns(previous) and state.current == move.target:
                self.hide(previous)
                return False  # an earlier try completed this very move
        claim = self.claim_at(state.epoch)
        if claim is None:
            if state.current != move.expected:
                raise self.moved(state.current)
            self.claim(state.epoch)
        elif not move.owns(claim):
            raise self.held_by(claim)
        self.complete(state.epoch, tags)
        return True

    def state(self) -> AliasState:
        move = self.move
        model = self.client.get_registered_model(move.name)
        current = model.aliases.get(move.alias)
        raw_epoch = model.tags.get(f"{EPOCH_TAG_PREFIX}{move.alias}", "0")
        try:
            epoch = int(raw_epoch)
        except ValueError:
            raise AiProviderConfigError(
                f"model {move.name!r} has tag {EPOCH_TAG_PREFIX}{move.alias}={raw_epoch!r}, not an epoch "
                "number: set it to one more than the highest epoch claimed for this alias"
            ) from None
        return AliasState(None if current is None else str(current), epoch)

    def claim_at(self, epoch: int) -> Experiment | None:
        """The claim of ``epoch``, deleted or not."""
        return self.client.get_experiment_by_name(self.move.claim_name(epoch))

    def claim(self, epoch: int) -> None:
        """Create the claim of ``epoch``, or fail with :class:`ConcurrentPromotionError`."""
        name = self.move.claim_name(epoch)
        try:
            self.client.create_experiment(
                name, artifact_location=self.hook.artifact_location(name), tags=self.move.claim_tags(epoch)
            )
        except MlflowApiError as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            holder = self.claim_at(epoch)
            if not self.move.owns(holder):
                raise self.held_by(holder) from None
            # Our own create, answered too late and sent again by the client's HTTP retry.

    def complete(self, epoch: int, tags: dict[str, str]) -> None:
        """Holding the claim of ``epoch``: check nothing moved meanwhile, then move and bump."""
        move, client = self.move, self.client
        now = self.state()
        if now.epoch != epoch:
            raise ConcurrentPromotionError(
                f"alias {move.alias!r} of model {move.name!r} went from epoch {epoch} to {now.epoch} while "
                "this promotion claimed it (it read an outdated state); not overwriting (re-run the DAG to "
                "evaluate against the new version)"
            )
        if now.current not in (move.expected, move.target):
            self.bump(epoch)  # moved outside any claim: give the epoch up so the next move can claim
            self.hide(self.claim_at(epoch))
            raise self.moved(now.current)
        if now.current != move.target:
            if move.target is None:
                client.delete_registered_model_alias(move.name, move.alias)
            else:
                client.set_registered_model_alias(move.name, move.alias, move.target)
        if move.target is not None:
            for key, value in tags.items():
                client.set_model_version_tag(move.name, move.target, key, value)
        self.bump(epoch)
        self.hide(self.claim_at(epoch))

    def bump(self, epoch: int) -> None:
        self.client.set_registered_model_tag(
            self.move.name, f"{EPOCH_TAG_PREFIX}{self.move.alias}", str(epoch + 1)
        )

    def hide(self, claim: Experiment | None) -> None:
        """Soft-delete a claim: gone from the UI, its name still taken (deleted names stay unique)."""
        if claim is not None and claim.lifecycle_stage == "active":
            self.client.delete_experiment(claim.experiment_id)

    def moved(self, current: str | None) -> ConcurrentPromotionError:
        move = self.move
        return ConcurrentPromotionError(
            f"alias {move.alias!r} of model {move.name!r} points to version {current or _NO_VERSION}, but "
            f"this DAG run saw {move.expected or _NO_VERSION}: another promotion moved it; not overwriting "
            "(re-run the DAG to evaluate against the new version)"
        )

    def held_by(self, claim: Experiment | None) -> ConcurrentPromotionError:
        move = self.move
        tags = claim.tags if claim is not None else {}
        holder = tags.get(f"{CLAIM_TAG_PREFIX}claimant", "another promotion")
        change = f"{tags.get(f'{CLAIM_TAG_PREFIX}expected')}->{tags.get(f'{CLAIM_TAG_PREFIX}target')}"
        return ConcurrentPromotionError(
            f"alias {move.alias!r} of model {move.name!r} is being moved by {holder} (version {change}, "
            f"claimed {tags.get(f'{CLAIM_TAG_PREFIX}claimed_at', '')}); not overwriting (re-run the DAG "
            "afterwards; if that task died with no retry left, clear it in Airflow so it completes its move)"
        )
