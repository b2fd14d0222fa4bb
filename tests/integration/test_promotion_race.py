"""The alias compare-and-set under races, delays, lost answers and crashes, against a real ``mlflow server``.

Racers are threads, each with its own MLflow client. Delays and failures are injected on the wire by
a loopback proxy (:mod:`tests._support.http_proxy`) in front of the same server; nothing in the code
under test is replaced.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from airflow_ai_provider.alias_ledger import (
    CLAIM_EXPERIMENT_PREFIX,
    EPOCH_TAG_PREFIX,
    AliasMove,
    move_alias,
)
from airflow_ai_provider.exceptions import ConcurrentPromotionError, MlflowUnavailableError
from airflow_ai_provider.hooks.mlflow import MlflowHook
from tests._support.http_proxy import Rule, http_proxy

RACERS = 6
API = "/api/2.0/mlflow"


def _client(url: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url)


@pytest.fixture
def model(mlflow_server, mlflow_connection) -> str:
    """A fresh registered model with seven versions (registry metadata only: nothing is loaded)."""
    name = f"race-{uuid.uuid4().hex[:8]}"
    client = _client(mlflow_server.url)
    client.create_registered_model(name)
    for _ in range(RACERS + 1):
        client.create_model_version(name, source="s3://nowhere/model")
    return name


def _slow_hook(monkeypatch, url: str) -> MlflowHook:
    """A hook whose connection goes through the proxy at ``url``."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_PROXIED", json.dumps({"conn_type": "mlflow", "host": url}))
    return MlflowHook(mlflow_conn_id="mlflow_proxied")


def _tag_key(alias: str) -> str:
    return f"ai.test.promoted_to.{alias}"


def _race(
    moves: list[tuple[MlflowHook, AliasMove]],
    first: tuple[MlflowHook, AliasMove, threading.Event] | None = None,
) -> dict[str, BaseException | None]:
    """Start every move at the same instant; return each claimant's outcome (None = won).

    With ``first``, that move starts alone and the others start once its event is set (its
    request reached the proxy that delays it).
    """
    barrier = threading.Barrier(len(moves))
    outcomes: dict[str, BaseException | None] = {}

    def run(hook: MlflowHook, move: AliasMove, wait) -> None:
        wait()
        try:
            move_alias(hook, move, {_tag_key(move.alias): move.claimant})
            outcomes[move.claimant] = None
        except BaseException as err:
            outcomes[move.claimant] = err

    threads = []
    if first is not None:
        hook, move, arrived = first
        threads.append(threading.Thread(target=run, args=(hook, move, lambda: None)))
        threads[0].start()
        assert arrived.wait(60), "the delayed racer's request never reached the proxy"
    threads += [threading.Thread(target=run, args=(*pair, barrier.wait)) for pair in moves]
    for thread in threads[1 if first else 0 :]:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(outcomes) == len(threads), "a racer did not finish"
    return outcomes


@contextmanager
def _claim_held(url: str, monkeypatch, move: AliasMove) -> Iterator[list[BaseException | None]]:
    """Run ``move`` in a thread whose claim (the experiment it creates) the proxy holds until the
    body has run; yield the list that receives its outcome (None = moved) once the thread ends."""
    # Every try is held: a body that outlasts the client's request timeout must not let its retry through.
    hold = Rule("POST", f"{API}/experiments/create", "hold", seconds=60, times=20)
    outcome: list[BaseException | None] = []

    def racer(hook: MlflowHook) -> None:
        try:
            move_alias(hook, move, {_tag_key(move.alias): move.claimant})
            outcome.append(None)
        except BaseException as err:
            outcome.append(err)

    with http_proxy(url, [hold], lifetime=120) as proxy:
        thread = threading.Thread(target=racer, args=(_slow_hook(monkeypatch, proxy.url),))
        thread.start()
        assert hold.arrived.wait(60), f"{move.claimant} never tried to claim"
        yield outcome
        hold.release()
        thread.join(timeout=60)


def _claims(url: str, name: str, alias: str) -> list:
    from mlflow.entities import ViewType

    prefix = f"{CLAIM_EXPERIMENT_PREFIX}/{name}/{alias}/"
    found = _client(url).search_experiments(view_type=ViewType.ALL, filter_string=f"name LIKE '{prefix}%'")
    return sorted(found, key=lambda experiment: experiment.name)


