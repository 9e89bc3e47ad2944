"""s.yaml and template.yml are valid, agree with each other and with the functions' declarations.

What is checked offline (docs/deploy.md, "What is validated"):

* s.yaml is rendered by the real Serverless Devs CLI (``s preview -o json --silent``; npm package
  ``@serverless-devs/s`` 3.x, installed once into ``.cache/sdevs``) and every fc3 resource's
  props are validated against the fc3 component schema, plus each trigger's ``triggerConfig``
  against its own definition (the component schema accepts any trigger config).
* template.yml's ``Aliyun::Serverless::*`` part is validated against the Funcraft schemas
  (``$id``-linked, resolved through a ``referencing`` registry) with the Runtime enum widened in
  memory to the current Python runtimes, after resolving the ROS functions the template uses
  (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If`` over ``Conditions``, ``Fn::Split``,
  ``Fn::Replace``, ``Fn::GetJsonValue``) the way ROS documents them. The native RAM policies are
  validated against Funcraft's policy-document schema widened with RAM's ``Condition``. No
  offline validator exists for the other native ``ALIYUN::*`` resources: their required
  properties are checked here by hand.
* Each function's EVENT_TYPES equals its EventBridge pattern types in both files, its SCHEDULE
  equals the timer's cron, and its role's statements equal tools/ram_policy.py's for its
  RAM_ACTIONS and the template's scope (Regions, LbIds, AutoStartTag; every shape of them):
  exact actions, ``*`` resources only for actions without resource-level authorization, starts
  only under the auto-start tag condition. s.yaml rendered with a scope and the policy printed
  from the same environment equal the stack's policies.
* Both files agree on functions, handlers, runtimes, memory, timeouts, environment, roles, logs.

Broken copies (built in tmp_path) must fail the same validators.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

# jsonschema ships no type information (types-jsonschema is not a dev requirement)
from jsonschema import Draft7Validator, ValidationError  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from shared.settings import PREFIX, Settings
from tools.package import Practice, load_practice
from tools.ram_policy import (
    AUTO_START_VALUES,
    NO_RESOURCE_LEVEL,
    RULES,
    TAG_CONDITION_KEYS,
    TAG_CONDITION_OPERATOR,
    Reach,
    Scope,
    policy_document,
)

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO.parent / "shared" / "schemas"
S_YAML = REPO / "s.yaml"
TEMPLATE = REPO / "template.yml"
SDEVS_PREFIX = REPO / ".cache" / "sdevs"
S_BIN = SDEVS_PREFIX / "node_modules" / ".bin" / "s"

FUNCTIONS = ("record_lifecycle", "auto_start", "drain_spot", "sweep", "lifecycle_api")
EVENT_FUNCTIONS = ("record_lifecycle", "auto_start", "drain_spot")
PYTHON_RUNTIMES = ("python3.9", "python3.10", "python3.12")
ACCOUNT = "<account>"
REGION = "cn-hangzhou"
LOG_ACTION = "log:PostLogStoreLogs"
TRIGGER_DEFINITIONS = {
    "mns_topic": "IMnsTriggerConfig",
    "timer": "ITimerTriggerConfig",
    "http": "IHttpTriggerConfig",
    "eventbridge": "IEventBridge",
}

Doc = dict[str, Any]


# --------------------------------------------------------------------------- loading


def practice(name: str) -> Practice:
    """A function's declarations; lifecycle_api is assumed bare until its module lands."""
    if name == "lifecycle_api" and not (REPO / "functions" / name / "index.py").is_file():
        return Practice(name, (), ())
    return load_practice(name, REPO)


@pytest.fixture(scope="module")
def practices() -> dict[str, Practice]:
    return {name: practice(name) for name in FUNCTIONS}


@pytest.fixture(scope="module")
def schemas_dir() -> Path:
    if not (SCHEMAS / "fc3.schema.json").is_file() or not (SCHEMAS / "funcraft").is_dir():
        pytest.skip(f"deploy schemas not found at {SCHEMAS} (../shared/schemas from the repo root)")
    return SCHEMAS


@pytest.fixture(scope="module")
def fc3_schema(schemas_dir: Path) -> Doc:
    schema: Doc = json.loads((schemas_dir / "fc3.schema.json").read_text(encoding="utf-8"))
    return schema


