"""Generate real-format ECS events for instances of your own fleet, in any trigger envelope.

    python -m tools.gen_events stopped --instance i-bp1... --db sqlite:///.data/demo.sqlite3
    python -m tools.gen_events spot --cloud http://127.0.0.1:8642 --account 1234567890123456 \\
        --envelope fc_mns_queue --out events/
    python -m tools.gen_events running --real-cloud --region cn-shanghai --account 123... --batch

The instances come from the lifecycle store (``--db``: region and account as recorded; the
store is only read, never created) or from ``DescribeInstances`` (``--cloud`` / ``--real-cloud``;
every instance of ``--region`` unless ``--instance`` names some; the account is ``--account``,
which DescribeInstances does not answer). Each event is the CloudMonitor payload the platform
sends (``ver``, ``id``, ``product``, ``resourceId``, ``level``, ``name``, ``userId``,
``eventTime``, ``regionId``, ``content``: ../shared/reference/events.md) with a fresh id and the
current time, wrapped by ``tools.envelopes`` in the envelope a trigger delivers
(``--envelope``, default ``eventbridge``). Feed the output to ``tools.invoke`` or ``tools.events``.

Output: one file per event under ``--out DIR`` (``<instance>-<event>-<envelope>.json``), or one
JSON document per line on stdout; ``--batch``: one array of every event (a batched delivery).
Exit codes: 0 written, 1 an instance is unknown or the source failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from tools.cloud_choice import CloudChoiceError, add_cloud_options, resolve_cloud
from tools.envelopes import ENVELOPES, wrap, wrap_batch

PROG = "python -m tools.gen_events"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Kind:
    """One event a user can ask for: CloudMonitor name, level and content builder."""

    name: str
    level: str
    state: str | None = None  # Instance:StateChange
    om: tuple[str, str] | None = None  # (eventType, eventStatus) of an O&M event


KINDS: Mapping[str, Kind] = {
    "pending": Kind("Instance:StateChange", "INFO", state="Pending"),
    "starting": Kind("Instance:StateChange", "INFO", state="Starting"),
    "running": Kind("Instance:StateChange", "INFO", state="Running"),
    "stopping": Kind("Instance:StateChange", "INFO", state="Stopping"),
    "stopped": Kind("Instance:StateChange", "INFO", state="Stopped"),
    "deleted": Kind("Instance:StateChange", "INFO", state="Deleted"),
    "spot": Kind("Instance:PreemptibleInstanceInterruption", "WARN"),
    "om-reboot": Kind("Instance:SystemMaintenance.Reboot:Scheduled", "CRITICAL",
                      om=("SystemMaintenance.Reboot", "Scheduled")),
    "platform-stop": Kind("Instance:SystemFailure.Stop:Executing", "CRITICAL",
                          om=("SystemFailure.Stop", "Executing")),
}


@dataclass(frozen=True)
class Target:
    instance_id: str
    region: str
    account_id: str


class GenError(Exception):
    """A failure to report (exit 1)."""


class UsageError(ValueError):
    """Bad input (exit 2)."""


def _compact(moment: datetime) -> str:
    """CloudMonitor's ``eventTime``: ``20190409T121826.922+0800`` form, in UTC."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y%m%dT%H%M%S.") + f"{utc.microsecond // 1000:03d}+0000"


