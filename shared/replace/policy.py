"""Who gets a successor: the opt-in tag, the owners that replace their own, the tags copied."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "OWNER_TAGS",
    "REPLACES_TAG",
    "Opt",
    "Verdict",
    "successor_tags",
    "template_of",
    "verdict",
]

# The successor names its predecessor (found by it before any launch: crash and retry safety).
REPLACES_TAG = "replaces"
# Tag keys RunInstances refuses (reference §4.2: keys cannot start with aliyun or acs:).
SYSTEM_TAG_PREFIXES = ("acs:", "aliyun")
MAX_TAGS = 20
# Owners that replace their own instances (reference §4.3): Auto Scaling's scaling group tag,
# ACK's cluster and node-pool tags.
OWNER_TAGS: tuple[tuple[str, str], ...] = (
    ("acs:autoscaling:scalingGroupId", "an Auto Scaling (ESS) scaling group"),
    ("ack.aliyun.com", "an ACK cluster"),
    ("ack.alibabacloud.com/nodepool-id", "an ACK node pool"),
)
# <replace_tag>-template = lt-…[:version]: the launch template (and version) the instance came
# from; DescribeInstances does not say, so the owner of the instance does.
TEMPLATE_SUFFIX = "-template"


class Opt(str, Enum):
    """The opt-in tag's values."""

    SPOT = "spot"  # a spot successor, or none
    SPOT_OR_ON_DEMAND = "spot-or-on-demand"  # on-demand once no spot offering is left

    @property
    def allows_on_demand(self) -> bool:
        return self is Opt.SPOT_OR_ON_DEMAND


@dataclass(frozen=True)
class Verdict:
    """``opt`` None: not opted in; ``reason`` set: opted in but not ours to replace."""

    opt: Opt | None
    reason: str | None = None

    @property
    def replace(self) -> bool:
        return self.opt is not None and self.reason is None


def verdict(tags: Mapping[str, str], tag_name: str) -> Verdict:
    value = tags.get(tag_name)
    if value is None:
        return Verdict(None, f"not opted in (no {tag_name} tag)")
    try:
        opt = Opt(value.strip().lower())
    except ValueError:
        return Verdict(None, f"{tag_name}={value!r} is neither {Opt.SPOT.value} nor "
                       f"{Opt.SPOT_OR_ON_DEMAND.value}")
    for key, owner in OWNER_TAGS:
        if key in tags:
            return Verdict(opt, f"owned by {owner} ({key}={tags[key]}): its owner replaces it")
    return Verdict(opt)


def template_of(tags: Mapping[str, str], tag_name: str) -> tuple[str, int | None] | None:
    """The launch template (id, version or None for its default) the tags name, if any."""
    raw = tags.get(tag_name + TEMPLATE_SUFFIX)
    if not raw:
        return None
    template, _, version = raw.strip().partition(":")
    if not template.startswith("lt-"):
        return None
    return template, int(version) if version.isdigit() else None


def successor_tags(tags: Iterable[tuple[str, str]], predecessor: str) -> tuple[tuple[str, str], ...]:
    """The predecessor's tags without the system ones (RunInstances refuses them) and without
    its own ``replaces``, plus ``replaces=<predecessor>``; at most 20 in all."""
    kept = [(k, v) for k, v in tags
            if not k.startswith(SYSTEM_TAG_PREFIXES) and k != REPLACES_TAG]
    return (*kept[:MAX_TAGS - 1], (REPLACES_TAG, predecessor))
