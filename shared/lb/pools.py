"""One interface over the three load-balancer products: find, read, set weight, remove, add,
wait for completion.

:class:`ProductClient` is what each product adapter offers (shared/lb/clb.py, alb.py, nlb.py);
:class:`LoadBalancers` dispatches memberships of any product to their adapter, batches writes per
pool and waits for the asynchronous ones (ALB/NLB jobs), polling every job of one call together.

Writes: one call per pool and per documented per-call limit, never two at once on one pool (an
adapter waits for its previous job on that pool before the next chunk); each ALB/NLB write
carries a ClientToken derived from ``token_seed`` and exactly what is sent
(:func:`shared.lb.model.client_token`), so a retry of the same request is never applied twice.
``dry_run``: ALB/NLB send ``DryRun=true`` (the documented ``DryRunOperation`` answer is success);
CLB has no DryRun and makes no call.

Scope (:class:`LbScope`): CLB load balancer ids; ALB/NLB server group ids, or every server group
of the product when its ids are empty and the product is in scope.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from shared.lb.model import GroupRef, JobStatus, Membership, Product, ServerGroup, Write, grouped

__all__ = [
    "JOB_POLL_S",
    "JobFailedError",
    "LbScope",
    "LoadBalancers",
    "ProductClient",
    "ServerGroupsPort",
]

JOB_POLL_S = (0.2, 0.5, 1.0, 1.0, 2.0)  # pauses between polls of one wait (the last repeats)


class JobFailedError(Exception):
    """An ALB/NLB job ended ``Failed`` (its code and message in the text)."""


@runtime_checkable
class ProductClient(Protocol):
    """What every product adapter offers (the product-neutral part).

    ``where``: CLB load balancer ids; ALB/NLB server group ids (empty: every group of the
    product; NLB then asks across groups in one paged call)."""

    product: ClassVar[Product]
    #: operation -> the RAM actions it calls (tools/ram_policy.py composes grants from these)
    RAM_ACTIONS: ClassVar[Mapping[str, tuple[str, ...]]]

    def find(self, server_ids: Sequence[str], where: Sequence[str]) -> list[Membership]:
        """Every membership of these servers (instance ids, ENI ids, IPs) in ``where``."""
        ...

    def scan(self, where: Sequence[str]) -> list[Membership]:
        """Every membership of every server in ``where`` (the index's full scan)."""
        ...

    def members_of(self, group: GroupRef) -> list[Membership]:
        """All members of one pool now (verification, restore); NotFoundError if it is gone."""
        ...

    def write_weights(self, memberships: Sequence[Membership], weight: int | None = None, *,
                      token_seed: str | None = None, dry_run: bool = False) -> list[Write]:
        """Set every membership's weight (None: each one's own ``.weight``, i.e. restore)."""
        ...

    def write_remove(self, memberships: Sequence[Membership], *, token_seed: str | None = None,
                     dry_run: bool = False) -> list[Write]:
        """Deregister exactly these memberships; ``ResourceNotFound`` of one = already gone."""
        ...

    def write_add(self, memberships: Sequence[Membership], *, token_seed: str | None = None,
                  dry_run: bool = False) -> list[Write]:
        """Register these memberships with their own port, weight, type, IP and description."""
        ...

    def job_statuses(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        """Each job's status and, when failed, its error code (CLB: no jobs, empty)."""
        ...


class ServerGroupsPort(Protocol):
    """ALB/NLB only: the server groups of the product (scope, index, ownership)."""

    def list_server_groups(self, *, group_ids: Sequence[str] = (),
                           tag: tuple[str, str] | None = None) -> list[ServerGroup]: ...


@dataclass(frozen=True)
class LbScope:
    """The pools a drain may look in and touch, per product."""

    clb_ids: tuple[str, ...] = ()  # CLB load balancer ids (resolved from lb_ids / lb_tag)
    alb_group_ids: tuple[str, ...] = ()  # empty with ALB in ``products``: every group
    nlb_group_ids: tuple[str, ...] = ()
    products: frozenset[Product] = frozenset({Product.CLB})

    def where(self, product: Product) -> tuple[str, ...]:
        return {Product.CLB: self.clb_ids, Product.ALB: self.alb_group_ids,
                Product.NLB: self.nlb_group_ids}[product]

    def to_dict(self) -> dict[str, list[str]]:
        return {"clb": list(self.clb_ids), "alb": list(self.alb_group_ids),
                "nlb": list(self.nlb_group_ids), "products": sorted(p.value for p in self.products)}


class LoadBalancers:
    """The three products behind one interface; adapters built on first use.

    ``adapters`` maps each product to its adapter or to a zero-argument factory of it."""

    def __init__(self, adapters: Mapping[Product, ProductClient | Callable[[], ProductClient]],
                 *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._adapters = dict(adapters)
        self._built: dict[Product, ProductClient] = {}
        self.sleep = sleep
        self.clock = clock

    def client(self, product: Product) -> ProductClient:
        found = self._built.get(product)
        if found is None:
            made = self._adapters[product]
            found = made if isinstance(made, ProductClient) else made()
            self._built[product] = found
        return found

    # --- reads ---------------------------------------------------------------------------

    def find(self, server_ids: Sequence[str], scope: LbScope) -> list[Membership]:
        out: list[Membership] = []
        for product in (Product.CLB, Product.ALB, Product.NLB):
            where = scope.where(product)
            if product not in scope.products or (product is Product.CLB and not where):
                continue
            out.extend(self.client(product).find(server_ids, where))
        return out

    def scan(self, scope: LbScope) -> list[Membership]:
        out: list[Membership] = []
        for product in (Product.CLB, Product.ALB, Product.NLB):
            where = scope.where(product)
            if product not in scope.products or (product is Product.CLB and not where):
                continue
            out.extend(self.client(product).scan(where))
        return out

    def members_of(self, group: GroupRef) -> list[Membership]:
        return self.client(group.product).members_of(group)

    # --- writes --------------------------------------------------------------------------

    def set_weights(self, memberships: Sequence[Membership], weight: int | None = None, *,
                    token_seed: str | None = None, dry_run: bool = False) -> list[Write]:
        return self._each(memberships, lambda c, ms: c.write_weights(
            ms, weight, token_seed=token_seed, dry_run=dry_run))

    def remove(self, memberships: Sequence[Membership], *, token_seed: str | None = None,
               dry_run: bool = False) -> list[Write]:
        return self._each(memberships, lambda c, ms: c.write_remove(
            ms, token_seed=token_seed, dry_run=dry_run))

    def add(self, memberships: Sequence[Membership], *, token_seed: str | None = None,
            dry_run: bool = False) -> list[Write]:
        return self._each(memberships, lambda c, ms: c.write_add(
            ms, token_seed=token_seed, dry_run=dry_run))

    def _each(self, memberships: Sequence[Membership],
              write: Callable[[ProductClient, list[Membership]], list[Write]]) -> list[Write]:
        by_product: dict[Product, list[Membership]] = {}
        for m in memberships:
            by_product.setdefault(m.product, []).append(m)
        out: list[Write] = []
        for product, members in by_product.items():
            out.extend(write(self.client(product), members))
        return out

    # --- completion ----------------------------------------------------------------------

    def wait(self, writes: Sequence[Write], *, timeout_s: float) -> list[Write]:
        """Wait until every asynchronous write's job ended; the writes NOT succeeded (failed,
        or still processing after ``timeout_s``) are returned. One status call per product and
        round for all the jobs (the adapters page through their per-call limits)."""
        failed, unfinished = self.wait_jobs(writes, timeout_s=timeout_s)
        return failed + unfinished

    def wait_jobs(self, writes: Sequence[Write], *, timeout_s: float
                  ) -> tuple[list[Write], list[Write]]:
        """:meth:`wait`, telling the jobs that ended ``Failed`` (a retry needs a new
        ClientToken: the old one answers the failed job again) from those still running when
        ``timeout_s`` is up. Only ALB says ``Failed``: NLB's GetJobStatus documents no failed
        state, so a failed NLB job is among the unfinished ones (shared/lb/nlb.py)."""
        pending = [w for w in writes if w.asynchronous and not w.dry_run]
        failed: list[Write] = []
        start = self.clock()
        round_no = 0
        while pending:
            by_product: dict[Product, list[Write]] = {}
            for w in pending:
                by_product.setdefault(w.group.product, []).append(w)
            still: list[Write] = []
            for product, ws in by_product.items():
                statuses = self.client(product).job_statuses([w.job_id or "" for w in ws])
                for w in ws:
                    status, _code = statuses.get(w.job_id or "", (JobStatus.PROCESSING, None))
                    if status is JobStatus.FAILED:
                        failed.append(w)
                    elif status is JobStatus.PROCESSING:
                        still.append(w)
            pending = still
            if not pending:
                break
            pause = JOB_POLL_S[min(round_no, len(JOB_POLL_S) - 1)]
            if self.clock() - start + pause > timeout_s:
                return failed, pending
            self.sleep(pause)
            round_no += 1
        return failed, []


def pools(memberships: Sequence[Membership]) -> dict[GroupRef, list[Membership]]:
    """Memberships by pool (re-exported from the model for the drain's convenience)."""
    return grouped(memberships)
