"""What the ALB and NLB tests share: the lb fleet (tests/fixtures/fleets/lb.yaml) and its ids, the
server-group requests both SDKs spell alike, a documented-answer case and its check against the
contract, and a sleep that decides how the functions' ALB/NLB jobs end (:class:`JobPauses`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import pytest
from Tea.exceptions import TeaException

from tests.helpers import FLEETS, emulator_for
from tools.emulator import Emulator, load_fleet
from tools.emulator.contract import Contract, ViolationKind, load_contract

if TYPE_CHECKING:
    from shared.clients import Clients
    from shared.settings import Settings

JOB_S = 0.2
C = TypeVar("C")
SPOT = "i-bp1spot000000000001"
SPOT_IP = "10.0.1.21"
WEB1 = "i-bp1web0000000000001"
WEB2 = "i-bp1web0000000000002"
ALB_DRAIN = "sgp-bp1drain000000001"  # connection draining, 30 s
ALB_PLAIN = "sgp-bp1plain000000001"
ALB_ACK = "sgp-bp1ack0000000001"  # managed by ACK (Kubernetes)
NLB_TCP = "sgp-bp1tcp0000000001"  # no draining
NLB_IP = "sgp-bp1ipgrp00000001"  # Ip group, draining 10 s
GROUPS = (ALB_DRAIN, ALB_PLAIN, ALB_ACK, NLB_TCP, NLB_IP)
NEW = "i-bp1new0000000000001"  # in the fleet, in no group
ABSENT = "i-bp1zzzzzzzzzzzzzzzz9"  # no such instance
NO_GROUP = "sgp-bp1nothere000001"  # no such server group
Member = tuple[str, str, "int | None"]


@dataclass(frozen=True)
class Case(Generic[C]):
    """One SDK call: ``code`` None means it must succeed, else fail with that code."""

    id: str
    action: str
    call: Callable[[C], Any]
    code: str | None = None
    setup: Callable[[C, Emulator], object] | None = None


def covered(product: str, cases: Iterable[Case[Any]]) -> tuple[set[tuple[str, str]], ...]:
    """The (product, action) pairs ``cases`` drive to a success, and to an error (read by
    tests/test_conformance.py's coverage check)."""
    cases = list(cases)
    return ({(product, c.action) for c in cases if c.code is None},
            {(product, c.action) for c in cases if c.code is not None})


@contextmanager
def lb_emulator() -> Iterator[Emulator]:
    """The emulator on tests/fixtures/fleets/lb.yaml, its load balancer jobs taking ``JOB_S``."""
    with Emulator(load_fleet(FLEETS / "lb.yaml"), start_delay_s=0.01, lb_job_s=JOB_S) as e:
        yield e


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """A fixture for the SDK-level tests: :func:`lb_emulator`."""
    with lb_emulator() as e:
        yield e


@pytest.fixture(scope="module")
def contract() -> Contract:
    return load_contract()


@contextmanager
def lb_functions_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The lb fleet for the functions (signing environment set), its jobs quick and a 30 s
    connection drain lasting 0.3 s."""
    with emulator_for("lb.yaml", monkeypatch, start_delay_s=0.01, lb_job_s=0.05) as emulator:
        emulator.set_lb_jobs(drain_scale=0.01)
        yield emulator


@dataclass(eq=False)  # called as a sleep, kept as one (hashable)
class JobPauses:
    """A ``sleep`` for the functions' clients (``Clients.from_settings(..., sleep=...)``) that
    lets the test decide how each ALB/NLB job ends: every pause of a job wait ends the jobs then
    ``Processing``, the first ``times`` of ``fail`` (api name, group id) as ``Failed`` (a code its
    action documents; NLB's GetJobStatus then answers ``processing`` for it forever), the others
    ``Succeeded``. With the emulator's jobs long (``set_lb_jobs(job_s=60)``) none ends any other
    way. ``real``: the pause is slept too (a wait that only its timeout ends must not spin)."""

    emu: Emulator
    fail: tuple[str, str] | None = None
    real: bool = False
    failed: list[dict[str, Any]] = field(default_factory=list)
    times: int = 1  # how many of ``fail``'s jobs end Failed (the first ones)

    CODES: ClassVar[dict[str, str]] = {"alb": "IncorrectStatus.ServerGroup",
                                       "nlb": "IncorrectStatus.serverGroup"}

    def __call__(self, seconds: float) -> None:
        for product, code in self.CODES.items():
            for job in self.emu.lb_jobs(product):
                if (len(self.failed) < self.times and job["status"] == "Processing"
                        and (job["api_name"], job["group_id"]) == self.fail):
                    self.emu.fail_lb_job(job["id"], code)
                    self.failed.append(job)
        self.emu.finish_lb_jobs()
        if self.real:
            time.sleep(seconds)

    def clients(self, settings: Settings) -> Clients:
        """The functions' clients on ``settings`` (the emulator's first credential), pausing
        here."""
        from shared.clients import Clients, Credentials

        cred = self.emu.credentials[0]
        return Clients.from_settings(settings, Credentials(
            cred["access_key_id"], cred["access_key_secret"]), sleep=self)


def groups(emu: Emulator) -> dict[Member, int]:
    """(group, server, port) -> weight, every ALB and NLB group."""
    return {(g, m["server_id"], m["port"]): m["weight"]
            for g in GROUPS for m in emu.lb_group(g)["members"]}


def members(body: Any) -> dict[tuple[str, int], tuple[int, str]]:
    """A ListServerGroupServers body as (server id, port) -> (weight, status)."""
    return {(s.server_id, s.port): (s.weight, s.status) for s in body.servers}


@dataclass(frozen=True)
class GroupCalls:
    """The server-group requests ALB and NLB share (their SDKs name the requests and fields
    alike), built afresh on each call from one product's ``models``
    (``alibabacloud_alb20200616.models`` or ``alibabacloud_nlb20220430.models``) with its default
    ``group`` and member ``port``; ``c`` is that product's SDK client. The writes answer the
    JobId."""

    models: Any
    group: str
    port: int

    def upd(self, sid: str = SPOT, port: int | None = None, weight: int = 0) -> Any:
        """One server of an UpdateServerGroupServersAttribute."""
        return self.models.UpdateServerGroupServersAttributeRequestServers(
            server_id=sid, server_type="Ecs", port=self.port if port is None else port,
            weight=weight)

    def rm(self, sid: str = SPOT, port: int | None = None, server_type: str = "Ecs") -> Any:
        """One server of a RemoveServersFromServerGroup."""
        return self.models.RemoveServersFromServerGroupRequestServers(
            server_id=sid, server_type=server_type, port=self.port if port is None else port)

    def new(self, sid: str = NEW, port: int | None = None) -> Any:
        """One server of an AddServersToServerGroup, at weight 100."""
        return self.models.AddServersToServerGroupRequestServers(
            server_id=sid, server_type="Ecs", port=self.port if port is None else port,
            weight=100)

    def update(self, c: Any, group: str | None = None, *servers: Any, token: str | None = None,
               dry_run: bool | None = None) -> str:
        """UpdateServerGroupServersAttribute (default: spot-1 to weight 0)."""
        return self._job(c.update_server_group_servers_attribute,
                         self.models.UpdateServerGroupServersAttributeRequest, group,
                         servers or (self.upd(),), client_token=token, dry_run=dry_run)

    def remove(self, c: Any, group: str | None = None, *servers: Any, token: str | None = None,
               dry_run: bool | None = None) -> str:
        """RemoveServersFromServerGroup (default: spot-1)."""
        return self._job(c.remove_servers_from_server_group,
                         self.models.RemoveServersFromServerGroupRequest, group,
                         servers or (self.rm(),), client_token=token, dry_run=dry_run)

    def add(self, c: Any, group: str | None = None, *servers: Any,
            token: str | None = None) -> str:
        """AddServersToServerGroup (default: new-1)."""
        return self._job(c.add_servers_to_server_group,
                         self.models.AddServersToServerGroupRequest, group,
                         servers or (self.new(),), client_token=token)

    def _job(self, send: Callable[[Any], Any], request: Callable[..., Any], group: str | None,
             servers: tuple[Any, ...], **options: Any) -> str:
        return str(send(request(server_group_id=group or self.group, servers=list(servers),
                                **options)).body.job_id)

    def servers(self, c: Any, group: str) -> dict[tuple[str, int], tuple[int, str]]:
        """The group's members as :func:`members` reads them."""
        return members(c.list_server_group_servers(self.models.ListServerGroupServersRequest(
            server_group_id=group)).body)


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
