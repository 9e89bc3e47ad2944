"""Sabotaged builds of the product, for the reliability suite to prove it can fail.

    RELIABILITY_MUTANT=never_gentle python -m tools.mutants FUNCTION EVENTFILE --cloud URL --db URL

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

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

MUTANT_ENV = "RELIABILITY_MUTANT"


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


def main(argv: Sequence[str] | None = None) -> int:
    """``tools.invoke``'s command line, with the mutant named by RELIABILITY_MUTANT applied."""
    name = os.environ.get(MUTANT_ENV) or None
    if name is not None and name not in MUTANTS:
        print(f"error: {MUTANT_ENV}={name!r} is not one of {', '.join(MUTANTS)}", file=sys.stderr)
        return 2
    from tools.invoke import main as invoke_main

    with applied(name):
        return invoke_main(argv)


if __name__ == "__main__":
    sys.exit(main())
