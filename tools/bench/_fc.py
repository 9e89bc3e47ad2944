"""One cold start the way Function Compute's python runtime makes it, timed from outside.

    python -I tools/bench/_fc.py CODE_ROOT FUNCTION EVENT_FILE

The function's folder and the code root on ``sys.path`` (a bundle's layout), ``import index``,
then ``index.handler(event, context)`` once: no tooling, so the process time compares with a
bare ``python -I -c "import json"``. The environment is the function's (``tools.bench`` builds
it with ``tools.invoke.fc_environment``); prints ``ok`` or the handler's error on stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field


@dataclass(frozen=True)
class _Credentials:
    access_key_id: str = ""
    access_key_secret: str = ""
    security_token: str = ""


@dataclass(frozen=True)
class _Function:
    name: str
    handler: str = "index.handler"
    memory: int = 512
    timeout: int = 60


@dataclass(frozen=True)
class _Service:
    name: str = "ecs-event-ops"


@dataclass(frozen=True)
class _Context:
    """python3.10's context (tools.invoke.FcContext310's fields)."""

    request_id: str
    function: _Function
    region: str
    account_id: str
    credentials: _Credentials = field(default_factory=_Credentials)
    service: _Service = field(default_factory=_Service)


def main() -> int:
    root, function, event_file = sys.argv[1:4]
    sys.path[:0] = [os.path.join(root, "functions", function), root]
    index = importlib.import_module("index")  # the cold start being measured

    with open(event_file, "rb") as handle:
        event = handle.read()
    context = _Context(
        request_id="bench-cold", function=_Function(function),
        region=os.environ.get("FC_REGION", "cn-hangzhou"),
        account_id=os.environ.get("FC_ACCOUNT_ID", "1234567890123456"),
        credentials=_Credentials(*(os.environ.get(name, "") for name in (
            "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "ALIBABA_CLOUD_SECURITY_TOKEN"))),
    )
    try:
        index.handler(event, context)
    except Exception as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print("ok", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
