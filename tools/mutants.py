"""Sabotaged builds of the product, for the reliability suite to prove it can fail; and the
warm function instances the suite delivers ``drain_spot`` to (and kills).

    RELIABILITY_MUTANT=never_gentle python -m tools.mutants FUNCTION EVENTFILE --cloud URL --db URL
    RELIABILITY_MUTANT=never_gentle python -m tools.mutants --serve   # one warm instance

Each mutant is one swap at a documented mutation point of the product (``shared.spot.machine``'s
docstring lists them; ``shared.autostart.flap_skip``; ``shared.ledger.lease_live``): applied in the
suite's own process with :func:`applied`, and in the subprocesses the suite starts (and kills)
through this module's command line, which reads :data:`MUTANT_ENV` and then runs
``tools.invoke`` unchanged. ``shared/`` never reads that variable: a deployed function cannot
be mutated by its environment. The name has no ``ECS_EVENT_OPS_`` prefix on purpose (that prefix
is the product's, whose settings refuse names they do not know).

Each mutant names the invariants of :mod:`tools.reliability` expected to catch it;
``tests/test_reliability.py`` runs the suite once per mutant and asserts one of them broke.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

MUTANT_ENV = "RELIABILITY_MUTANT"
# Where a served invocation can be told to stop dead (``job["park"]``): ``<point>:<step>`` of
# the drain's hook points (shared.spot.machine.Drainer: ``acted`` = its cloud writes done, not
# recorded; ``after`` = recorded), or ``midwait``: inside the wait's sleep, weight 0 written and
# recorded. The instance says ``parked`` and blocks; the suite then SIGKILLs it, so the kill
# lands exactly there however loaded the machine is.
KILL_POINTS = ("acted:find", "after:find", "acted:weight0", "after:weight0", "midwait",
               "acted:remove", "after:remove", "acted:verify")
# The replacement's (shared.replace.launcher.Replacer's hook): ``replace:launching`` = the
# candidate and its ClientToken recorded, RunInstances not sent; ``replace:launched`` =
# RunInstances answered, the successor not recorded (a takeover must find it by its tag).
REPLACE_KILL_POINTS = ("replace:launching", "replace:launched")
# The replacement's lease on the suite's compressed clock (a job's ``replace_lease_s``): the
# product's is a constant (shared.replace.launcher.REPLACE_LEASE_S, 120 s).
# Imported before an instance says it is ready: a warm FC instance (the cold start of an acting
# drain_spot is several seconds on a loaded machine, which a compressed notice cannot absorb).
WARM_MODULES = ("sqlalchemy", "alibabacloud_tea_openapi.client", "alibabacloud_ecs20140526.client",
                "alibabacloud_slb20140515.client", "alibabacloud_credentials.client", "shared.store",
                "shared.clients", "shared.spot.machine")


@dataclass(frozen=True)
class Mutant:
    name: str
    sabotage: str  # what the sabotaged build does wrong
    caught_by: tuple[str, ...]  # invariants of tools.reliability that must see it
    patch: Callable[[], Callable[[], None]]  # applies the swap; returns its undo


def _swap(module: Any, name: str, value: Any) -> Callable[[], None]:
    saved = getattr(module, name)
    setattr(module, name, value)
    return lambda: setattr(module, name, saved)


def _never_gentle() -> Callable[[], None]:
    from shared.spot import machine

    return _swap(machine, "STEPS", tuple(s for s in machine.STEPS
                                         if s.name is not machine.StepName.WEIGHT0))


def _weight0_as_original() -> Callable[[], None]:
    # A taker of a drain cut short after its weight-0 write re-reads the memberships (now at
    # weight 0: the resume rule swapped) and records what it sees as the originals (the guard
    # of shared.spot.record.original_weights, which would look the weight up in the ledger,
    # swapped for "what is seen is original"): two swaps, since either alone is caught inside
    # the product.
    from shared.spot import machine, record

    refind = {machine.StepName.WEIGHT0, machine.StepName.WAIT, machine.StepName.REMOVE}
    undo_steps = _swap(machine, "STEPS", tuple(
        replace(s, resume=machine.Resume.REFIND) if s.name in refind else s for s in machine.STEPS))
    undo_weights = _swap(record, "original_weights", lambda found, _history: (list(found), []))

    def undo() -> None:
        undo_weights()
        undo_steps()

    return undo


def _remove_every_member() -> Callable[[], None]:
    from shared.spot import machine

    def remove_all(d: Any, run: Any) -> Any:
        lb = d.clients_in(run.region).lb
        everyone = [member for m in run.memberships()
                    for member in lb.group_members(m.load_balancer_id, m.group_kind, m.group_id)]
        if everyone:
            lb.remove_members(everyone)
        return machine.Drainer.remove(d, replace(run, data={**run.data, "memberships": []}))

    return _swap(machine, "STEPS", tuple(
        replace(s, act=remove_all) if s.name is machine.StepName.REMOVE else s
        for s in machine.STEPS))


def _flap_guard_off() -> Callable[[], None]:
    from shared import autostart

    return _swap(autostart, "flap_skip", lambda _count, _settings: None)


def _forged_notice_accepted() -> Callable[[], None]:
    from shared.spot import machine

    return _swap(machine, "notice_refusal", lambda _instance, _region: None)


def _lease_never_expires() -> Callable[[], None]:
    from shared import ledger

    return _swap(ledger, "lease_live", lambda _data, _now: True)


def _token_random_no_reuse() -> Callable[[], None]:
    # ClientToken not derived from the old instance and the candidate (random), and neither the
    # ledger's decision nor the successor's tag consulted: every copy of a notice launches.
    import uuid

    from shared.replace import launcher, offerings

    undo_token = _swap(offerings.Candidate, "client_token", lambda _c, _old: f"rpl-{uuid.uuid4().hex}")
    undo_decided = _swap(launcher, "DECIDED", frozenset())
    undo_reuse = _swap(launcher.Replacer, "_successor", lambda _r, _clients, _iid: None)

    def undo() -> None:
        undo_reuse()
        undo_decided()
        undo_token()

    return undo


def _successor_weight_100() -> Callable[[], None]:
    # The successor joins its predecessor's groups at weight 100, not the recorded weight.
    from shared.replace import launcher

    moved = launcher._moved
    return _swap(launcher, "_moved", lambda m, server_id, ip: moved(m, server_id, ip).with_weight(100))


def _successor_skips_a_group() -> Callable[[], None]:
    # The successor is added to every group of its predecessor but the first one recorded.
    from shared.replace import launcher

    wanted = launcher.Replacer._wanted

    def skip_first(self: Any, entry: Any, successor: Any) -> Any:
        found = wanted(self, entry, successor)
        return found[1:] if found else found

    return _swap(launcher.Replacer, "_wanted", skip_first)


MUTANTS: dict[str, Mutant] = {m.name: m for m in (
    Mutant("never_gentle", "the drain removes at once, never weight 0 first",
           ("gentle",), _never_gentle),
    Mutant("weight0_as_original", "a taker of a drain records weight 0 (its own write) as original",
           ("originals_exact",), _weight0_as_original),
    Mutant("remove_every_member", "the drain removes every member of each group it drains",
           ("others_untouched",), _remove_every_member),
    Mutant("flap_guard_off", "auto-start never caps the starts of a flapping instance",
           ("started_once",), _flap_guard_off),
    Mutant("forged_notice_accepted", "a spot notice naming an on-demand instance is drained",
           ("nothing_from_forged",), _forged_notice_accepted),
    Mutant("lease_never_expires", "a killed drain's lease is never taken over (nor the restore's)",
           ("weight0_only_live", "drained_by_deadline", "originals_exact"), _lease_never_expires),
    Mutant("token_random_no_reuse", "the replacement's ClientToken is random and nothing is reused: "
           "each copy of a notice launches", ("one_successor",), _token_random_no_reuse),
    Mutant("successor_weight_100", "the successor joins its predecessor's groups at weight 100",
           ("successor_serves",), _successor_weight_100),
    Mutant("successor_skips_a_group", "the successor is not added to one group of its predecessor",
           ("successor_serves",), _successor_skips_a_group),
)}


@contextmanager
def applied(name: str | None) -> Iterator[None]:
    """The mutant ``name`` (None: none) applied in this process for the block."""
    if name is None:
        yield
        return
    undo = MUTANTS[name].patch()
    try:
        yield
    finally:
        undo()


@contextmanager
def kill_point(point: str | None, park: Callable[[], None]) -> Iterator[None]:
    """For the block, ``park()`` is called when a drain reaches ``point`` (:data:`KILL_POINTS`)."""
    if point is None:
        yield
        return
    if point in REPLACE_KILL_POINTS:
        with _replace_kill_point(point.split(":", 1)[1], park):
            yield
        return
    if point not in KILL_POINTS:
        raise ValueError(f"unknown kill point {point!r}; known: {', '.join(KILL_POINTS + REPLACE_KILL_POINTS)}")
    from shared.spot import machine

    def hook(self: Any, where: str, name: Any, run: Any) -> None:
        original(self, where, name, run)
        if point == "midwait" and where == "before" and name is machine.StepName.WAIT:
            self.sleep = lambda _seconds: park()  # the wait's sleep (taken only when wait > 0)
        elif point == f"{where}:{name.value}":
            park()

    original = machine.Drainer._call_hook
    undo = _swap(machine.Drainer, "_call_hook", hook)
    try:
        yield
    finally:
        undo()


@contextmanager
def _replace_kill_point(where: str, park: Callable[[], None]) -> Iterator[None]:
    """``park()`` when a replacement reaches ``where`` (its ``hook``: launching, launched)."""
    from shared.replace import launcher

    init = launcher.Replacer.__init__

    def hooked(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.hook = lambda name, _run: park() if name == where else None

    undo = _swap(launcher.Replacer, "__init__", hooked)
    try:
        yield
    finally:
        undo()


@contextmanager
def replace_lease(seconds: float | None) -> Iterator[None]:
    """For the block, the replacement's lease lasts ``seconds`` (None: the product's)."""
    if seconds is None:
        yield
        return
    from shared.replace import launcher

    undo = _swap(launcher, "REPLACE_LEASE_S", float(seconds))
    try:
        yield
    finally:
        undo()


def serve() -> int:
    """One warm function instance: JSON jobs on stdin, one answer each on stdout.

    A job: ``{"id", "function", "body" (base64), "cloud_url", "db_url", "env", "park", "mutant"}``
    (the mutant applied for that job, else :data:`MUTANT_ENV`'s); the answer ``{"id", "error",
    "value", "store_slowest"}``, or ``{"id", "parked"}`` when the job reached its kill point (the
    instance then blocks until killed). Log lines go to stderr."""
    default = os.environ.get(MUTANT_ENV) or None
    if default is not None and default not in MUTANTS:
        print(f"error: {MUTANT_ENV}={default!r} is not one of {', '.join(MUTANTS)}", file=sys.stderr)
        return 2
    from tools.invoke import invoke_local, load_function

    for module in WARM_MODULES:
        importlib.import_module(module)
    out = threading.Lock()
    # stdout is the suite's: the JSON log lines (written to the current sys.stdout) go to stderr
    answers, sys.stdout = sys.stdout, sys.stderr

    def say(answer: dict[str, Any]) -> None:
        with out:
            answers.write(json.dumps(answer, default=str) + "\n")
            answers.flush()

    say({"ready": os.getpid()})
    run: str | None = None
    for line in sys.stdin:
        job = json.loads(line)
        load_function(job["function"])
        if job.get("run") != run:  # another run: an instance of another deployment
            fresh_stores()
            run = job.get("run")

        def park(job: dict[str, Any] = job) -> None:
            say({"id": job["id"], "parked": job["park"]})
            threading.Event().wait()  # until SIGKILL

        with applied(job.get("mutant") or default), kill_point(job.get("park"), park), \
                replace_lease(job.get("replace_lease_s")), store_timer() as slowest:
            result = invoke_local(job["function"], base64.b64decode(job["body"]),
                                  cloud_url=job["cloud_url"], db_url=job["db_url"],
                                  env=job["env"], timeout_s=float(job.get("timeout_s", 60)))
        error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
        say({"id": job["id"], "error": error, "value": result.value,
             "store_slowest": [round(slowest["s"], 3), slowest["what"]]})
    return 0


def fresh_stores() -> None:
    """Forget the warm stores of this process (``shared.store.store_for``): a new run's database
    may sit at an old run's URL (a file deleted and made again, tables dropped)."""
    from shared import store

    for old in list(store._warm.values()):
        old.close()
    store._warm.clear()