@pytest.fixture(scope="module")
def funcraft(schemas_dir: Path) -> dict[str, Doc]:
    """The Funcraft schemas by ``$id``, Runtime enum widened to today's Python runtimes."""
    by_id: dict[str, Doc] = {}
    for path in sorted((schemas_dir / "funcraft").glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        by_id[schema["$id"]] = schema
    return by_id


def widened(by_id: Mapping[str, Doc]) -> dict[str, Doc]:
    result = copy.deepcopy(dict(by_id))
    for variant in result["/Resources/Service/Function"]["properties"]["Properties"]["oneOf"]:
        enum = variant["properties"]["Runtime"]["enum"]
        if "python3" in enum:
            enum.extend(r for r in PYTHON_RUNTIMES if r not in enum)
    return result


def validator(by_id: Mapping[str, Doc], root_id: str) -> Draft7Validator:
    registry: Registry[Any] = Registry().with_resources(
        (sid, Resource.from_contents(schema, default_specification=DRAFT7))
        for sid, schema in by_id.items()
    )
    return Draft7Validator(by_id[root_id], registry=registry)


@pytest.fixture(scope="module")
def s_cli() -> Path:
    """The Serverless Devs CLI, installed once into .cache/sdevs (repo-local, git-ignored)."""
    if not S_BIN.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not available: cannot install @serverless-devs/s to render s.yaml")
        completed = subprocess.run(
            [npm, "install", "--prefix", str(SDEVS_PREFIX), "--no-audit", "--no-fund",
             "@serverless-devs/s@3"],
            capture_output=True, text=True, timeout=600, check=False,
        )
        if completed.returncode != 0 or not S_BIN.exists():
            pytest.skip(f"npm install @serverless-devs/s@3 failed: {completed.stderr[-500:]}")
    return S_BIN


def render(s_cli: Path, s_yaml: Path, **env: str) -> Doc:
    """``s preview -o json --silent`` of ``s_yaml`` with no ECS_EVENT_OPS_* from the caller."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    environ.update(env)
    completed = subprocess.run(
        [str(s_cli), "preview", "-t", s_yaml.name, "-o", "json", "--silent"],
        cwd=s_yaml.parent, env=environ, capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rendered: Doc = json.loads(completed.stdout)
    assert rendered.get("edition") == "3.0.0", "s 3.x ignores other editions silently"
    return rendered


@pytest.fixture(scope="module")
def rendered(s_cli: Path) -> Doc:
    return render(s_cli, S_YAML)


@pytest.fixture(scope="module")
def template() -> Doc:
    doc: Doc = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    return doc


def fc3_functions(rendered_doc: Doc) -> dict[str, Doc]:
    """fc3 resources' props by resource key (= function folder name)."""
    return {
        key: res["props"]
        for key, res in rendered_doc["resources"].items()
        if res.get("component") == "fc3"
    }


# --------------------------------------------------------------------------- ROS intrinsics


def resolve(template_doc: Doc, overrides: Mapping[str, str] | None = None) -> Doc:
    """The template as ROS hands it to the transform: parameters at their defaults (or
    ``overrides``), conditions evaluated, pseudo parameters, attributes of native resources and
    the functions the template uses (Fn::Sub, Fn::If, Fn::Split, Fn::Replace, Fn::GetJsonValue)
    substituted."""
    params = {k: v.get("Default", "") for k, v in template_doc.get("Parameters", {}).items()}
    unknown = set(overrides or {}) - set(params)
    assert not unknown, f"no such parameters: {sorted(unknown)}"
    params.update(overrides or {})
    resources: Doc = template_doc["Resources"]
    pseudo = {"ALIYUN::AccountId": ACCOUNT, "ALIYUN::Region": REGION}

    def ref(name: str) -> Any:
        if name in pseudo:
            return pseudo[name]
        if name in params:
            return params[name]
        if name in resources:
            return name
        raise AssertionError(f"Ref to unknown {name!r}")

    def get_att(name: str, attribute: str) -> Any:
        resource = resources.get(name)
        assert resource is not None, f"Fn::GetAtt of unknown resource {name!r}"
        props = resource.get("Properties", {})
        if resource["Type"] == "ALIYUN::RAM::Role" and attribute == "Arn":
            return f"acs:ram::{ACCOUNT}:role/{walk(props['RoleName'])}"
        if attribute in props:
            return walk(props[attribute])
        return f"<{name}.{attribute}>"

    def sub(text: str) -> str:
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(ref(m.group(1))), text)

    def condition(node: Any) -> bool:
        if isinstance(node, str):
            return condition(template_doc["Conditions"][node])
        (function, args), = node.items()
        if function == "Fn::Equals":
            left, right = (walk(a) for a in args)
            return bool(left == right)
        if function == "Fn::Not":
            return not condition(args[0] if isinstance(args, list) else args)
        raise AssertionError(f"condition function {function} is not resolved offline")

    def replace(mapping: Doc, text: str) -> str:
        for old, new in mapping.items():
            text = text.replace(old, walk(new))
        return text

    functions: dict[str, Callable[[Any], Any]] = {
        "Ref": ref,
        "Fn::GetAtt": lambda args: get_att(*args),
        "Fn::Sub": sub,
        "Fn::If": lambda args: walk(args[1] if condition(args[0]) else args[2]),
        "Fn::Split": lambda args: walk(args[1]).split(args[0]),
        "Fn::Replace": lambda args: replace(args[0], walk(args[1])),
        "Fn::GetJsonValue": lambda args: json.loads(walk(args[1]))[args[0]],
    }

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1 and next(iter(node)) in functions:
                (name, args), = node.items()
                return functions[name](args)
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    resolved: Doc = walk({k: v for k, v in template_doc.items() if k != "Conditions"})
    return resolved


def serverless_part(resolved: Doc) -> Doc:
    """Only what the Funcraft schemas describe: the Aliyun::Serverless::* resources."""
    part = dict(resolved)
    part["Resources"] = {
        k: v for k, v in resolved["Resources"].items()
        if str(v.get("Type", "")).startswith("Aliyun::Serverless::")
    }
    return part


def template_functions(resolved: Doc) -> dict[str, tuple[str, Doc]]:
    """Nested functions by name -> (service logical id, function resource)."""
    found: dict[str, tuple[str, Doc]] = {}
    for service_id, service in resolved["Resources"].items():
        if service.get("Type") != "Aliyun::Serverless::Service":
            continue
        for key, child in service.items():
            if isinstance(child, dict) and child.get("Type") == "Aliyun::Serverless::Function":
                found[key] = (service_id, child)
    return found


# --------------------------------------------------------------------------- validators
# Each returns a list of readable errors: empty means valid.


def messages(errors: Iterable[ValidationError], prefix: str = "") -> list[str]:
    """One line per error; oneOf/anyOf failures also list what each alternative said."""
    lines: list[str] = []
    for error in errors:
        lines.append(f"{prefix}{error.json_path[1:]}: {error.message[:200]}")
        lines += messages(error.context or [], prefix=prefix)
    return lines


def fc3_errors(props: Doc, schema: Doc) -> list[str]:
    """The fc3 component schema, then each trigger's config against its own definition."""
    errors = messages(Draft7Validator(schema).iter_errors(props))
    definitions = schema["definitions"]
    for index, trigger in enumerate(props.get("triggers", [])):
        kind = trigger.get("triggerType")
        name = TRIGGER_DEFINITIONS.get(kind)
        if name is None:
            errors.append(f"triggers[{index}]: no per-type check for trigger type {kind!r}")
            continue
        definition = copy.deepcopy(definitions[name])
        config = trigger.get("triggerConfig", {})
        if kind == "eventbridge" and config.get("eventSourceConfig", {}).get("eventSourceType") == "Default":
            # Alibaba's own Default-bus examples omit these; the API fills them in.
            definition["required"] = [
                r for r in definition["required"] if r not in ("eventSinkConfig", "runOptions")
            ]
            source = definition["properties"]["eventSourceConfig"]
            source["required"] = [r for r in source["required"] if r != "eventSourceParameters"]
        sub_schema = {**definition, "definitions": definitions}
        errors += messages(
            Draft7Validator(sub_schema).iter_errors(config), f"triggers[{index}].triggerConfig"
        )
    return errors


