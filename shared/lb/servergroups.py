"""What ALB (2020-06-16) and NLB (2022-04-30) share: server groups whose writes are
asynchronous jobs. :class:`ServerGroupClient` implements :class:`shared.lb.pools.ProductClient`
once; :mod:`shared.lb.alb` and :mod:`shared.lb.nlb` give the SDK, the per-call limits, the
spelling of the answers and how a job is read back.

Facts (reference/load-balancers-and-replacement.md §1–2, §7): every server-group write returns a
``JobId`` and runs in the background; the group is ``Configuring`` meanwhile and another write
fails with ``IncorrectStatus.ServerGroup`` (ALB) / ``IncorrectStatus.serverGroup`` or
``Conflict.Lock`` (NLB), which ERROR_RULES retries. So writes are batched per group and never two
at once on one group: before the next chunk on a group, the previous chunk's job is waited for.
Each write carries a ClientToken derived from the caller's seed and exactly what is sent
(:func:`shared.lb.model.client_token`). ``DryRun=true`` answers the ``DryRunOperation`` code on
success (the SDK's request documentation), read here as a write that would succeed.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal

from shared.clients import (
    MAX_PAGES,
    CloudError,
    NotFoundError,
    Rule,
    _Adapter,
    _chunks,
    _int,
    _mapping,
    _opt,
    _str,
    _unique,
)
from shared.lb.model import (
    GroupKind,
    GroupRef,
    JobStatus,
    Membership,
    Product,
    ServerGroup,
    Write,
    client_token,
    grouped,
)
from shared.log import emit, get_logger

__all__ = ["JOB_WAIT_S", "ServerGroupClient", "invocation_group_cache"]

# The server groups listed during one invocation, shared by the adapters of all its threads
# (each thread builds its own SDK client and adapter, whose own cache would list the same
# groups again): (product, region, group id) -> ServerGroup. Set by invocation_group_cache();
# threads started with contextvars.copy_context() see the same dict.
_INVOCATION_GROUPS: contextvars.ContextVar[dict[tuple[str, str, str], ServerGroup] | None] = (
    contextvars.ContextVar("lb_invocation_groups", default=None))


@contextlib.contextmanager
def invocation_group_cache() -> Iterator[None]:
    """One invocation's server-group cache (module note above): a group is listed once per
    invocation, not once per thread; the next invocation lists it afresh."""
    token = _INVOCATION_GROUPS.set({})
    try:
        yield
    finally:
        _INVOCATION_GROUPS.reset(token)

log = get_logger(__name__)

PAGE = 100  # MaxResults of the list calls (1–100)
JOB_WAIT_S = 60.0  # a chunk's job must end within this before the next chunk of its group
JOB_PAUSES_S = (0.1, 0.2, 0.5, 1.0)  # between polls of one job (the last repeats)

Operation = Literal["weight", "remove", "add"]


class ServerGroupClient(_Adapter):
    """The ALB/NLB adapter; subclasses set the class attributes and the SDK specifics."""

    product: ClassVar[Product]
    RAM_ACTIONS: ClassVar[Mapping[str, tuple[str, ...]]]
    # Per-call limits (reference §1.8, §2.8)
    LIST_SERVER_IDS: ClassVar[int]
    LIST_GROUP_IDS: ClassVar[int]
    WRITE_LIMITS: ClassVar[Mapping[Operation, int]]
    WRITE_ACTIONS: ClassVar[Mapping[Operation, str]] = {
        "weight": "UpdateServerGroupServersAttribute",
        "remove": "RemoveServersFromServerGroup",
        "add": "AddServersToServerGroup",
    }

    def __init__(self, sdk_client: Any, region: str, **kwargs: Any) -> None:
        super().__init__(sdk_client, region, **kwargs)
        self._groups: dict[str, ServerGroup] = {}
        self.clock: Callable[[], float] = time.monotonic

    # --- SDK specifics (subclasses) ------------------------------------------------------

    def _models(self) -> Any:
        raise NotImplementedError

    def _action(self, api: str) -> str:
        """The CALLED_ACTIONS key of an API of this product, e.g. ``alb:ListServerGroups``."""
        return f"{self.product.value}:{api}"

    def _region_kwargs(self) -> dict[str, Any]:
        return {}

    def _group_from_map(self, item: Mapping[str, Any]) -> ServerGroup:
        raise NotImplementedError

    def job_statuses(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        raise NotImplementedError

    def _list_members_request(self, models: Any, group_id: str | None,
                              server_ids: Sequence[str] | None, token: str | None) -> Any:
        return models.ListServerGroupServersRequest(
            server_group_id=group_id, server_ids=list(server_ids) if server_ids else None,
            max_results=PAGE, next_token=token, **self._region_kwargs())

    # --- server groups -------------------------------------------------------------------

    def list_server_groups(self, *, group_ids: Sequence[str] = (),
                           tag: tuple[str, str] | None = None) -> list[ServerGroup]:
        """The server groups of the region, by ids and/or one tag, all pages."""
        models = self._models()
        found: dict[str, ServerGroup] = {}
        id_chunks: list[Sequence[str] | None] = list(
            _chunks(_unique(group_ids), self.LIST_GROUP_IDS)) or [None]
        for chunk in id_chunks:
            token: str | None = None
            for _ in range(MAX_PAGES):

                def send(chunk: Sequence[str] | None = chunk, token: str | None = token) -> Any:
                    return self._sdk.list_server_groups(models.ListServerGroupsRequest(
                        server_group_ids=list(chunk) if chunk else None,
                        tag=[models.ListServerGroupsRequestTag(key=tag[0], value=tag[1])]
                        if tag else None,
                        max_results=PAGE, next_token=token, **self._region_kwargs()))

                body = self._call(self._action("ListServerGroups"), list(chunk or ()), send)
                for item in _list(body.get("ServerGroups")):
                    group = self._group_from_map(item)
                    found[group.group_id] = group
                    self._groups[group.group_id] = group
                    shared = _INVOCATION_GROUPS.get()
                    if shared is not None:
                        shared[(self.product.value, self.region, group.group_id)] = group
                token = _opt(body.get("NextToken"))
                if not token:
                    break
        return list(found.values())

    def server_group(self, group_id: str) -> ServerGroup:
        """One group (cached for this adapter's life); NotFoundError if it does not exist."""
        found = self._groups.get(group_id) or self._shared_group(group_id)
        if found is None:
            listed = self.list_server_groups(group_ids=[group_id])
            if not listed:
                raise NotFoundError("ResourceNotFound.ServerGroup", "no such server group",
                                    action=self._action("ListServerGroups"),
                                    resource_ids=[group_id], rule=Rule.NOT_FOUND)
            found = listed[0]
        return found

    def _shared_group(self, group_id: str) -> ServerGroup | None:
        """The group as another thread of this invocation listed it, kept here too."""
        shared = _INVOCATION_GROUPS.get()
        found = None if shared is None else shared.get((self.product.value, self.region, group_id))
        if found is not None:
            self._groups[group_id] = found
        return found

    def _groups_of(self, group_ids: Sequence[str]) -> dict[str, ServerGroup]:
        for g in _unique(group_ids):
            if g not in self._groups:
                self._shared_group(g)
        missing = [g for g in _unique(group_ids) if g not in self._groups]
        if missing:
            self.list_server_groups(group_ids=missing)
        return {g: self._groups[g] for g in group_ids if g in self._groups}

    # --- reads ---------------------------------------------------------------------------

    def _members(self, group_id: str | None, server_ids: Sequence[str] | None,
                 ) -> list[Mapping[str, Any]]:
        """ListServerGroupServers, all pages (no group id: across groups where allowed)."""
        models = self._models()
        items: list[Mapping[str, Any]] = []
        token: str | None = None
        for _ in range(MAX_PAGES):

            def send(token: str | None = token) -> Any:
                return self._sdk.list_server_group_servers(
                    self._list_members_request(models, group_id, server_ids, token))

            ids = [g for g in (group_id,) if g] + list(server_ids or ())
            body = self._call(self._action("ListServerGroupServers"), ids, send)
            items.extend(_list(body.get("Servers")))
            token = _opt(body.get("NextToken"))
            if not token:
                break
        return items

    def _membership(self, item: Mapping[str, Any], group: ServerGroup) -> Membership:
        lbs = sorted(group.load_balancer_ids)
        return Membership(
            load_balancer_id=lbs[0] if lbs else "",
            group_kind=GroupKind.SERVER_GROUP,
            group_id=group.group_id,
            server_id=_str(item.get("ServerId")),
            port=_int(item.get("Port")),
            weight=_weight(item.get("Weight")),
            server_type=_str(item.get("ServerType")) or "Ecs",
            server_ip=_opt(item.get("ServerIp")),
            description=_opt(item.get("Description")),
            product=self.product,
            native_drain=group.native_drain,
            drain_timeout_s=group.drain_timeout_s,
            managed_by=group.managed_by,
            status=_opt(item.get("Status")),
            vpc_id=group.vpc_id,
        )

    def members_of(self, group: GroupRef) -> list[Membership]:
        if group.group_id is None:
            raise ValueError(f"{self.product.value} pool without a group id: {group}")
        info = self.server_group(group.group_id)
        return [self._membership(item, info) for item in self._members(group.group_id, None)]

    def group_members(self, group_id: str) -> list[Membership]:
        return self.members_of(GroupRef(self.product, "", GroupKind.SERVER_GROUP, group_id))

    def scan(self, where: Sequence[str]) -> list[Membership]:
        """Every member of the groups ``where`` (empty: of every group of the region)."""
        groups = (self.list_server_groups(group_ids=where) if where
                  else self.list_server_groups())
        out: list[Membership] = []
        for group in groups:
            try:
                out.extend(self._membership(i, group) for i in self._members(group.group_id, None))
            except NotFoundError:
                emit(log, "server group vanished", level=30, product=self.product.value,
                     group_id=group.group_id)
        return out

    def find(self, server_ids: Sequence[str], where: Sequence[str]) -> list[Membership]:
        """Memberships of these servers in the groups ``where`` (empty: every group), asking
        each group for just these server ids (≤ LIST_SERVER_IDS per call)."""
        ids = _unique(server_ids)
        if not ids:
            return []
        groups = (self.list_server_groups(group_ids=where) if where
                  else self.list_server_groups())
        out: list[Membership] = []
        for group in groups:
            for chunk in _chunks(ids, self.LIST_SERVER_IDS):
                try:
                    items = self._members(group.group_id, chunk)
                except NotFoundError:
                    emit(log, "server group vanished", level=30, product=self.product.value,
                         group_id=group.group_id)
                    break
                wanted = set(chunk)
                out.extend(self._membership(i, group) for i in items
                           if _str(i.get("ServerId")) in wanted)
        return out

    # --- writes --------------------------------------------------------------------------

    def write_weights(self, memberships: Sequence[Membership], weight: int | None = None, *,
                      token_seed: str | None = None, dry_run: bool = False) -> list[Write]:
        if weight is not None and not 0 <= weight <= 100:
            raise ValueError(f"weight must be 0..100, not {weight}")
        return self._write("weight", memberships, weight, token_seed, dry_run)

    def write_remove(self, memberships: Sequence[Membership], *, token_seed: str | None = None,
                     dry_run: bool = False) -> list[Write]:
        return self._write("remove", memberships, None, token_seed, dry_run)

    def write_add(self, memberships: Sequence[Membership], *, token_seed: str | None = None,
                  dry_run: bool = False) -> list[Write]:
        return self._write("add", memberships, None, token_seed, dry_run)

    def _write(self, operation: Operation, memberships: Sequence[Membership],
               weight: int | None, token_seed: str | None, dry_run: bool) -> list[Write]:
        out: list[Write] = []
        for group, members in grouped(memberships).items():
            if group.product is not self.product or not group.group_id:
                raise ValueError(f"{self.product.value} cannot write to {group}")
            refused = [m for m in members if m.managed_by is not None]
            if refused:
                raise ValueError(f"{operation}: {group} is {refused[0].not_removable_reason}")
            previous: Write | None = None
            for chunk in _chunks(members, self.WRITE_LIMITS[operation]):
                if previous is not None and previous.job_id is not None:
                    self._wait_one(previous)  # never two writes at once on one group
                previous = self._send(operation, group, list(chunk), weight=weight,
                                      token_seed=token_seed, dry_run=dry_run)
                if previous is not None:
                    out.append(previous)
        return out

    def _send(self, operation: Operation, group: GroupRef, chunk: list[Membership], *,
              weight: int | None, token_seed: str | None, dry_run: bool) -> Write | None:
        api = self.WRITE_ACTIONS[operation]
        action = self._action(api)
        token = client_token(token_seed or "", action, chunk, weight) if token_seed else None
        models = self._models()
        request_class = getattr(models, f"{api}Request")
        server_class = getattr(models, f"{api}RequestServers")
        method = getattr(self._sdk, _snake(api))

        def servers(members: Sequence[Membership]) -> list[Any]:
            return [server_class(**_server_fields(operation, m, weight)) for m in members]

        def send(members: Sequence[Membership] = chunk) -> Any:
            return method(request_class(
                server_group_id=group.group_id, servers=servers(members), client_token=token,
                dry_run=True if dry_run else None, **self._region_kwargs()))

        ids = [group.group_id or "", *(m.server_id for m in chunk)]
        try:
            body = self._call(action, ids, send)
        except CloudError as err:
            if dry_run and err.rule is Rule.DRY_RUN_OK:
                return Write(group, api, tuple(chunk), token=token, dry_run=True)
            if operation != "add" and err.code.lower() == "resourcenotfound.backendserver":
                return self._send_present(operation, group, chunk, err, weight=weight,
                                          token_seed=token_seed, dry_run=dry_run)
            raise
        job = _opt(body.get("JobId"))
        return Write(group, api, tuple(chunk), job_id=job, token=token, dry_run=dry_run)

    def _send_present(self, operation: Operation, group: GroupRef, chunk: list[Membership],
                      err: CloudError, *, weight: int | None, token_seed: str | None,
                      dry_run: bool) -> Write | None:
        """A member of the chunk is not in the group (removed meanwhile): the others only;
        none left is done (for a removal that is the goal)."""
        current = [m for m in self.members_of(group) if m.status != "Removing"]
        still = [m for m in chunk if any(
            c.server_id == m.server_id and c.port == m.port
            and (m.server_ip is None or c.server_ip == m.server_ip) for c in current)]
        emit(log, "members already gone", product=self.product.value, group_id=group.group_id,
             operation=operation, gone=len(chunk) - len(still))
        if not still:
            return None
        if len(still) == len(chunk):  # each one is there, yet one was reported missing
            raise err
        return self._send(operation, group, still, weight=weight, token_seed=token_seed,
                          dry_run=dry_run)

    def _wait_one(self, write: Write, timeout_s: float = JOB_WAIT_S) -> None:
        """Wait for one job (the previous chunk on the same group)."""
        if write.job_id is None:
            return
        start = self.clock()
        for attempt in range(10_000):
            status, code = self.job_statuses([write.job_id]).get(
                write.job_id, (JobStatus.PROCESSING, None))
            if status is JobStatus.SUCCEEDED:
                return
            if status is JobStatus.FAILED:
                raise CloudError(code or "JobFailed", f"job {write.job_id} failed",
                                 action=self._action(write.action),
                                 resource_ids=[write.group.group_id or ""])
            pause = JOB_PAUSES_S[min(attempt, len(JOB_PAUSES_S) - 1)]
            if self.clock() - start + pause > timeout_s:
                break
            self._retry.sleep(pause)
        from shared.clients import TransientError

        raise TransientError("JobTimeout", f"job {write.job_id} still running",
                             action=self._action(write.action),
                             resource_ids=[write.group.group_id or ""], retryable=True)


def _server_fields(operation: Operation, m: Membership, weight: int | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"server_id": m.server_id, "server_type": m.server_type,
                              "port": m.port}
    if m.server_ip:
        fields["server_ip"] = m.server_ip
    if operation == "weight":
        fields["weight"] = m.weight if weight is None else weight
    elif operation == "add":
        fields["weight"] = m.weight
        if m.description:
            fields["description"] = m.description
    return fields


def _snake(api: str) -> str:
    out = []
    for i, ch in enumerate(api):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _list(value: object) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        value = [value]
    return [i for i in value if isinstance(i, Mapping)] if isinstance(value, list) else []


def _weight(value: object) -> int:
    found = _int(value)
    return 100 if found is None else found


def _tags(value: object) -> tuple[tuple[str, str], ...]:
    return tuple((_str(t.get("Key")), _str(t.get("Value"))) for t in _list(value)
                 if t.get("Key") is not None)


def _ids(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value if v)
    return ()


__all__ += ["_ids", "_list", "_mapping", "_tags"]