def payload(kind: str, target: Target, now: datetime) -> dict[str, Any]:
    """The CloudMonitor payload of ``kind`` for ``target`` at ``now``, with a fresh id."""
    spec = KINDS[kind]
    iid = target.instance_id
    content: dict[str, Any]
    if spec.state is not None:
        content = {"resourceId": iid, "resourceType": "ALIYUN::ECS::Instance",
                   "state": spec.state}
    elif spec.om is not None:
        content = {"eventId": "e-" + uuid.uuid4().hex[:20], "eventType": spec.om[0],
                   "eventStatus": spec.om[1], "instanceId": iid,
                   "publishTime": now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "notBefore": now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    else:
        content = {"instanceId": iid, "action": "delete"}
    return {
        "ver": "1.0", "id": str(uuid.uuid4()).upper(), "product": "ECS",
        "resourceId": f"acs:ecs:{target.region}:{target.account_id}:instance/{iid}",
        "level": spec.level, "name": spec.name, "userId": target.account_id,
        "eventTime": _compact(now), "regionId": target.region, "content": content,
    }


def from_store(url: str, instance_ids: Sequence[str], account: str | None) -> list[Target]:
    """The instances as the store recorded them (never creates a store)."""
    from shared.store import Store

    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.is_file():
            raise GenError(f"no store at {path} (nothing was created): check --db")
    try:
        store = Store(url)
        version = store.schema_version()
    except Exception as error:  # any driver's failure: reported, never a traceback
        raise GenError(f"the store is unavailable: {type(error).__name__}: {error}") from None
    try:
        if version == 0:
            raise GenError("the database holds no ecs-event-ops store")
        out = []
        for iid in instance_ids:
            record = store.instance(iid)
            if record is None:
                raise GenError(f"{iid} is not in the store")
            owner = record.account_id or account
            if not record.region or not owner:
                raise GenError(f"the store knows no {'region' if not record.region else 'account'}"
                               f" of {iid}: pass --account / use --cloud")
            out.append(Target(iid, record.region, owner))
        return out
    finally:
        store.close()


def from_api(args: argparse.Namespace, environ: Mapping[str, str]) -> list[Target]:
    """The instances DescribeInstances answers in ``--region`` (all, or the ones named)."""
    from shared.clients import Clients, CloudError, credentials_from_context
    from shared.settings import Settings

    try:
        cloud = resolve_cloud(args)  # --db/--cloud/--real-cloud are exclusive in the parser
    except CloudChoiceError as error:
        raise UsageError(str(error)) from None
    creds = credentials_from_context(None, environ)
    overrides: dict[str, Any] = {"region": args.region}
    if cloud:
        overrides["cloud_url"] = cloud
    ecs = Clients.from_settings(Settings.from_env({}, **overrides), creds).ecs
    try:
        if args.instance:
            found = ecs.describe_instances(args.instance)
            missing = [i for i in args.instance if i not in found]
            if missing:
                raise GenError(f"{missing[0]} is not an instance of {args.region}")
            ids = list(args.instance)
        else:
            ids = sorted(i.instance_id for i in ecs.list_instances())
    except CloudError as error:
        raise GenError(str(error)) from None
    return [Target(i, args.region, args.account) for i in ids]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0],
                                     epilog="Exit codes: 0 written, 1 failed, 2 bad input.")
    parser.add_argument("event", choices=sorted(KINDS))
    parser.add_argument("--instance", action="append", default=[], metavar="ID",
                        help="an instance (repeatable); from the store it is required")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", metavar="URL", help="read the instances from the store")
    add_cloud_options(source, cloud_help="DescribeInstances at this base URL",
                      real_cloud_help="DescribeInstances on your account (read only)")
    parser.add_argument("--region", default=os.environ.get("ECS_EVENT_OPS_REGION", "cn-hangzhou"))
    parser.add_argument("--account", default=os.environ.get("ECS_EVENT_OPS_ACCOUNT_ID") or None,
                        help="the account id (events carry it; DescribeInstances does not)")
    parser.add_argument("--envelope", choices=ENVELOPES, default="eventbridge")
    parser.add_argument("--batch", action="store_true", help="one array of every event")
    parser.add_argument("--out", metavar="DIR", help="write files here (default: stdout)")
    return parser


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None,
         now: datetime | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    env = os.environ if environ is None else environ
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    moment = now or datetime.now(timezone.utc)
    try:
        if args.account is not None and not str(args.account).isdigit():
            raise UsageError(f"--account must be digits, not {args.account!r}")
        if args.db:
            if not args.instance:
                raise UsageError("--db needs --instance (the store is read by instance)")
            targets = from_store(args.db, args.instance, args.account)
        else:
            if args.account is None:
                raise UsageError("--account is required with --cloud/--real-cloud "
                                 "(DescribeInstances does not answer it)")
            targets = from_api(args, env)
        events = [(t, payload(args.event, t, moment)) for t in targets]
        if not events:
            raise GenError(f"no instance in {args.region}")
        if args.out:
            folder = Path(args.out)
            folder.mkdir(parents=True, exist_ok=True)
            if args.batch:
                path = folder / f"{args.event}-{args.envelope}-batch.json"
                path.write_bytes(wrap_batch([(p, args.envelope) for _, p in events]))
                print(path, file=out)
            else:
                for target, body in events:
                    path = folder / f"{target.instance_id}-{args.event}-{args.envelope}.json"
                    path.write_bytes(wrap(body, args.envelope))
                    print(path, file=out)
        elif args.batch:
            print(wrap_batch([(p, args.envelope) for _, p in events]).decode(), file=out)
        else:
            for _, body in events:
                print(wrap(body, args.envelope).decode(), file=out)
        return EXIT_OK
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=err)
        return EXIT_USAGE
    except GenError as error:
        print(f"{PROG}: {error}", file=err)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