def with_conditions(by_id: Mapping[str, Doc]) -> dict[str, Doc]:
    """Funcraft's policy schema knows Effect/Action/Resource only (its Service ``Policies`` have
    no conditions); a RAM policy statement may also carry ``Condition``: operator -> {key:
    [values]} (RAM policy grammar). Widened in memory, like the Runtime enum."""
    result = copy.deepcopy(dict(by_id))
    statement = result["/Resources/Service/Role"]["properties"]["Statement"]["items"]
    statement["properties"]["Condition"] = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
    }
    return result


def funcraft_errors(template_doc: Doc, schemas: Mapping[str, Doc]) -> list[str]:
    """Funcraft schema over the resolved Serverless part, policy schema over RAM policies,
    required properties of the native resources."""
    resolved = resolve(template_doc)
    errors = messages(validator(widened(schemas), "/ROS").iter_errors(serverless_part(resolved)))
    policy_schema = validator(with_conditions(schemas), "/Resources/Service/Role")
    required = {
        "ALIYUN::RAM::Role": ("RoleName", "AssumeRolePolicyDocument"),
        "ALIYUN::EventBridge::Rule": ("EventBusName", "RuleName", "FilterPattern", "Targets"),
        "ALIYUN::SLS::Project": ("Name",),
        "ALIYUN::SLS::Logstore": ("ProjectName", "LogstoreName"),
        "ALIYUN::MNS::Topic": ("TopicName",),
    }
    for rid, resource in resolved["Resources"].items():
        rtype = str(resource.get("Type", ""))
        if rtype.startswith("Aliyun::Serverless::"):
            continue
        if rtype not in required:
            errors.append(f"{rid}: no offline check for native type {rtype!r}")
            continue
        props = resource.get("Properties", {})
        errors += [f"{rid}: missing {p}" for p in required[rtype] if p not in props]
        for policy in props.get("Policies", []):
            errors += messages(
                policy_schema.iter_errors(policy.get("PolicyDocument")),
                f"{rid}.{policy.get('PolicyName')}",
            )
        for target in props.get("Targets", []):
            errors += [f"{rid}: target missing {p}" for p in ("Id", "Type", "Endpoint") if p not in target]
    return errors


def role_of(resolved: Doc, function: str) -> Doc:
    service_id, _ = template_functions(resolved)[function]
    arn = resolved["Resources"][service_id]["Properties"]["Role"]
    for resource in resolved["Resources"].values():
        if (
            resource.get("Type") == "ALIYUN::RAM::Role"
            and f"acs:ram::{ACCOUNT}:role/{resource['Properties']['RoleName']}" == arn
        ):
            return dict(resource["Properties"])
    raise AssertionError(f"{function}: its service role {arn} is not created by the template")


def scope_of(resolved: Doc, function: str = "sweep") -> Scope:
    """The scope a function acts in, read by Settings from its environment in the template
    (comma-separated, blanks ignored): its role must reach exactly that."""
    env = template_functions(resolved)[function][1]["Properties"]["EnvironmentVariables"]
    settings = Settings.from_env({k: str(v) for k, v in env.items()})
    return Scope(ACCOUNT, settings.regions, settings.lb_ids, settings.auto_start_tag)


def normalized(statements: Iterable[Doc]) -> list[str]:
    """Statements as sorted JSON strings: action, resource and condition-value order do not
    matter to RAM, so they do not matter here either."""
    out = []
    for statement in statements:
        resource = statement["Resource"]
        condition = {op: {k: sorted(v) for k, v in keys.items()}
                     for op, keys in statement.get("Condition", {}).items()}
        out.append(json.dumps({
            "Effect": statement["Effect"], "Action": sorted(statement["Action"]),
            "Resource": sorted([resource] if isinstance(resource, str) else resource),
            "Condition": condition,
        }, sort_keys=True))
    return sorted(out)