def _assert_one_winner(url: str, name: str, alias: str, moves: list[AliasMove], outcomes, epoch: int) -> str:
    """Exactly one winner; the alias, the tags, the epoch and the claims all name it. Returns it."""
    winners = [move for move in moves if outcomes[move.claimant] is None]
    losers = [outcomes[move.claimant] for move in moves if outcomes[move.claimant] is not None]
    assert len(winners) == 1, outcomes
    assert all(isinstance(err, ConcurrentPromotionError) for err in losers), losers
    assert all("not overwriting" in str(err) and "\n" not in str(err) for err in losers)
    (winner,) = winners
    client = _client(url)
    registered = client.get_registered_model(name)
    assert str(registered.aliases[alias]) == winner.target
    assert registered.tags[f"{EPOCH_TAG_PREFIX}{alias}"] == str(epoch + 1)
    claimants = {move.claimant for move in moves}
    tagged = {
        str(version.version)
        for version in client.search_model_versions(f"name = '{name}'")
        if version.tags.get(_tag_key(alias)) in claimants
    }
    assert tagged == {winner.target}
    assert client.get_model_version(name, winner.target).tags[_tag_key(alias)] == winner.claimant
    claims = _claims(url, name, alias)
    assert [claim.name.rsplit("/", 1)[1] for claim in claims] == [str(e) for e in range(epoch + 1)]
    assert claims[-1].tags["ai.claim.claimant"] == winner.claimant
    assert all(claim.lifecycle_stage == "deleted" for claim in claims)  # hidden, names still taken
    return winner.target


@pytest.mark.parametrize("round_", range(4))
def test_first_promotions_of_a_fresh_alias_have_exactly_one_winner(model, mlflow_server, round_):
    alias = f"fresh{round_}"
    moves = [AliasMove(model, alias, None, str(v), f"dag/run-{v}/promote") for v in range(1, RACERS + 1)]
    outcomes = _race([(MlflowHook(), move) for move in moves])
    _assert_one_winner(mlflow_server.url, model, alias, moves, outcomes, epoch=0)


def test_later_promotions_from_the_same_champion_have_exactly_one_winner(model, mlflow_server):
    current = None
    for epoch in range(3):
        versions = [str(v) for v in range(1, RACERS + 2) if str(v) != current][:RACERS]
        moves = [AliasMove(model, "champion", current, v, f"dag/run{epoch}-{v}/promote") for v in versions]
        outcomes = _race([(MlflowHook(), move) for move in moves])
        current = _assert_one_winner(mlflow_server.url, model, "champion", moves, outcomes, epoch=epoch)


@pytest.mark.parametrize(
    ("delayed", "rule"),
    [
        ("claim request", Rule("POST", f"{API}/experiments/create", "delay_request", seconds=3)),
        ("claim answer", Rule("POST", f"{API}/experiments/create", "delay_response", seconds=3)),
        ("first read", Rule("GET", f"{API}/registered-models/get", "delay_response", seconds=3)),
    ],
)
def test_a_racer_delayed_in_transit_still_leaves_exactly_one_winner(
    model, mlflow_server, monkeypatch, delayed, rule
):
    with http_proxy(mlflow_server.url, [rule], lifetime=120) as proxy:
        slow = _slow_hook(monkeypatch, proxy.url)
        moves = [AliasMove(model, "champion", None, str(v), f"dag/run-{v}/promote") for v in (1, 2, 3)]
        outcomes = _race([(MlflowHook(), move) for move in moves[1:]], first=(slow, moves[0], rule.arrived))
    assert rule.hits == 1, f"the {delayed} was not delayed"
    _assert_one_winner(mlflow_server.url, model, "champion", moves, outcomes, epoch=0)


def test_a_claim_whose_answer_was_lost_is_recognised_when_the_client_sends_it_again(
    model, mlflow_server, monkeypatch
):
    # The server creates the claim, the client gets a 503 instead and its HTTP retry sends the create
    # again, which now conflicts with the claim it made itself.
    rule = Rule("POST", f"{API}/experiments/create", "lose_response", status=503)
    with http_proxy(mlflow_server.url, [rule], lifetime=120) as proxy:
        move = AliasMove(model, "champion", None, "1", "dag/run-1/promote")
        assert move_alias(_slow_hook(monkeypatch, proxy.url), move, {_tag_key("champion"): move.claimant})
        assert proxy.count("POST", f"{API}/experiments/create") == 2
    _assert_one_winner(mlflow_server.url, model, "champion", [move], {move.claimant: None}, epoch=0)


CRASH_POINTS = {
    "claim made, alias not moved": ("POST", "registered-models/alias"),
    "alias moved, version tags not written": ("POST", "model-versions/set-tag"),
    "alias moved and tagged, epoch not bumped": ("POST", "registered-models/set-tag"),
    "epoch bumped, claim not hidden": ("POST", "experiments/delete"),
}


