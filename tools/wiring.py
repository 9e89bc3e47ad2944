"""Wire CloudMonitor's ECS system events to the functions, by API, idempotently.

    python -m tools.wiring apply  --cloud http://127.0.0.1:8642 --dry-run   # what it would do
    python -m tools.wiring apply  --real-cloud                              # do it
    python -m tools.wiring show   --real-cloud --format json                # what is there
    python -m tools.wiring remove --real-cloud [--dry-run]                  # undo
    python -m tools.wiring prereqs create|remove --account 1234567890       # printed steps

One CloudMonitor system-event rule per event function (``ecs-event-ops-<function>``; CMS
2019-01-01 ``PutEventRule``), matching that function's own ``EVENT_TYPES`` (the names
CloudMonitor uses, ``Instance:StateChange`` …; ``NameList`` holds at most 20, so longer lists
become several patterns), and one target (``PutEventRuleTargets``):

* ``--target fc`` (default): the function itself, as CloudMonitor names an FC target: an FC 2.0
  service and function, i.e. the ``template.yml`` deployment (service
  ``ecs-event-ops-<function>``, function ``<function>``). A ``s.yaml`` (FC 3.0) deployment has
  no service: use its EventBridge triggers, or ``--target mns``.
* ``--target mns``: the seed's path, CloudMonitor -> MNS queue -> FC. An MNS queue hands each
  message to ONE consumer, so each function gets its own queue, ``<queue>-<function>``
  (``--queue ecs-cms-event``: ``ecs-cms-event-record-lifecycle`` …); ``deploy/s.mns.yaml``
  attaches each function to its queue.

``apply`` reads what exists (``DescribeEventRuleList``, ``DescribeEventRuleTargetList``) and
sends only what differs: a second run sends nothing. Targets of our rules that are not ours are
removed (``DeleteEventRuleTargets``). ``remove`` deletes our rules' targets, then the rules
(``DeleteEventRuleTargets``, ``DeleteEventRules``: in the SDK, absent from the api-meta
snapshot; tools/emulator/contract.py names the source). Rules of other names are never touched.

``prereqs`` prints the ``aliyun`` CLI steps for what the functions need before a deploy (the log
project and logstore, the five roles with their policies from tools/ram_policy.py, the MNS
queues of ``--target mns``) and for removing them. SLS, RAM and MNS are not in ../shared/api-meta,
so they are not emulated and this command never sends them: it prints, the operator runs.
template.yml creates the same log project, logstore and roles as one ROS stack.

Exit codes: 0 done (or nothing to do), 1 a call failed or ``check`` found a problem, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, TextIO

from tools.cloud_choice import CloudChoiceError, add_cloud_options, resolve_cloud

if TYPE_CHECKING:
    from shared.cms import CmsClient, EventRule, RuleTarget

PROG = "python -m tools.wiring"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
RULE_PREFIX = "ecs-event-ops-"
EVENT_FUNCTIONS = ("record_lifecycle", "auto_start", "drain_spot")
ALL_FUNCTIONS = (*EVENT_FUNCTIONS, "sweep", "lifecycle_api")
DEFAULT_QUEUE = "ecs-cms-event"  # the seed's queue name: the base of the per-function queues
NAMES_PER_PATTERN = 20  # PutEventRule EventPattern.N.NameList maxItems (api-meta)
TARGET_ID = "1"  # one target per rule
LOG_STORE = "functions"


class Mode(str, Enum):
    FC = "fc"
    MNS = "mns"


def dashed(function: str) -> str:
    return function.replace("_", "-")


def rule_name(function: str) -> str:
    return RULE_PREFIX + dashed(function)


def queue_name(base: str, function: str) -> str:
    return f"{base}-{dashed(function)}"


def event_names(function: str) -> tuple[str, ...]:
    """The CloudMonitor event names of a function's ``EVENT_TYPES`` (``ecs:`` stripped)."""
    from tools.package import load_practice

    return tuple(t.split(":", 1)[1] for t in load_practice(function).event_types)