def policy_errors(template_doc: Doc, practices: Mapping[str, Practice],
                  overrides: Mapping[str, str] | None = None) -> list[str]:
    """Every role grants exact actions, never '*'; ``Resource: "*"`` only for actions without
    resource-level authorization; starts only under the auto-start tag condition; a practice's
    role is exactly tools/ram_policy.py's policy for its RAM_ACTIONS and the template's scope
    (plus writing its own logstore)."""
    resolved = resolve(template_doc, overrides)
    scope = scope_of(resolved)
    errors: list[str] = []
    for rid, resource in resolved["Resources"].items():
        if resource.get("Type") != "ALIYUN::RAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"].get("Statement", []):
                actions = statement.get("Action")
                if not isinstance(actions, list):
                    errors.append(f"{rid}: Action must be a list, got {actions!r}")
                    continue
                errors += [f"{rid}: wildcard action {a!r}" for a in actions if "*" in a]
                resources = statement.get("Resource")
                if "*" in ([resources] if isinstance(resources, str) else resources or []):
                    errors += [f"{rid}: {a} on Resource '*' but Alibaba authorizes it per resource"
                               for a in actions if a not in NO_RESOURCE_LEVEL]
                for action in ("ecs:StartInstance", "ecs:StartInstances"):
                    if action in actions and not tag_conditioned(statement, scope.auto_start_tag):
                        errors.append(f"{rid}: {action} without the {scope.auto_start_tag} tag condition")
    functions = template_functions(resolved)
    for name, declared in practices.items():
        if name not in functions:
            errors.append(f"{name}: no function in template.yml")
            continue
        role = role_of(resolved, name)
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"] == [
            "fc.aliyuncs.com"
        ], f"{name}: role is not assumable by Function Compute"
        granted = [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
        expected = policy_document(declared.ram_actions, scope_of(resolved, name),
                                   log_project=f"ecs-event-ops-{ACCOUNT}")["Statement"]
        if normalized(granted) != normalized(expected):
            errors.append(
                f"{name}: policy grants {normalized(granted)}, tools/ram_policy.py builds "
                f"{normalized(expected)} from RAM_ACTIONS {sorted(declared.ram_actions)}"
            )
    return errors


def tag_conditioned(statement: Doc, tag: str) -> bool:
    """The statement allows only instances whose ``tag`` is one of the opt-in values."""
    keys = statement.get("Condition", {}).get(TAG_CONDITION_OPERATOR, {})
    wanted = {key.format(tag=tag) for key in TAG_CONDITION_KEYS}
    return any(k in wanted and sorted(v) == sorted(AUTO_START_VALUES) for k, v in keys.items())


def pattern_types(pattern: Any) -> list[str]:
    doc = json.loads(pattern) if isinstance(pattern, str) else pattern
    assert doc.get("source") == ["acs.ecs"], f"pattern source must be acs.ecs: {doc}"
    types: list[str] = doc.get("type", [])
    return types


def s_yaml_event_errors(rendered_doc: Doc, practices: Mapping[str, Practice]) -> list[str]:
    """EventBridge types, timer schedules and function set of s.yaml vs the declarations."""
    errors: list[str] = []
    functions = fc3_functions(rendered_doc)
    if sorted(functions) != sorted(practices):
        errors.append(f"s.yaml functions {sorted(functions)} != {sorted(practices)}")
    for name, props in functions.items():
        declared = practices.get(name)
        if declared is None:
            continue
        triggers = props.get("triggers", [])
        types = [
            t for trig in triggers if trig["triggerType"] == "eventbridge"
            for t in pattern_types(trig["triggerConfig"]["eventRuleFilterPattern"])
        ]
        if types != list(declared.event_types):
            errors.append(f"{name}: eventbridge types {types} != EVENT_TYPES {list(declared.event_types)}")
        crons = [t["triggerConfig"]["cronExpression"] for t in triggers if t["triggerType"] == "timer"]
        expected = [declared.schedule] if declared.schedule else []
        if crons != expected:
            errors.append(f"{name}: timer crons {crons} != SCHEDULE {expected}")
        if props.get("code") != f"./build/{name}":
            errors.append(f"{name}: code {props.get('code')!r} is not ./build/{name}")
    return errors


def template_event_errors(template_doc: Doc, practices: Mapping[str, Practice]) -> list[str]:
    """EventBridge rule patterns and Timer events of template.yml vs the declarations."""
    resolved = resolve(template_doc)
    functions = template_functions(resolved)
    errors: list[str] = []
    if sorted(functions) != sorted(practices):
        errors.append(f"template functions {sorted(functions)} != {sorted(practices)}")
    rule_types: dict[str, list[str]] = {}
    for rid, resource in resolved["Resources"].items():
        if resource.get("Type") != "ALIYUN::EventBridge::Rule":
            continue
        props = resource["Properties"]
        if props.get("EventBusName") != "default":
            errors.append(f"{rid}: not on the default (system) bus")
        for target in props["Targets"]:
            params = {p["ResourceKey"]: p.get("Value") for p in target.get("ParamList", [])}
            function = params.get("functionName")
            if function not in functions:
                errors.append(f"{rid}: target function {function!r} is not in the template")
                continue
            service_id, _ = functions[function]
            if params.get("serviceName") != service_id or f"services/{service_id}." not in target["Endpoint"]:
                errors.append(f"{rid}: target does not point at service {service_id}")
            rule_types.setdefault(function, []).extend(pattern_types(props["FilterPattern"]))
    for name, declared in practices.items():
        if name not in functions:
            continue
        if rule_types.get(name, []) != list(declared.event_types):
            errors.append(f"{name}: EventBridge rule types {rule_types.get(name, [])} != EVENT_TYPES")
        _, function = functions[name]
        events = function.get("Events", {})
        crons = [e["Properties"]["CronExpression"] for e in events.values() if e["Type"] == "Timer"]
        expected = [declared.schedule] if declared.schedule else []
        if crons != expected:
            errors.append(f"{name}: Timer crons {crons} != SCHEDULE {expected}")
        if function["Properties"].get("CodeUri") != f"./build/{name}":
            errors.append(f"{name}: CodeUri is not ./build/{name}")
    return errors


def agreement_errors(rendered_doc: Doc, template_doc: Doc) -> list[str]:
    """s.yaml and template.yml describe the same functions the same way."""
    resolved = resolve(template_doc)
    tfuncs = template_functions(resolved)
    errors: list[str] = []

    def norm(value: Any) -> Any:
        return json.loads(json.dumps(value).replace("${config('AccountID')}", ACCOUNT))

    for name, props in fc3_functions(rendered_doc).items():
        if name not in tfuncs:
            errors.append(f"{name}: in s.yaml, not in template.yml")
            continue
        service_id, function = tfuncs[name]
        service = resolved["Resources"][service_id]["Properties"]
        tprops = function["Properties"]
        pairs = {
            "handler": (props.get("handler"), tprops.get("Handler")),
            "runtime": (props.get("runtime"), tprops.get("Runtime")),
            "memory": (props.get("memorySize"), tprops.get("MemorySize")),
            "timeout": (props.get("timeout"), tprops.get("Timeout")),
            "concurrency": (props.get("instanceConcurrency"), tprops.get("InstanceConcurrency")),
            "environment": (norm(props.get("environmentVariables")), tprops.get("EnvironmentVariables")),
            "role": (norm(props.get("role")), service.get("Role")),
            "log": (
                norm([props["logConfig"]["project"], props["logConfig"]["logstore"]]),
                [service["LogConfig"]["Project"], service["LogConfig"]["Logstore"]],
            ),
            "schedules": (
                [t["triggerConfig"]["cronExpression"] for t in props.get("triggers", []) if t["triggerType"] == "timer"],
                [e["Properties"]["CronExpression"] for e in function.get("Events", {}).values() if e["Type"] == "Timer"],
            ),
            "async": (
                props.get("asyncInvokeConfig", {}).get("maxAsyncRetryAttempts"),
                tprops.get("AsyncConfiguration", {}).get("MaxAsyncRetryAttempts"),
            ),
        }
        for what, (left, right) in pairs.items():
            if left != right:
                errors.append(f"{name}: {what} differs: s.yaml {left!r} vs template.yml {right!r}")
    return errors


# --------------------------------------------------------------------------- the real files


def test_s_yaml_props_match_the_fc3_schema(rendered: Doc, fc3_schema: Doc) -> None:
    """GIVEN s.yaml rendered by s preview WHEN each fc3 resource is validated THEN no errors."""
    functions = fc3_functions(rendered)
    assert sorted(functions) == sorted(FUNCTIONS)
    for name, props in functions.items():
        assert fc3_errors(props, fc3_schema) == [], name


def test_s_yaml_triggers_are_the_planned_ones(rendered: Doc) -> None:
    """GIVEN s.yaml WHEN triggers are listed THEN eventbridge on the Default bus, a timer, an HTTP."""
    kinds = {name: [t["triggerType"] for t in p["triggers"]] for name, p in fc3_functions(rendered).items()}
    assert kinds == {
        "record_lifecycle": ["eventbridge"], "auto_start": ["eventbridge"],
        "drain_spot": ["eventbridge", "timer"], "sweep": ["timer"], "lifecycle_api": ["http"],
    }
    for name in EVENT_FUNCTIONS:
        config = fc3_functions(rendered)[name]["triggers"][0]["triggerConfig"]
        assert config["eventSourceConfig"] == {"eventSourceType": "Default"}
        assert config["triggerEnable"] is True
    http = fc3_functions(rendered)["lifecycle_api"]["triggers"][0]["triggerConfig"]
    assert (http["authType"], http["methods"]) == ("function", ["GET"])


def test_the_drain_finisher_period_is_its_timer_in_both_files(
    rendered: Doc, template: Doc, practices: dict[str, Practice]
) -> None:
    """GIVEN drain_spot's finisher timer (SCHEDULE, every minute) WHEN its deploy files are read
    THEN ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S is that period (the scheduling proof relies on it)."""
    assert practices["drain_spot"].schedule == "0 * * * * *"
    props = fc3_functions(rendered)["drain_spot"]
    assert props["environmentVariables"]["ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S"] == "60"
    _, function = template_functions(resolve(template))["drain_spot"]
    assert function["Properties"]["EnvironmentVariables"]["ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S"] == "60"


def test_s_yaml_matches_the_declarations(rendered: Doc, practices: dict[str, Practice]) -> None:
    """GIVEN the functions' EVENT_TYPES and SCHEDULE WHEN compared with s.yaml THEN equal."""
    assert s_yaml_event_errors(rendered, practices) == []


def test_s_yaml_prepackages_each_function(rendered: Doc) -> None:
    """GIVEN s.yaml WHEN deploying a function THEN its bundle is staged first by tools.package,
    through make (the venv's interpreter: tests/test_deploy_mns.py runs it from a bare shell)."""
    for name, resource in rendered["resources"].items():
        assert resource["actions"]["pre-deploy"] == [
            {"run": f"make package FUNCTIONS={name}", "path": "./"}
        ]


def test_s_yaml_roles_are_one_per_practice(rendered: Doc) -> None:
    """GIVEN s.yaml WHEN rendered without overrides THEN each function has its own role ARN."""
    roles = {name: p["role"] for name, p in fc3_functions(rendered).items()}
    for name, role in roles.items():
        assert role == "acs:ram::${config('AccountID')}:role/ecs-event-ops-" + name.replace("_", "-")
    assert len(set(roles.values())) == len(roles)


def test_s_yaml_environment_overrides_apply(s_cli: Path) -> None:
    """GIVEN ECS_EVENT_OPS_* variables WHEN rendering THEN they reach region, role and env."""
    doc = render(
        s_cli, S_YAML, ECS_EVENT_OPS_REGION="cn-shanghai",
        ECS_EVENT_OPS_ROLE_ARN_SWEEP="acs:ram::1:role/custom", ECS_EVENT_OPS_DB_URL="sqlite:////tmp/x",
    )
    sweep = fc3_functions(doc)["sweep"]
    assert (sweep["region"], sweep["role"]) == ("cn-shanghai", "acs:ram::1:role/custom")
    assert sweep["environmentVariables"]["ECS_EVENT_OPS_DB_URL"] == "sqlite:////tmp/x"


def test_s_yaml_environment_is_valid_settings(rendered: Doc) -> None:
    """GIVEN each function's environment WHEN read by Settings THEN every key is a known setting."""
    known = {PREFIX + f.upper() for f in Settings.__dataclass_fields__}
    for name, props in fc3_functions(rendered).items():
        env = props["environmentVariables"]
        # notification channels are read by shared.notify from ECS_EVENT_OPS_NOTIFY_*
        unknown = {k for k in env if k not in known and not k.startswith(PREFIX + "NOTIFY_")}
        assert unknown == set(), name
        Settings.from_env(env)  # defaults parse


def test_the_sweep_decides_auto_start_like_auto_start(rendered: Doc) -> None:
    """GIVEN the sweep re-checks stops with the auto-start rules WHEN deployed THEN it gets every
    auto-start and alert setting auto_start gets, with the same values (else it could start an
    instance the event path refuses)."""
    functions = fc3_functions(rendered)
    auto, sweep = functions["auto_start"]["environmentVariables"], functions["sweep"]["environmentVariables"]
    shared = {k: v for k, v in auto.items()
              if k.startswith((PREFIX + "AUTO_START", PREFIX + "ACTIONTRAIL", PREFIX + "FLAP", PREFIX + "NOTIFY"))}
    assert len(shared) >= 13
    assert {k: sweep.get(k) for k in shared} == shared


def test_commented_seed_path_trigger_is_valid(fc3_schema: Doc) -> None:
    """GIVEN the commented mns_topic block in s.yaml WHEN uncommented THEN it validates."""
    lines = S_YAML.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "#     triggers:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  #     "):
            break
        block.append(line[len("  #     "):])
    triggers = yaml.safe_load("\n".join(block))["triggers"]
    assert [t["triggerType"] for t in triggers] == ["mns_topic"]
    props = {"functionName": "f", "region": REGION, "runtime": "python3.10", "handler": "index.handler",
             "code": "./build/f", "triggers": triggers}
    assert fc3_errors(props, fc3_schema) == []