@pytest.mark.parametrize("crash", list(CRASH_POINTS))
def test_a_retry_after_a_crash_completes_the_one_move_and_nobody_else_can_take_over(
    model, mlflow_server, monkeypatch, crash
):
    method, path = CRASH_POINTS[crash]
    client = _client(mlflow_server.url)
    client.set_registered_model_alias(model, "champion", "1")
    move = AliasMove(model, "champion", "1", "2", "dag/run-2/promote")
    tags = {_tag_key("champion"): move.claimant}
    # Every HTTP try of that step fails: the task's first try dies there with a retryable error.
    rule = Rule(method, f"{API}/{path}", "fail", status=503, times=10)
    with http_proxy(mlflow_server.url, [rule], lifetime=120) as proxy, pytest.raises(MlflowUnavailableError):
        move_alias(_slow_hook(monkeypatch, proxy.url), move, tags)
    assert rule.hits >= 1
    if crash == "claim made, alias not moved":
        assert str(client.get_registered_model(model).aliases["champion"]) == "1"
        assert _tag_key("champion") not in client.get_model_version(model, "2").tags
    if crash != "epoch bumped, claim not hidden":
        # The claim stays until its claimant completes it: another DAG run cannot take over.
        other = AliasMove(model, "champion", "1", "3", "dag/run-3/promote")
        with pytest.raises(ConcurrentPromotionError, match="being moved by dag/run-2/promote"):
            move_alias(MlflowHook(), other, {_tag_key("champion"): other.claimant})
        assert _tag_key("champion") not in client.get_model_version(model, "3").tags

    moved_now = move_alias(MlflowHook(), move, tags)  # the task's retry: same claimant
    assert moved_now is (crash != "epoch bumped, claim not hidden")
    assert move_alias(MlflowHook(), move, tags) is False  # and any later retry changes nothing
    _assert_one_winner(mlflow_server.url, model, "champion", [move], {move.claimant: None}, epoch=0)


def test_a_racer_that_read_an_outdated_epoch_does_not_move_even_if_its_claim_name_was_freed(
    model, mlflow_server, monkeypatch
):
    """``mlflow gc`` deletes soft-deleted experiments for good, freeing old claim names; the check
    after claiming (epoch and alias as read) still stops a racer that read the state before."""
    client = _client(mlflow_server.url)
    late = AliasMove(model, "champion", None, "1", "dag/late/promote")
    with _claim_held(mlflow_server.url, monkeypatch, late) as outcome:
        winner = AliasMove(model, "champion", None, "2", "dag/early/promote")
        assert move_alias(MlflowHook(), winner, {_tag_key("champion"): winner.claimant})
        (claim,) = _claims(mlflow_server.url, model, "champion")
        gc = subprocess.run(
            [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", mlflow_server.backend_uri,
             "--tracking-uri", mlflow_server.url, "--experiment-ids", claim.experiment_id],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert gc.returncode == 0, gc.stderr[-2000:]
        assert _claims(mlflow_server.url, model, "champion") == []
    assert len(outcome) == 1 and isinstance(outcome[0], ConcurrentPromotionError), outcome
    assert "outdated state" in str(outcome[0])
    registered = client.get_registered_model(model)
    assert str(registered.aliases["champion"]) == "2"
    assert registered.tags[f"{EPOCH_TAG_PREFIX}champion"] == "1"
    assert _tag_key("champion") not in client.get_model_version(model, "1").tags


def test_an_alias_moved_outside_any_promotion_while_claiming_makes_the_claimant_give_up_its_epoch(
    model, mlflow_server, monkeypatch
):
    client = _client(mlflow_server.url)
    move = AliasMove(model, "champion", None, "1", "dag/run-1/promote")
    with _claim_held(mlflow_server.url, monkeypatch, move) as outcome:
        client.set_registered_model_alias(model, "champion", "3")  # by hand, in the UI say
    assert len(outcome) == 1 and isinstance(outcome[0], ConcurrentPromotionError), outcome
    assert "points to version 3, but this DAG run saw none" in str(outcome[0])
    assert str(client.get_registered_model(model).aliases["champion"]) == "3"
    assert _tag_key("champion") not in client.get_model_version(model, "1").tags
    # The epoch it claimed was given up, so the next promotion is not blocked.
    after = AliasMove(model, "champion", "3", "2", "dag/run-2/promote")
    outcomes = _race([(MlflowHook(), after)])
    _assert_one_winner(mlflow_server.url, model, "champion", [after], outcomes, epoch=1)
