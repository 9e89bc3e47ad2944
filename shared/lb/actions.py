"""The RAM actions of load-balancer operations, composed from each adapter's declaration
(``RAM_ACTIONS`` on :class:`shared.lb.clb.ClbClient`, :class:`shared.lb.alb.AlbClient`,
:class:`shared.lb.nlb.NlbClient`: operation -> the actions its calls send).

A function declares the operations it performs (``LB_OPERATIONS`` in its ``index.py``); its
grants are :func:`ram_actions` of them, so the functions' RAM_ACTIONS, tools/ram_policy.py, the
deploy files and the least-privilege proof all follow the adapters. No SDK is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["OPERATIONS", "PRODUCTS", "declarations", "ram_actions", "ram_actions_attribute"]

OPERATIONS = ("list", "find", "scan", "members", "weight", "remove", "add", "wait", "health")
PRODUCTS = ("clb", "alb", "nlb")


def declarations() -> dict[str, Mapping[str, tuple[str, ...]]]:
    """``{product: {operation: actions}}`` as the adapters declare them."""
    from shared.lb.alb import AlbClient
    from shared.lb.clb import ClbClient
    from shared.lb.nlb import NlbClient

    return {"clb": ClbClient.RAM_ACTIONS, "alb": AlbClient.RAM_ACTIONS,
            "nlb": NlbClient.RAM_ACTIONS}


def ram_actions(operations: Iterable[str], products: Iterable[str] = PRODUCTS
                ) -> tuple[str, ...]:
    """The actions of ``operations`` on ``products``, product by product, in declaration
    order, each once. An unknown operation or product is a ValueError."""
    wanted = list(operations)
    unknown = sorted(set(wanted) - set(OPERATIONS))
    if unknown:
        raise ValueError(f"unknown load-balancer operations {unknown}; known: {OPERATIONS}")
    declared = declarations()
    out: dict[str, None] = {}
    for product in products:
        if product not in declared:
            raise ValueError(f"unknown load-balancer product {product!r}")
        for operation in wanted:
            out.update(dict.fromkeys(declared[product][operation]))
    return tuple(out)


def ram_actions_attribute(module: str, own: tuple[str, ...], operations: tuple[str, ...]
                          ) -> Callable[[str], Any]:
    """A module ``__getattr__`` that gives the function's ``RAM_ACTIONS`` (``own`` plus the
    actions of its load-balancer ``operations``) composed on first access: the deploy tools
    read it, a cold start never imports an adapter for it."""

    def attribute(name: str) -> Any:
        if name == "RAM_ACTIONS":
            return (*own, *ram_actions(operations))
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return attribute