@dataclass(frozen=True)
class Wiring:
    """What should exist: one rule and one target per event function."""

    mode: Mode
    region: str
    queue: str = DEFAULT_QUEUE

    def rule(self, function: str) -> EventRule:
        from shared.cms import EventPattern, EventRule

        names = event_names(function)
        patterns = tuple(EventPattern("ecs", names[i:i + NAMES_PER_PATTERN])
                         for i in range(0, len(names), NAMES_PER_PATTERN))
        return EventRule(rule_name(function), patterns,
                         description=f"ecs-event-ops: ECS events for {function}")

    def target(self, function: str) -> RuleTarget:
        from shared.cms import RuleTarget, TargetKind

        if self.mode is Mode.FC:
            return RuleTarget(TARGET_ID, TargetKind.FC, self.region,
                              service=RULE_PREFIX + dashed(function), function=function)
        return RuleTarget(TARGET_ID, TargetKind.MNS, self.region,
                          queue=queue_name(self.queue, function))


@dataclass(frozen=True)
class Step:
    action: str  # the API action
    subject: str  # the rule
    detail: str
    done: bool = False

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "rule": self.subject, "detail": self.detail,
                "status": "done" if self.done else "planned"}


def _same_rule(have: EventRule, want: EventRule) -> bool:
    # DescribeEventRuleList does not answer StatusList: names, product and state are compared.
    def key(rule: EventRule) -> tuple[Any, ...]:
        return (rule.state, rule.description,
                tuple((p.product, p.names, p.levels, p.event_types) for p in rule.patterns))

    return key(have) == key(want)


def plan_apply(cms: CmsClient, wiring: Wiring, functions: Sequence[str]) -> list[Step]:
    """The calls that make the account match ``wiring`` (none when it already does)."""
    existing = {r.name: r for r in cms.list_event_rules(RULE_PREFIX)}
    steps: list[Step] = []
    for function in functions:
        want = wiring.rule(function)
        have = existing.get(want.name)
        if have is None or not _same_rule(have, want):
            names = sum(len(p.names) for p in want.patterns)
            steps.append(Step("PutEventRule", want.name,
                              f"{'create' if have is None else 'update'}: ecs, {names} event "
                              f"names, ENABLED"))
        target = wiring.target(function)
        current = cms.list_targets(want.name) if have is not None else []
        if target not in current:
            steps.append(Step("PutEventRuleTargets", want.name, target.describe()))
        stray = [t for t in current if t != target and t.target_id != target.target_id]
        if stray:
            steps.append(Step("DeleteEventRuleTargets", want.name,
                              "not ours: " + ", ".join(t.describe() for t in stray)))
    return steps


def execute(cms: CmsClient, wiring: Wiring, steps: Sequence[Step]) -> list[Step]:
    """Send the planned calls in order; the steps marked done."""
    done: list[Step] = []
    by_rule = {rule_name(f): f for f in ALL_FUNCTIONS}
    for step in steps:
        function = by_rule[step.subject]
        if step.action == "PutEventRule":
            cms.put_event_rule(wiring.rule(function))
        elif step.action == "PutEventRuleTargets":
            cms.put_targets(step.subject, [wiring.target(function)])
        elif step.action == "DeleteEventRuleTargets":
            ours = wiring.target(function)
            ids = [t.target_id for t in cms.list_targets(step.subject)
                   if t != ours and t.target_id != ours.target_id]
            cms.delete_targets(step.subject, ids)
        elif step.action == "DeleteEventRules":
            cms.delete_rules([step.subject])
        else:  # pragma: no cover - the planners above make only these
            raise ValueError(f"unknown step {step.action}")
        done.append(Step(step.action, step.subject, step.detail, done=True))
    return done


def plan_remove(cms: CmsClient, functions: Sequence[str]) -> list[Step]:
    existing = {r.name for r in cms.list_event_rules(RULE_PREFIX)}
    steps: list[Step] = []
    for function in functions:
        name = rule_name(function)
        if name not in existing:
            continue
        targets = cms.list_targets(name)
        if targets:
            steps.append(Step("DeleteEventRuleTargets", name,
                              ", ".join(t.describe() for t in targets)))
        steps.append(Step("DeleteEventRules", name, "the rule"))
    return steps


