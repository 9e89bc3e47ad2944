"""What the emulator's ALB and NLB tests share: the lb fleet, a documented-answer case and its
check against the contract."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from Tea.exceptions import TeaException

from tests.helpers import FLEETS
from tools.emulator import Emulator, load_fleet
from tools.emulator.contract import Contract, ViolationKind

JOB_S = 0.2
C = TypeVar("C")


@dataclass(frozen=True)
class Case(Generic[C]):
    """One SDK call: ``code`` None means it must succeed, else fail with that code."""

    id: str
    action: str
    call: Callable[[C], Any]
    code: str | None = None
    setup: Callable[[C, Emulator], object] | None = None


@contextmanager
def lb_emulator() -> Iterator[Emulator]:
    """The emulator on tests/fixtures/fleets/lb.yaml, its load balancer jobs taking ``JOB_S``."""
    with Emulator(load_fleet(FLEETS / "lb.yaml"), start_delay_s=0.01, lb_job_s=JOB_S) as e:
        yield e


def members(body: Any) -> dict[tuple[str, int], tuple[int, str]]:
    """A ListServerGroupServers body as (server id, port) -> (weight, status)."""
    return {(s.server_id, s.port): (s.weight, s.status) for s in body.servers}


def check_documented_answer(product: str, case: Case[C], *, client: C, emu: Emulator,
                            contract: Contract, over_max_items: Iterable[str]) -> None:
    """Run ``case`` and check the answer: success or the documented error with its documented
    HTTP status; the raw body and the request conform to the contract (the cases in
    ``over_max_items``, past a documented maxItems, send what it calls a bad request)."""
    if case.setup is not None:
        case.setup(client, emu)
    emu.clear_calls()
    outcome: Any
    try:
        outcome = case.call(client)
    except TeaException as err:
        outcome = err
    (call,) = [c for c in emu.calls() if c.action == case.action]
    assert call.body is not None and call.product == product
    if case.code is None:
        assert not isinstance(outcome, TeaException), outcome
        assert (call.status, call.code) == (200, None)
        assert contract.check_response(product, case.action, call.body) == []
    else:
        assert isinstance(outcome, TeaException)
        assert (outcome.code, call.code) == (case.code, case.code)
        assert call.status == outcome.data["statusCode"]
        assert call.status in contract.statuses_of(product, case.action, case.code)
    over = [ViolationKind.BAD_PARAM_VALUE] if case.id in set(over_max_items) else []
    assert [v.kind for v in contract.check_request(product, case.action, call.params)] == over
    assert emu.contract_violations() == []