def test_template_matches_the_funcraft_schemas(template: Doc, funcraft: dict[str, Doc]) -> None:
    """GIVEN template.yml WHEN validated (Runtime enum widened) THEN no errors."""
    assert funcraft_errors(template, funcraft) == []


def test_unwidened_funcraft_schema_rejects_python310(template: Doc, funcraft: dict[str, Doc]) -> None:
    """GIVEN the Funcraft schema as shipped WHEN validating THEN python3.10 is refused (why we widen)."""
    errors = list(validator(funcraft, "/ROS").iter_errors(serverless_part(resolve(template))))
    assert errors, "the shipped schema should only know python3 and python2.7"


def test_template_matches_the_declarations(template: Doc, practices: dict[str, Practice]) -> None:
    """GIVEN EVENT_TYPES and SCHEDULE WHEN compared with template.yml THEN equal."""
    assert template_event_errors(template, practices) == []


def test_template_policies_are_least_privilege(template: Doc, practices: dict[str, Practice]) -> None:
    """GIVEN each practice's RAM_ACTIONS WHEN compared with its role's policy THEN exactly equal."""
    assert policy_errors(template, practices) == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"Regions": "cn-hangzhou, cn-shanghai"},
        {"LbIds": "lb-bp1one,lb-bp1two"},
        {"AutoStartTag": "keep-up"},
        {"Regions": "cn-beijing", "LbIds": " lb-bp1one , lb-bp1two ", "AutoStartTag": "keep-up"},
    ],
    ids=["regions", "lb-ids", "tag", "all"],
)
def test_template_policies_follow_every_parameter_shape(
    template: Doc, practices: dict[str, Practice], overrides: dict[str, str]
) -> None:
    """GIVEN Regions, LbIds or AutoStartTag set WHEN the stack resolves THEN each role equals
    tools/ram_policy.py's policy for the same scope, read as the functions read it."""
    assert policy_errors(template, practices, overrides) == []