def execute_remove(cms: CmsClient, steps: Sequence[Step]) -> list[Step]:
    done = []
    for step in steps:
        if step.action == "DeleteEventRuleTargets":
            cms.delete_targets(step.subject, [t.target_id for t in cms.list_targets(step.subject)])
        else:
            cms.delete_rules([step.subject])
        done.append(Step(step.action, step.subject, step.detail, done=True))
    return done


# --- the check (tools/doctor registers it; usable alone) -----------------------------------------


@dataclass(frozen=True)
class Verdict:
    ok: bool
    subject: str
    message: str


def check_wiring(cms: CmsClient, wiring: Wiring,
                 functions: Sequence[str] = EVENT_FUNCTIONS) -> list[Verdict]:
    """Per event function: its rule exists, is ENABLED, matches its EVENT_TYPES, and has the
    target that reaches it (and no other)."""
    existing = {r.name: r for r in cms.list_event_rules(RULE_PREFIX)}
    out: list[Verdict] = []
    for function in functions:
        want = wiring.rule(function)
        have = existing.get(want.name)
        if have is None:
            out.append(Verdict(False, function, f"no CloudMonitor rule {want.name}: run "
                               f"{PROG} apply"))
            continue
        problems = []
        if have.state != "ENABLED":
            problems.append(f"rule {want.name} is {have.state}")
        if not _same_rule(have, want):
            problems.append(f"rule {want.name} does not match {function}'s EVENT_TYPES")
        targets = cms.list_targets(want.name)
        target = wiring.target(function)
        if target not in targets:
            seen = ", ".join(t.describe() for t in targets) or "none"
            problems.append(f"no target {target.describe()} (targets: {seen})")
        if problems:
            out.append(Verdict(False, function, "; ".join(problems) + f": run {PROG} apply"))
        else:
            out.append(Verdict(True, function, f"rule {want.name} -> {target.describe()}"))
    return out


def doctor_findings(cms: CmsClient, region: str, queue: str = DEFAULT_QUEUE
                    ) -> list[tuple[str, str, str]]:
    """(status, subject, message) for tools/doctor: each event function's rule and target,
    whichever target mode the account uses; no rule at all is a warning (the events may come
    through s.yaml's EventBridge triggers, which the API metadata here cannot read)."""
    by_mode = {mode: check_wiring(cms, Wiring(mode, region, queue)) for mode in Mode}
    rows = []
    missing = 0
    for n, function in enumerate(EVENT_FUNCTIONS):
        verdicts = [by_mode[mode][n] for mode in Mode]
        good = next((v for v in verdicts if v.ok), None)
        if good is not None:
            rows.append(("ok", function, good.message))
            continue
        first = verdicts[0]
        missing += first.message.startswith("no CloudMonitor rule")
        rows.append(("fail", function, first.message))
    if missing == len(EVENT_FUNCTIONS):
        return [("warn", f, "no CloudMonitor rule: fine if s.yaml's EventBridge triggers deliver "
                 f"the events (not checked here); else run {PROG} apply") for f in EVENT_FUNCTIONS]
    return rows


# --- prerequisites: printed, never sent ---------------------------------------------------------


def _assume_policy() -> str:
    return json.dumps({"Version": "1", "Statement": [{
        "Action": "sts:AssumeRole", "Effect": "Allow",
        "Principal": {"Service": ["fc.aliyuncs.com"]}}]}, separators=(",", ":"))