@contextmanager
def store_timer() -> Iterator[dict[str, Any]]:
    """The slowest store transaction of this process during the block (its lock wait, retries
    and first schema check included): ``{"s": seconds, "what": operation}``."""
    from shared.store import Store

    slowest: dict[str, Any] = {"s": 0.0, "what": ""}
    original = Store._run

    def timed(self: Any, what: str, work: Any, *, write: bool = True) -> Any:
        started = time.monotonic()
        try:
            return original(self, what, work, write=write)
        finally:
            took = time.monotonic() - started
            if took > slowest["s"]:
                slowest.update(s=took, what=f"{what} ({'write' if write else 'read'})")

    undo = _swap(Store, "_run", timed)
    try:
        yield slowest
    finally:
        undo()


def main(argv: Sequence[str] | None = None) -> int:
    """``tools.invoke``'s command line, with the mutant named by RELIABILITY_MUTANT applied;
    ``--serve``: a warm instance (:func:`serve`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["-h"], ["--help"]):
        print("usage: python -m tools.mutants --serve | <tools.invoke arguments>\n\n"
              "Sabotaged builds for the reliability suite (tools.reliability). --serve: a warm "
              "drain_spot instance reading JSON jobs on stdin. Otherwise tools.invoke's command "
              f"line with the mutant named by {MUTANT_ENV} applied; mutants: {', '.join(MUTANTS)}.")
        return 0
    if argv == ["--serve"]:
        return serve()
    name = os.environ.get(MUTANT_ENV) or None
    if name is not None and name not in MUTANTS:
        print(f"error: {MUTANT_ENV}={name!r} is not one of {', '.join(MUTANTS)}", file=sys.stderr)
        return 2
    from tools.invoke import main as invoke_main

    with applied(name):
        return invoke_main(argv)


if __name__ == "__main__":
    sys.exit(main())