def resolved_statements(resolved: Doc, role: str) -> list[Doc]:
    statements: list[Doc] = resolved["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    return statements


def test_template_scope_resolves_to_the_expected_arns(template: Doc) -> None:
    """GIVEN two regions, two CLB ids (with blanks) and a custom tag WHEN resolved THEN the ARNs
    and the condition are exactly these (the ROS string functions, checked without the builder)."""
    resolved = resolve(template, {"Regions": "cn-hangzhou, cn-shanghai",
                                  "LbIds": "lb-bp1one, lb-bp1two", "AutoStartTag": "keep-up"})
    instances = [f"acs:ecs:cn-hangzhou:{ACCOUNT}:instance/*", f"acs:ecs:cn-shanghai:{ACCOUNT}:instance/*"]
    sweep = resolved_statements(resolved, "SweepRole")
    starts = [s for s in sweep if "ecs:StartInstance" in s["Action"]]
    assert [(s["Resource"], s["Condition"]) for s in starts] == [
        (instances, {"StringEqualsIgnoreCase": {"ecs:tag/keep-up": ["true", "always"]}}),
        (instances, {"StringEqualsIgnoreCase": {"acs:ResourceTag/keep-up": ["true", "always"]}}),
    ]
    by_first_action = {s["Action"][0]: s["Resource"] for s in sweep}
    assert by_first_action["slb:DescribeLoadBalancers"] == [
        f"acs:slb:cn-hangzhou:{ACCOUNT}:loadbalancer/*", f"acs:slb:cn-shanghai:{ACCOUNT}:loadbalancer/*"]
    assert by_first_action["slb:DescribeLoadBalancerAttribute"] == [
        f"acs:slb:*:{ACCOUNT}:loadbalancer/lb-bp1one", f"acs:slb:*:{ACCOUNT}:loadbalancer/lb-bp1two"]
    assert by_first_action["slb:AddBackendServers"] == instances
    assert by_first_action["alb:ListServerGroups"] == [
        f"acs:alb:cn-hangzhou:{ACCOUNT}:servergroup/*", f"acs:alb:cn-shanghai:{ACCOUNT}:servergroup/*"]
    assert by_first_action["nlb:ListServerGroups"] == [
        f"acs:nlb:cn-hangzhou:{ACCOUNT}:servergroup/*", f"acs:nlb:cn-shanghai:{ACCOUNT}:servergroup/*"]
    defaults = resolved_statements(resolve(template), "DrainSpotRole")
    assert [s["Resource"] for s in defaults] == [
        "*", [f"acs:slb:*:{ACCOUNT}:loadbalancer/*"], [f"acs:slb:*:{ACCOUNT}:loadbalancer/*"],
        [f"acs:alb:*:{ACCOUNT}:servergroup/*"], [f"acs:nlb:*:{ACCOUNT}:servergroup/*"],
        [f"acs:ecs:*:{ACCOUNT}:instance/*"],
        f"acs:log:*:{ACCOUNT}:project/ecs-event-ops-{ACCOUNT}/logstore/functions"]


def test_every_declared_action_has_a_sourced_rule(practices: dict[str, Practice]) -> None:
    """GIVEN every function's RAM_ACTIONS WHEN looked up THEN each has a rule naming Alibaba's
    page; only the table's actions are granted on '*'."""
    declared = {a for p in practices.values() for a in p.ram_actions}
    assert declared - set(RULES) == set()
    assert all(r.source.startswith(("https://www.alibabacloud.com/help/",
                                    "https://help.aliyun.com/")) for r in RULES.values())
    assert sorted(NO_RESOURCE_LEVEL) == [
        "actiontrail:LookupEvents", "alb:ListAsynJobs", "cms:DescribeMetricLast",
        "ecs:DescribeInstances", "nlb:GetJobStatus"]
    assert {a for a, r in RULES.items() if r.reach is Reach.EVERYTHING} == set(NO_RESOURCE_LEVEL)


def test_s_yaml_scope_prints_the_template_policy(s_cli: Path, template: Doc,
                                                 practices: dict[str, Practice]) -> None:
    """GIVEN one exported scope WHEN s.yaml renders it and tools.ram_policy prints each policy
    from the same environment THEN every role equals the stack's with the same parameters."""
    env = {"ECS_EVENT_OPS_REGIONS": "cn-hangzhou,cn-shanghai", "ECS_EVENT_OPS_LB_IDS": "lb-bp1one",
           "ECS_EVENT_OPS_AUTO_START_TAG": "keep-up"}
    doc = render(s_cli, S_YAML, **env)
    resolved = resolve(template, {"Regions": "cn-hangzhou,cn-shanghai", "LbIds": "lb-bp1one",
                                  "AutoStartTag": "keep-up"})
    for name in practices:
        function_env = fc3_functions(doc)[name]["environmentVariables"]
        assert {k: function_env.get(k) for k in env if k in function_env} == {
            k: v for k, v in env.items() if k in function_env}, name
        completed = subprocess.run(
            [sys.executable, "-m", "tools.ram_policy", name, "--account", ACCOUNT,
             "--log-project", f"ecs-event-ops-{ACCOUNT}"],
            cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        printed = json.loads(completed.stdout)["Statement"]
        granted = [s for p in role_of(resolved, name).get("Policies", [])
                   for s in p["PolicyDocument"]["Statement"]]
        assert normalized(printed) == normalized(granted), name


def test_template_has_one_service_and_role_per_practice(template: Doc) -> None:
    """GIVEN template.yml WHEN services are listed THEN one per function, each with its own role."""
    resolved = resolve(template)
    functions = template_functions(resolved)
    services = [service for service, _ in functions.values()]
    assert len(set(services)) == len(FUNCTIONS)
    roles = {resolved["Resources"][s]["Properties"]["Role"] for s in services}
    assert len(roles) == len(FUNCTIONS)


def test_s_yaml_and_template_agree(rendered: Doc, template: Doc) -> None:
    """GIVEN both deploy files WHEN compared THEN handlers, runtimes, sizes, env and roles agree."""
    assert agreement_errors(rendered, template) == []


# --------------------------------------------------------------------------- broken copies


def broken_s_yaml(tmp_path: Path, edit: Callable[[Doc], None]) -> Path:
    doc = yaml.safe_load(S_YAML.read_text(encoding="utf-8"))
    edit(doc)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def broken_template(edit: Callable[[Doc], None]) -> Doc:
    doc: Doc = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    edit(doc)
    return doc


def test_broken_runtime_type_fails_fc3(tmp_path: Path, s_cli: Path, fc3_schema: Doc) -> None:
    """GIVEN an s.yaml copy with a numeric runtime WHEN validated THEN the fc3 schema fails it."""
    def edit(doc: Doc) -> None:
        doc["template"]["ecs_event_ops_function"]["runtime"] = 3.10

    props = fc3_functions(render(s_cli, broken_s_yaml(tmp_path, edit)))["sweep"]
    assert any("runtime" in e for e in fc3_errors(props, fc3_schema))


def test_missing_handler_fails_fc3(tmp_path: Path, s_cli: Path, fc3_schema: Doc) -> None:
    """GIVEN an s.yaml copy without handler WHEN validated THEN the fc3 schema fails it."""
    def edit(doc: Doc) -> None:
        del doc["template"]["ecs_event_ops_function"]["handler"]

    props = fc3_functions(render(s_cli, broken_s_yaml(tmp_path, edit)))["auto_start"]
    assert any("'handler' is a required property" in e for e in fc3_errors(props, fc3_schema))


def test_bad_trigger_config_fails_its_own_definition(rendered: Doc, fc3_schema: Doc) -> None:
    """GIVEN a timer without enable and an eventbridge with a string flag THEN per-trigger checks fail."""
    sweep = copy.deepcopy(fc3_functions(rendered)["sweep"])
    del sweep["triggers"][0]["triggerConfig"]["enable"]
    drain = copy.deepcopy(fc3_functions(rendered)["drain_spot"])
    drain["triggers"][0]["triggerConfig"]["asyncInvocationType"] = "no"
    assert any("'enable' is a required property" in e for e in fc3_errors(sweep, fc3_schema))
    assert any("'no' is not of type 'boolean'" in e for e in fc3_errors(drain, fc3_schema))


def test_mismatched_schedule_fails_in_s_yaml(rendered: Doc, template: Doc, practices: dict[str, Practice]) -> None:
    """GIVEN s.yaml with a cron other than SCHEDULE WHEN checked THEN both checks report it."""
    doc = copy.deepcopy(rendered)
    doc["resources"]["sweep"]["props"]["triggers"][0]["triggerConfig"]["cronExpression"] = "0 */10 * * * *"
    assert any("SCHEDULE" in e for e in s_yaml_event_errors(doc, practices))
    assert any("schedules differ" in e for e in agreement_errors(doc, template))


def test_mismatched_event_types_fail(rendered: Doc, template: Doc, practices: dict[str, Practice]) -> None:
    """GIVEN a pattern missing a declared type WHEN checked THEN both files' checks report it."""
    doc = copy.deepcopy(rendered)
    doc["resources"]["drain_spot"]["props"]["triggers"][0]["triggerConfig"]["eventRuleFilterPattern"] = (
        '{"source": ["acs.ecs"], "type": ["ecs:Instance:StateChange"]}'
    )
    assert any("drain_spot: eventbridge types" in e for e in s_yaml_event_errors(doc, practices))

    def edit(t: Doc) -> None:
        t["Resources"]["AutoStartRule"]["Properties"]["FilterPattern"]["type"].append("ecs:Disk:Stalled")

    assert any("auto_start: EventBridge rule types" in e for e in template_event_errors(broken_template(edit), practices))


@pytest.mark.parametrize(
    ("case", "edit", "expected"),
    [
        ("wrong runtime type",
         lambda t: t["Resources"]["ecs-event-ops-sweep"]["sweep"]["Properties"].update(Runtime=310),
         "310 is not of type 'string'"),
        ("missing handler",
         lambda t: t["Resources"]["ecs-event-ops-auto-start"]["auto_start"]["Properties"].pop("Handler"),
         "'Handler' is a required property"),
        ("policy Action as a string",
         lambda t: t["Resources"]["AutoStartRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
         .update(Action="ecs:StartInstance"),
         "'ecs:StartInstance' is not of type 'array'"),
        ("unknown event type",
         lambda t: t["Resources"]["ecs-event-ops-sweep"]["sweep"]["Events"]["every-5-minutes"].update(Type="EventBridge"),
         "every-5-minutes"),
    ],
)
def test_broken_template_fails_funcraft(
    funcraft: dict[str, Doc], case: str, edit: Callable[[Doc], Any], expected: str
) -> None:
    """GIVEN a broken template.yml copy WHEN validated THEN the schema check reports it."""
    errors = funcraft_errors(broken_template(edit), funcraft)
    assert any(expected in e for e in errors), (case, errors)


def test_star_action_fails_least_privilege(practices: dict[str, Practice]) -> None:
    """GIVEN a role with a '*' action WHEN checked THEN the least-privilege check reports it."""
    def edit(t: Doc) -> None:
        statement = t["Resources"]["SweepRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
        statement["Action"].append("ecs:*")

    errors = policy_errors(broken_template(edit), practices)
    assert "SweepRole: wildcard action 'ecs:*'" in errors
    assert any(e.startswith("sweep: policy grants") for e in errors)


def test_missing_action_fails_least_privilege(practices: dict[str, Practice]) -> None:
    """GIVEN a role missing a declared action WHEN checked THEN the check names the function."""
    def edit(t: Doc) -> None:
        t["Resources"]["DrainSpotRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Action"].pop()

    assert any(e.startswith("drain_spot: policy grants") for e in policy_errors(broken_template(edit), practices))


def test_start_on_every_resource_fails_least_privilege(practices: dict[str, Practice]) -> None:
    """GIVEN auto_start's starts granted on '*' without their condition WHEN checked THEN the
    resource check, the condition check and the builder comparison all report it."""
    def edit(t: Doc) -> None:
        statement = t["Resources"]["AutoStartRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][1]
        statement["Resource"] = "*"
        del statement["Condition"]

    errors = policy_errors(broken_template(edit), practices)
    assert "AutoStartRole: ecs:StartInstance on Resource '*' but Alibaba authorizes it per resource" in errors
    assert "AutoStartRole: ecs:StartInstances without the auto-start tag condition" in errors
    assert any(e.startswith("auto_start: policy grants") for e in errors)


def test_condition_on_another_tag_fails_least_privilege(practices: dict[str, Practice]) -> None:
    """GIVEN the sweep's start condition on a fixed key while AutoStartTag is another WHEN checked
    THEN reported (the role would refuse the starts the function decides)."""
    def edit(t: Doc) -> None:
        statement = t["Resources"]["SweepRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][1]
        statement["Condition"] = {"StringEqualsIgnoreCase": {"ecs:tag/auto-start": ["true", "always"]}}

    errors = policy_errors(broken_template(edit), practices, {"AutoStartTag": "keep-up"})
    assert "SweepRole: ecs:StartInstance without the keep-up tag condition" in errors


def test_load_balancers_out_of_scope_fail_least_privilege(practices: dict[str, Practice]) -> None:
    """GIVEN drain_spot's per-LB statement on the account's CLBs while LbIds names some WHEN
    checked THEN the comparison with the builder reports it."""
    def edit(t: Doc) -> None:
        statement = t["Resources"]["DrainSpotRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][2]
        statement["Resource"] = {"Fn::Sub": "acs:slb:*:${ALIYUN::AccountId}:loadbalancer/*"}

    assert policy_errors(broken_template(edit), practices) == []  # no ids: the same thing
    errors = policy_errors(broken_template(edit), practices, {"LbIds": "lb-bp1one"})
    assert [e.split(":")[0] for e in errors] == ["drain_spot"]


def test_policy_schema_accepts_conditions_only_in_ram_shape(funcraft: dict[str, Doc]) -> None:
    """GIVEN the widened policy schema WHEN a condition value is a string THEN refused."""
    schema = validator(with_conditions(funcraft), "/Resources/Service/Role")
    good: Doc = {"Version": "1", "Statement": [{"Effect": "Allow", "Action": ["ecs:StartInstance"],
             "Resource": "*", "Condition": {"StringEquals": {"ecs:tag/k": ["true"]}}}]}
    bad = copy.deepcopy(good)
    bad["Statement"][0]["Condition"] = {"StringEquals": {"ecs:tag/k": "true"}}
    assert list(schema.iter_errors(good)) == []
    assert [e.message for e in schema.iter_errors(bad)] == ["'true' is not of type 'array'"]
    unwidened = validator(funcraft, "/Resources/Service/Role")
    assert list(unwidened.iter_errors(good)), "Funcraft's own schema refuses Condition"


def test_mismatched_schedule_fails_in_template(rendered: Doc, practices: dict[str, Practice]) -> None:
    """GIVEN template.yml with a cron other than SCHEDULE WHEN checked THEN both checks report it."""
    def edit(t: Doc) -> None:
        t["Resources"]["ecs-event-ops-sweep"]["sweep"]["Events"]["every-5-minutes"]["Properties"]["CronExpression"] = "0 0 * * * *"

    broken = broken_template(edit)
    assert any("sweep: Timer crons" in e for e in template_event_errors(broken, practices))
    assert any("sweep: schedules differ" in e for e in agreement_errors(rendered, broken))


def test_agreement_catches_memory_and_env_drift(rendered: Doc) -> None:
    """GIVEN template.yml with other memory and an extra variable WHEN compared THEN reported."""
    def edit(t: Doc) -> None:
        props = t["Resources"]["ecs-event-ops-drain-spot"]["drain_spot"]["Properties"]
        props["MemorySize"] = 1024
        props["EnvironmentVariables"]["ECS_EVENT_OPS_SPOT_MARGIN_S"] = "30"

    errors = agreement_errors(rendered, broken_template(edit))
    assert any(e.startswith("drain_spot: memory differs") for e in errors)
    assert any(e.startswith("drain_spot: environment differs") for e in errors)



def test_docs_list_the_granted_actions(practices: dict[str, Practice]) -> None:
    """GIVEN docs/deploy.md's grants table WHEN compared with RAM_ACTIONS THEN the same per role."""
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    for name, declared in practices.items():
        role = name.replace("_", "-")
        row = next(line for line in text.splitlines() if line.startswith(f"| {role} |"))
        assert re.findall(r"`([a-z]+:[A-Za-z]+)`", row) == list(declared.ram_actions), name


def test_docs_table_the_actions_granted_on_every_resource() -> None:
    """GIVEN docs/deploy.md's table of '*' actions WHEN compared with NO_RESOURCE_LEVEL THEN the
    same actions, each row linking the source the rule names."""
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("Actions without resource-level authorization", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert {re.findall(r"^\| `([a-z]+:[A-Za-z]+)`", row)[0] for row in rows} == set(NO_RESOURCE_LEVEL)
    for row in rows:
        action = re.findall(r"^\| `([a-z]+:[A-Za-z]+)`", row)[0]
        assert f"({NO_RESOURCE_LEVEL[action]})" in row, action


def test_readme_states_the_worst_case_of_every_role(practices: dict[str, Practice]) -> None:
    """GIVEN README's deploy section WHEN its worst-case table is read THEN one row per function."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Deploy", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (.+) \|$", section, flags=re.MULTILINE)
    assert sorted(name for name, _ in rows) == sorted(practices)
    assert all(len(worst) > 20 for _, worst in rows)