def prereq_commands(action: str, *, account: str, region: str, log_project: str,
                    mode: Mode | None, queue: str, regions: Sequence[str] = (),
                    lb_ids: Sequence[str] = (), auto_start_tag: str = "auto-start"
                    ) -> list[str]:
    """The ``aliyun`` CLI commands creating (or removing) the log project and logstore, each
    function's role and policy (tools/ram_policy.py), and the MNS queues of ``mode`` mns."""
    from tools.ram_policy import Scope, declared_actions, policy_document

    q = shlex.quote
    scope = Scope(account, tuple(regions), tuple(lb_ids), auto_start_tag)
    lines: list[str] = []
    roles = sorted(declared_actions().items())
    if action == "create":
        lines.append(f"aliyun sls CreateProject --region {q(region)} --body "
                     + q(json.dumps({"projectName": log_project,
                                     "description": "ecs-event-ops function logs"})))
        lines.append(f"aliyun sls CreateLogStore --region {q(region)} --project {q(log_project)} "
                     "--body " + q(json.dumps({"logstoreName": LOG_STORE, "ttl": 30,
                                               "shardCount": 2})))
        for function, actions in roles:
            role = f"ecs-event-ops-{dashed(function)}"
            policy = policy_document(actions, scope, log_project=log_project, log_store=LOG_STORE)
            lines.append(f"aliyun ram CreateRole --RoleName {q(role)} --AssumeRolePolicyDocument "
                         + q(_assume_policy()))
            lines.append(f"aliyun ram CreatePolicy --PolicyName {q(role)} --PolicyDocument "
                         + q(json.dumps(policy, separators=(",", ":"))))
            lines.append(f"aliyun ram AttachPolicyToRole --PolicyType Custom --PolicyName "
                         f"{q(role)} --RoleName {q(role)}")
        if mode is Mode.MNS:
            lines += [f"aliyun mns-open CreateQueue --region {q(region)} --QueueName "
                      f"{q(queue_name(queue, f))}" for f in EVENT_FUNCTIONS]
        return lines
    if mode is Mode.MNS:
        lines += [f"aliyun mns-open DeleteQueue --region {q(region)} --QueueName "
                  f"{q(queue_name(queue, f))}" for f in EVENT_FUNCTIONS]
    for function, _ in roles:
        role = f"ecs-event-ops-{dashed(function)}"
        lines.append(f"aliyun ram DetachPolicyFromRole --PolicyType Custom --PolicyName "
                     f"{q(role)} --RoleName {q(role)}")
        lines.append(f"aliyun ram DeletePolicy --PolicyName {q(role)}")
        lines.append(f"aliyun ram DeleteRole --RoleName {q(role)}")
    lines.append(f"aliyun sls DeleteLogStore --region {q(region)} --project {q(log_project)} "
                 f"--logstore {q(LOG_STORE)}")
    lines.append(f"aliyun sls DeleteProject --region {q(region)} --project {q(log_project)}")
    return lines


# --- CLI ----------------------------------------------------------------------------------------


class UsageError(ValueError):
    """Bad input: exit 2."""


def _cms(args: argparse.Namespace, environ: Mapping[str, str]) -> CmsClient:
    from shared.clients import Clients, credentials_from_context
    from shared.settings import Settings

    try:
        cloud = resolve_cloud(args, environ)
    except CloudChoiceError as error:
        raise UsageError(str(error)) from None
    creds = credentials_from_context(None, environ)
    overrides: dict[str, Any] = {"region": args.region}
    if cloud:
        overrides["cloud_url"] = cloud
    settings = Settings.from_env({}, **overrides)
    return Clients.from_settings(settings, creds).cms


def _functions(text: str | None) -> tuple[str, ...]:
    if not text:
        return EVENT_FUNCTIONS
    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    bad = [f for f in chosen if f not in EVENT_FUNCTIONS]
    if bad:
        raise UsageError(f"--functions: {bad[0]!r} receives no events; choose among "
                         + ", ".join(EVENT_FUNCTIONS))
    return chosen


def _print_steps(steps: Sequence[Step], fmt: str, out: TextIO, *, dry_run: bool) -> None:
    rows = [s.to_dict() for s in steps]
    if fmt == "json":
        print(json.dumps({"dry_run": dry_run, "steps": rows}, indent=2), file=out)
        return
    from shared.queries import render_table

    if not rows:
        print("nothing to do: the rules and targets already match", file=out)
        return
    print(render_table(rows, ("status", "action", "rule", "detail")), file=out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0],
                                     epilog="Exit codes: 0 ok, 1 a call failed or the check "
                                     "found a problem, 2 bad input.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("apply", "create or update the rules and targets"),
                       ("show", "check that the rules and targets exist and reach the functions"),
                       ("remove", "delete the rules' targets, then the rules")):
        cmd = sub.add_parser(name, help=text)
        add_cloud_options(cmd, real_cloud_help="call the real CloudMonitor endpoint with your keys")
        cmd.add_argument("--region", default=os.environ.get("ECS_EVENT_OPS_REGION", "cn-hangzhou"),
                         help="region of the functions (or queues) targeted; CloudMonitor "
                         "rules are account-wide")
        cmd.add_argument("--target", choices=[m.value for m in Mode], default=Mode.FC.value)
        cmd.add_argument("--queue", default=DEFAULT_QUEUE,
                         help="base name of the per-function MNS queues (--target mns)")
        cmd.add_argument("--functions", help="comma-separated subset of "
                         + ", ".join(EVENT_FUNCTIONS))
        cmd.add_argument("--format", choices=("table", "json"), default="table")
        if name != "show":
            cmd.add_argument("--dry-run", action="store_true",
                             help="read what exists and print the calls, send none")
    pre = sub.add_parser("prereqs", help="print the aliyun CLI steps for the prerequisites")
    pre.add_argument("action", choices=("create", "remove"))
    pre.add_argument("--account", required=True, help="the account id (digits)")
    pre.add_argument("--region", default=os.environ.get("ECS_EVENT_OPS_REGION", "cn-hangzhou"))
    pre.add_argument("--log-project", help="default ecs-event-ops-<account>")
    pre.add_argument("--target", choices=[m.value for m in Mode], default=Mode.FC.value)
    pre.add_argument("--queue", default=DEFAULT_QUEUE)
    return parser


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    from shared.clients import CloudError

    out, err = stdout or sys.stdout, stderr or sys.stderr
    env = os.environ if environ is None else environ
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        if args.command == "prereqs":
            if not str(args.account).isdigit():
                raise UsageError(f"--account must be digits, not {args.account!r}")
            lines = prereq_commands(
                args.action, account=args.account, region=args.region,
                log_project=args.log_project or f"ecs-event-ops-{args.account}",
                mode=Mode(args.target), queue=args.queue,
                regions=tuple(r for r in env.get("ECS_EVENT_OPS_REGIONS", "").split(",") if r),
                lb_ids=tuple(i for i in env.get("ECS_EVENT_OPS_LB_IDS", "").split(",") if i),
                auto_start_tag=env.get("ECS_EVENT_OPS_AUTO_START_TAG") or "auto-start")
            print(f"# {args.action} the prerequisites (printed, not run: SLS, RAM and MNS are "
                  "not emulated; review, then run)", file=out)
            print("\n".join(lines), file=out)
            return EXIT_OK
        functions = _functions(args.functions)
        wiring = Wiring(Mode(args.target), args.region, args.queue)
        cms = _cms(args, env)
        if args.command == "show":
            verdicts = check_wiring(cms, wiring, functions)
            rows = [{"status": "ok" if v.ok else "fail", "function": v.subject,
                     "message": v.message} for v in verdicts]
            if args.format == "json":
                print(json.dumps({"ok": all(v.ok for v in verdicts), "checks": rows}, indent=2),
                      file=out)
            else:
                from shared.queries import render_table

                print(render_table(rows, ("status", "function", "message")), file=out)
            return EXIT_OK if all(v.ok for v in verdicts) else EXIT_FAILED
        if args.command == "apply":
            steps = plan_apply(cms, wiring, functions)
            if not args.dry_run:
                steps = execute(cms, wiring, steps)
        else:
            steps = plan_remove(cms, functions)
            if not args.dry_run:
                steps = execute_remove(cms, steps)
        _print_steps(steps, args.format, out, dry_run=args.dry_run)
        return EXIT_OK
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=err)
        return EXIT_USAGE
    except CloudError as error:
        print(f"{PROG}: {error}", file=err)
        return EXIT_FAILED


def _register_doctor_check() -> None:
    """``wiring`` in tools/doctor's registry (tools.doctor lists this module in
    EXTRA_CHECK_MODULES, so the doctor CLI imports it)."""
    from tools import doctor

    @doctor.check("wiring", "the CloudMonitor rules exist and point at the functions", cloud=True)
    def check(ctx: doctor.Context) -> list[doctor.Finding]:
        if ctx.settings is None:
            return [doctor.Finding("wiring", doctor.Status.SKIP, "-",
                                   "settings are broken (see settings)")]
        rows = doctor_findings(doctor.clients_for(ctx).cms, ctx.settings.region)
        return [doctor.Finding("wiring", doctor.Status(status), subject, message)
                for status, subject, message in rows]


_register_doctor_check()


if __name__ == "__main__":
    raise SystemExit(main())
