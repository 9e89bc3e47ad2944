"""Alibaba's documented contract (``../shared/api-meta``) as a checker for the emulator.

``api-meta`` holds, per action, the request parameters, the schema of the 200 body and the
documented error codes per HTTP status. :class:`Contract` checks three things against it:

- a 200 body: no field at any path the schema does not document, JSON types as documented
  (``"type": "integer"`` is an int, a ``"string"`` stays a string: CLB ``Weight`` is a string in
  ``AddBackendServers`` and an int in ``AddVServerGroupBackendServers``), and at the paths of
  :data:`DOCUMENTED_VALUES` only the values Alibaba lists there (api-meta carries no enum in
  any response schema);
- an error answer: its code is documented for the action with that HTTP status, or it is in
  :data:`PLATFORM_CODES`, the one table of codes every action (or a named set of actions) can
  answer, each entry naming its source;
- a request: every parameter is documented for the action (after the signing/protocol ones),
  and the required ones are present.

The emulator checks every answer and request in ``Emulator._api`` and keeps the violations
(``Emulator.contract_violations()``); ``tests/conformance_plugin.py`` fails the test session on
any. Faults look the HTTP status of a code up here (:meth:`Contract.status_of`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "API_META_ENV",
    "BUSY_CODES",
    "DOCUMENTED_VALUES",
    "IGNORED_REQUEST_PARAMS",
    "PLATFORM_CODES",
    "SUPPLEMENTARY_APIS",
    "Contract",
    "ContractError",
    "PlatformCode",
    "Violation",
    "ViolationKind",
    "load_contract",
]

API_META_ENV = "ECS_EVENT_OPS_API_META"
_REPO_ROOT = Path(__file__).resolve().parents[2]
# Product name (as the emulator's Call.product) -> file of api-meta.
PRODUCT_FILES = {
    "ecs": "ecs-2014-05-26.json",
    "slb": "slb-2014-05-15.json",
    "actiontrail": "actiontrail-2020-07-06.json",
    "cms": "cms-2019-01-01.json",
    "alb": "alb-2020-06-16.json",
    "nlb": "nlb-2022-04-30.json",
}
_CMS_SDK = ("the official SDK alibabacloud_cms20190101 4.0.10, generated from Alibaba's newer "
            "metadata: models/_%s_request.py and _%s_response_body.py")
# Actions the api-meta snapshot leaves out although Alibaba documents them, each with its source:
# merged into the product's contract, so the emulator's answers and the product's requests are
# checked against them like any other action. No errorCodes: only platform-wide codes apply.
SUPPLEMENTARY_APIS: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    "cms": {
        "DeleteEventRuleTargets": {
            "source": _CMS_SDK % ("delete_event_rule_targets", "delete_event_rule_targets"),
            "parameters": [
                {"name": "RuleName", "in": "query", "schema": {"type": "string", "required": True}},
                {"name": "Ids", "in": "query", "style": "repeatList",
                 "schema": {"type": "array", "required": True, "items": {"type": "string"}}},
            ],
            "response": {"type": "object", "properties": {
                "Code": {"type": "string"}, "Message": {"type": "string"},
                "RequestId": {"type": "string"}, "Success": {"type": "boolean"}}},
            "errorCodes": {},
        },
        "DeleteEventRules": {
            "source": _CMS_SDK % ("delete_event_rules", "delete_event_rules"),
            "parameters": [
                {"name": "RuleNames", "in": "query", "style": "repeatList",
                 "schema": {"type": "array", "required": True, "items": {"type": "string"}}},
            ],
            "response": {"type": "object", "properties": {
                "Code": {"type": "string"}, "Message": {"type": "string"},
                "RequestId": {"type": "string"}, "Success": {"type": "boolean"}}},
            "errorCodes": {},
        },
    },
    "nlb": {
        # Not in the 2024-07-30 snapshot (api-meta README "known gaps"); the reference
        # (load-balancers-and-replacement.md §2.6, §2.10) reads it in the SDK and in the RAM
        # page of nlb:ListAsynJobs.
        "ListAsynJobs": {
            "source": "the official SDK alibabacloud_nlb20220430 4.1.3: client.py "
                      "list_asyn_jobs_with_options (POST, RPC, JobIds in the query), "
                      "models/_list_asyn_jobs_request.py and _list_asyn_jobs_response_body.py "
                      "(Jobs[].Status Succeeded | Failed | Processing); RAM action "
                      "nlb:ListAsynJobs: alibabacloud.com/help/ja/slb/network-load-balancer/"
                      "developer-reference/api-nlb-2022-04-30-listasynjobs",
            "methods": ["post"], "operationType": "read",
            "parameters": [
                {"name": "JobIds", "in": "query", "style": "repeatList",
                 "schema": {"type": "array", "required": False, "items": {"type": "string"}}},
            ],
            "response": {"type": "object", "properties": {
                "RequestId": {"type": "string"},
                "TotalCount": {"type": "integer", "format": "int64"},
                "Jobs": {"type": "array", "items": {"type": "object", "properties": {
                    "Id": {"type": "string"}, "Status": {"type": "string"}}}}}},
            "errorCodes": {},
        },
    },
}
_JOB_VALUES_SDK = "the official SDK %s: models/%s (the Status field's valid values)"
# Response fields whose values Alibaba lists although api-meta's schema gives only their type:
# (product, action) -> {path as check_response names it: (the values, their source)}. Any
# other value at that path is a violation, so the emulator cannot answer a status no page lists.
DOCUMENTED_VALUES: Mapping[tuple[str, str], Mapping[str, tuple[frozenset[str], str]]] = {
    ("nlb", "GetJobStatus"): {"Status": (
        frozenset({"Succeeded", "processing"}),
        _JOB_VALUES_SDK % ("alibabacloud_nlb20220430 4.1.3", "_get_job_status_response_body.py")
        + "; alibabacloud.com/help/en/slb/api-getjobstatus (reference "
          "load-balancers-and-replacement.md §2.6: lower-case processing, no failed state)")},
    ("nlb", "ListAsynJobs"): {"Jobs[].Status": (
        frozenset({"Succeeded", "Failed", "Processing"}),
        _JOB_VALUES_SDK % ("alibabacloud_nlb20220430 4.1.3", "_list_asyn_jobs_response_body.py"))},
    ("alb", "ListAsynJobs"): {"Jobs[].Status": (
        frozenset({"Succeeded", "Failed", "Processing"}),
        _JOB_VALUES_SDK % ("alibabacloud_alb20200616 1.3.3", "_list_asyn_jobs_response_body.py"))},
}
# Signing and protocol parameters (the OpenAPI common request parameters), plus the
# owner/resource-owner parameters every RPC SDK model carries but api-meta leaves out: none of
# them is an action's own parameter.
IGNORED_REQUEST_PARAMS = frozenset({
    "Action", "Version", "Format", "AccessKeyId", "Signature", "SignatureMethod",
    "SignatureVersion", "SignatureNonce", "SignatureType", "Timestamp", "SecurityToken",
    "BearerToken", "OwnerId", "OwnerAccount", "ResourceOwnerId", "ResourceOwnerAccount",
})


class ContractError(ValueError):
    """The contract cannot be loaded, or a code is not documented where it is asked for."""


class ViolationKind(str, Enum):
    UNDOCUMENTED_FIELD = "undocumented-field"
    UNDOCUMENTED_VALUE = "undocumented-value"
    WRONG_TYPE = "wrong-type"
    UNDOCUMENTED_ERROR = "undocumented-error"
    UNDOCUMENTED_PARAM = "undocumented-param"
    MISSING_REQUIRED = "missing-required"
    BAD_PARAM_VALUE = "bad-param-value"
    UNKNOWN_ACTION = "unknown-action"


@dataclass(frozen=True)
class Violation:
    """One departure from the documented contract."""

    product: str
    action: str
    kind: ViolationKind
    where: str  # a JSON path (``BackendServers.BackendServer[].ServerIp``), a param, a code
    detail: str

    def __str__(self) -> str:
        return f"{self.product}:{self.action} {self.kind.value} at {self.where}: {self.detail}"


@dataclass(frozen=True)
class PlatformCode:
    """An error code an action may answer although its own ``errorCodes`` do not list it.

    ``code`` ending in ``*`` is a prefix. Empty ``products`` / ``actions`` mean every one.
    """

    code: str
    statuses: tuple[int, ...]
    source: str
    products: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    note: str = ""

    def matches(self, product: str, action: str, code: str) -> bool:
        if self.products and product not in self.products:
            return False
        if self.actions and action not in self.actions:
            return False
        if self.code.endswith("*"):
            return code.startswith(self.code[:-1])
        return code == self.code


_COMMON_CLIENT = ("Alibaba Cloud OpenAPI client error codes: help.aliyun.com/document_detail/51132.html "
                  "and developer.aliyun.com/ask/278265 ('管控OpenAPI的客户端公用错误码')")
_COMMON_SERVER = ("Alibaba Cloud error code tables, server errors: "
                  "help.aliyun.com/document_detail/435312.html (InternalError 500, "
                  "ServiceUnavailable 503)")
_PROJECT_REF = "shared/reference/cloud-apis.md 'Common errors'"
_THROTTLE_NOTE = ("the common-codes pages say 400, the project reference 400/403/429: all "
                  "accepted, the emulator answers 400 unless a status is asked for")
_CLB_WRITES = ("AddBackendServers", "RemoveBackendServers", "SetBackendServers",
               "AddVServerGroupBackendServers", "RemoveVServerGroupBackendServers",
               "SetVServerGroupAttribute", "ModifyVServerGroupBackendServers")
_CLB_SIBLING = ("error page of sibling action AddVServerGroupBackendServers (api-meta slb "
                "2014-05-15 errorCodes 400; api-meta README 'known gaps': "
                "RemoveVServerGroupBackendServers documents only LbStatusNotSupport)")

# The one table of codes beyond each action's own list. Where metadata and Alibaba's pages
# disagree, both are accepted and the note says so.
PLATFORM_CODES: tuple[PlatformCode, ...] = (
    PlatformCode("Throttling", (400, 403, 429), _COMMON_CLIENT + "; " + _PROJECT_REF,
                 note=_THROTTLE_NOTE),
    PlatformCode("Throttling.User", (400, 403, 429), _COMMON_CLIENT + "; " + _PROJECT_REF,
                 note=_THROTTLE_NOTE),
    PlatformCode("Throttling.Api", (400, 403, 429), _COMMON_CLIENT + "; " + _PROJECT_REF,
                 note=_THROTTLE_NOTE),
    PlatformCode("OperationConflict", (403, 409), _PROJECT_REF,
                 note="not in api-meta; the project's summary of Alibaba's common errors "
                 "lists it (403/409)"),
    PlatformCode("Throttling.Resource", (429,), "api-meta ecs 2014-05-26 RunInstances errorCodes "
                 "429", note="the only documented 429; other Throttling codes are 400"),
    PlatformCode("InternalError", (500,), _COMMON_SERVER,
                 note="api-meta ecs DescribeInstances lists it under 400 as well (accepted "
                 "there through the action's own list)"),
    PlatformCode("ServiceUnavailable", (503,), _COMMON_SERVER,
                 note="api-meta ecs lists it under 500 for some actions and alb under 400; "
                 "those are accepted through the actions' own lists"),
    PlatformCode("MissingParameter", (400,), _COMMON_CLIENT,
                 note="api-meta ecs DescribeInstanceHistoryEvents lists it under 404"),
    PlatformCode("InvalidParameter", (400,), _COMMON_CLIENT),
    PlatformCode("IncompleteSignature", (400,), _COMMON_CLIENT),
    PlatformCode("SignatureDoesNotMatch", (400, 403), _COMMON_CLIENT,
                 note="developer.aliyun.com/ask/278265 says 400, help.aliyun.com/"
                 "document_detail/30137 says 403: both accepted; the emulator answers 400"),
    PlatformCode("SignatureNonceUsed", (400,), _COMMON_CLIENT),
    PlatformCode("InvalidSignatureMethod", (400,), _COMMON_CLIENT),
    PlatformCode("InvalidTimeStamp.Expired", (400,), _COMMON_CLIENT),
    PlatformCode("InvalidAccessKeyId.NotFound", (404, 400), _COMMON_CLIENT,
                 note="document_detail/51132 says 404, document_detail/30137 says 400: both "
                 "accepted; the emulator answers 404"),
    PlatformCode("InvalidAccessKeyId.Inactive", (400,), _COMMON_CLIENT),
    PlatformCode("InvalidSecurityToken.*", (400, 403),
                 "OpenAPI signature docs for STS temporary credentials (SecurityToken: "
                 "InvalidSecurityToken.Missing / .Malformed / .Expired / "
                 ".MismatchWithAccessKey)",
                 note="no page gives one status per code; the emulator answers Missing and "
                 "Malformed 400, MismatchWithAccessKey 403"),
    PlatformCode("Forbidden.RAM", (403,), _COMMON_CLIENT),
    PlatformCode("Forbidden", (403,), _COMMON_CLIENT),
    PlatformCode("InvalidAction.NotFound", (404,),
                 "OpenAPI gateway answer for an unknown action ('Specified api is not found, "
                 "please check your url and method.'); developer.aliyun.com/ask/278265 lists "
                 "the same message as InvalidApi.NotFound 404",
                 note="both names accepted"),
    PlatformCode("InvalidApi.NotFound", (404,), "developer.aliyun.com/ask/278265"),
    PlatformCode("InvalidVersion", (400,),
                 "OpenAPI gateway answer for an unknown Version ('Specified parameter Version "
                 "is not valid.'); document_detail/435312 names it NoSuchVersion 400",
                 note="both names accepted"),
    PlatformCode("NoSuchVersion", (400,), "help.aliyun.com/document_detail/435312.html"),
    # Product-wide.
    PlatformCode("DryRunOperation", (400,),
                 "ECS API reference, DryRun parameter of StartInstance, StopInstance, "
                 "RebootInstance and DeleteInstance: 'If the request passes the dry run, the "
                 "DryRunOperation error code is returned'",
                 products=("ecs",),
                 actions=("StartInstance", "StopInstance", "RebootInstance", "DeleteInstance",
                          "RunInstances"),
                 note="the batch actions StartInstances/StopInstances answer DRYRUN.SUCCESS "
                 "(their own errorCodes, 400) instead; RunInstances: the SDK's DryRun "
                 "description (models/_run_instances_request.py, reference §4.2)"),
    PlatformCode("IdempotentParameterMismatch", (400,),
                 "ECS 'How to ensure idempotence' (AlibabaCloudDocs/ecs@322eaab: intl.en-US/API "
                 "Reference/Appendix/How to ensure idempotence.md; reference §4.2): a ClientToken "
                 "in use with different request parameters",
                 products=("ecs",), actions=("RunInstances",),
                 note="not in RunInstances' errorCodes of the 2024-07-30 snapshot"),
    PlatformCode("DryRunOperation", (400,),
                 "ALB 2020-06-16 and NLB 2022-04-30 SDK request models, DryRun: 'If the request "
                 "passes the dry run, the DryRunOperation error code is returned' "
                 "(alibabacloud_alb20200616 models/_add_servers_to_server_group_request.py "
                 "and siblings; reference load-balancers-and-replacement.md §1.9)",
                 products=("alb", "nlb"),
                 actions=("AddServersToServerGroup", "RemoveServersFromServerGroup",
                          "UpdateServerGroupServersAttribute", "ReplaceServersInServerGroup"),
                 note="absent from api-meta's errorCodes; the status is not stated, 400 as "
                 "ECS's DryRunOperation"),
    PlatformCode("InvalidLoadBalancerId.NotFound", (404, 400),
                 "CLB's answer for an unknown LoadBalancerId as handled by "
                 "terraform-provider-alicloud (LoadBalancerNotFound) and "
                 "cloud-provider-alibaba-cloud; Auto Scaling's error pages list it 404, EIP's "
                 "400",
                 products=("slb",),
                 note="absent from the slb metadata; both statuses accepted, the emulator "
                 "answers 404"),
    PlatformCode("SystemBusy", (400,), _CLB_SIBLING, products=("slb",), actions=_CLB_WRITES),
    PlatformCode("OperationBusy", (400,), _CLB_SIBLING, products=("slb",), actions=_CLB_WRITES),
    PlatformCode("OperationFailed.ServiceGroupProcessing", (400,), _CLB_SIBLING,
                 products=("slb",), actions=_CLB_WRITES),
    PlatformCode("BackendServerProcessing", (400,), _CLB_SIBLING, products=("slb",),
                 actions=_CLB_WRITES, note="also in AddBackendServers' own list"),
    PlatformCode("VpcSystemBusy", (400,), _CLB_SIBLING, products=("slb",), actions=_CLB_WRITES),
)


# The codes Alibaba documents as "the service is busy, try again later": what a random fault
# (``fault_rate``) may answer besides a 5xx, wherever the action documents one of them.
BUSY_CODES: tuple[str, ...] = (
    "SystemBusy", "OperationBusy", "OperationFailed.ServiceGroupProcessing",
    "BackendServerProcessing", "VpcSystemBusy",
)


def api_meta_dir() -> Path:
    """``$ECS_EVENT_OPS_API_META``, else ``<repo>/../shared/api-meta`` (where the issue puts it)."""
    configured = os.environ.get(API_META_ENV)
    return Path(configured) if configured else _REPO_ROOT.parent / "shared" / "api-meta"


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "object": (dict,), "array": (list,),
}
# ``Name.N``, ``Name.N.Sub`` and ``Name.N.Sub.M`` (a list inside a list item: CMS
# ``EventPattern.1.NameList.2``).
_INDEX = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9]*)\.(?P<n>\d+)(?:\.(?P<sub>[A-Za-z0-9]+)"
                    r"(?:\.(?P<m>\d+))?)?$")
_TEMPLATE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)*\.%s$")
_FLAT = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9]*)\.(?P<sub>[A-Za-z0-9]+)$")


class Contract:
    """The parsed api-meta of the products the emulator serves."""

    def __init__(self, directory: Path | None = None,
                 files: Mapping[str, str] | None = None) -> None:
        self.directory = directory or api_meta_dir()
        self._apis: dict[str, dict[str, Any]] = {}
        self._components: dict[str, dict[str, Any]] = {}
        for product, name in (files or PRODUCT_FILES).items():
            path = self.directory / name
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ContractError(f"cannot read the contract {path}: {exc} (set "
                                    f"{API_META_ENV} to the api-meta directory)") from exc
            self._apis[product] = {**SUPPLEMENTARY_APIS.get(product, {}), **data["apis"]}
            self._components[product] = (data.get("components") or {}).get("schemas") or {}

    # --- lookups -------------------------------------------------------------------------

    def api(self, product: str, action: str) -> dict[str, Any] | None:
        """The action's contract; ``action`` may be the fault key ``product:Action`` (ALB and
        NLB share action names, so faults and the client's tables qualify them)."""
        found = self._apis.get(product, {}).get(action.rpartition(":")[2])
        return found if isinstance(found, dict) else None

    def actions(self, product: str) -> list[str]:
        return sorted(self._apis.get(product, {}))

    def documented_codes(self, product: str, action: str) -> dict[str, set[int]]:
        """``{code: {statuses}}`` from the action's own ``errorCodes``."""
        out: dict[str, set[int]] = {}
        api = self.api(product, action) or {}
        for status, codes in (api.get("errorCodes") or {}).items():
            for code in codes:
                out.setdefault(code, set()).add(int(status))
        return out

    def _own_statuses(self, product: str, action: str, code: str) -> set[int]:
        """The statuses of ``code`` in the action's own list; a documented template
        ``<Prefix>.%s`` such as NLB's ``IllegalParam.%s`` stands for any name in place of
        ``%s`` (a bare ``%s``, as CMS lists, stands for nothing)."""
        found: set[int] = set()
        for documented, statuses in self.documented_codes(product, action).items():
            if documented == code or (_TEMPLATE.fullmatch(documented) and re.fullmatch(
                    re.escape(documented[:-2]) + r"[A-Za-z0-9_]+", code)):
                found |= statuses
        return found

    def platform_entry(self, product: str, action: str, code: str) -> PlatformCode | None:
        action = action.rpartition(":")[2]
        for entry in PLATFORM_CODES:
            if entry.matches(product, action, code):
                return entry
        return None

    def statuses_of(self, product: str, action: str, code: str) -> list[int]:
        """Every HTTP status the contract allows for ``code`` on this action (documented first)."""
        own = sorted(self._own_statuses(product, action, code))
        entry = self.platform_entry(product, action, code)
        extra = [s for s in (entry.statuses if entry else ()) if s not in own]
        return own + extra

    def busy_codes(self, product: str, action: str) -> list[tuple[str, int]]:
        """The :data:`BUSY_CODES` this action may answer, each with its documented status."""
        found = []
        for code in BUSY_CODES:
            statuses = self.statuses_of(product, action, code)
            if statuses:
                found.append((code, statuses[0]))
        return found

    def status_of(self, product: str, action: str, code: str) -> int:
        """The HTTP status to answer ``code`` with; ContractError when it is not documented."""
        statuses = self.statuses_of(product, action, code)
        if not statuses:
            raise ContractError(f"{code} is neither documented for {product}:{action} nor a "
                                "platform-wide code (tools/emulator/contract.py PLATFORM_CODES)")
        return statuses[0]

    # --- checks --------------------------------------------------------------------------

    def check_error(self, product: str, action: str, status: int, code: str) -> list[Violation]:
        if status in self.statuses_of(product, action, code):
            return []
        allowed = self.statuses_of(product, action, code)
        detail = (f"HTTP {status} {code}: documented with {allowed}" if allowed else
                  f"HTTP {status} {code} is neither documented for the action nor platform-wide")
        return [Violation(product, action, ViolationKind.UNDOCUMENTED_ERROR, code, detail)]

    def check_response(self, product: str, action: str, body: Any) -> list[Violation]:
        api = self.api(product, action)
        if api is None:
            return [Violation(product, action, ViolationKind.UNKNOWN_ACTION, action,
                              "the action is not in api-meta")]
        out: list[Violation] = []
        self._walk(product, action, api.get("response") or {}, body, path="", out=out)
        return out

    @staticmethod
    def _value_problem(product: str, action: str, path: str, value: Any) -> Violation | None:
        listed = DOCUMENTED_VALUES.get((product, action.rpartition(":")[2]), {}).get(path)
        if listed is None or value in listed[0]:
            return None
        return Violation(product, action, ViolationKind.UNDOCUMENTED_VALUE, path,
                         f"{value!r:.60} is not one of {sorted(listed[0])} ({listed[1]})")

    def _resolve(self, product: str, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found: Mapping[str, Any] = self._components[product].get(ref.rsplit("/", 1)[1], {})
            return found
        return schema

    def _walk(self, product: str, action: str, schema: Mapping[str, Any], value: Any, *,
              path: str, out: list[Violation]) -> None:
        schema = self._resolve(product, schema)
        kind = schema.get("type")
        where = path or "(body)"
        if kind in _TYPES:
            ok = isinstance(value, _TYPES[kind]) and not (
                kind in ("integer", "number") and isinstance(value, bool))
            if not ok:
                out.append(Violation(product, action, ViolationKind.WRONG_TYPE, where,
                                     f"{type(value).__name__} {value!r:.60}, documented "
                                     f"{kind}{'/' + str(schema['format']) if 'format' in schema else ''}"))
                return
        unlisted = self._value_problem(product, action, path, value)
        if unlisted is not None:
            out.append(unlisted)
        if kind == "object" and isinstance(value, dict):
            props = schema.get("properties")
            # An object without documented properties is a free-form map (ActionTrail Events
            # items, CLB Labels): its keys are data, not fields.
            if not props:
                return
            for key, item in value.items():
                sub = f"{path}.{key}" if path else key
                if key not in props:
                    out.append(Violation(product, action, ViolationKind.UNDOCUMENTED_FIELD, sub,
                                         f"{key!r} is not documented here"))
                    continue
                self._walk(product, action, props[key], item, path=sub, out=out)
        elif kind == "array" and isinstance(value, list):
            items = schema.get("items") or {}
            for item in value:
                self._walk(product, action, items, item, path=f"{path}[]", out=out)

    def check_request(self, product: str, action: str, params: Mapping[str, str]
                      ) -> list[Violation]:
        """Undocumented, missing required or mistyped parameters (signing ones left out)."""
        api = self.api(product, action)
        if api is None:
            return [Violation(product, action, ViolationKind.UNKNOWN_ACTION, action,
                              "the action is not in api-meta")]
        documented = {p["name"]: p for p in api.get("parameters") or []}
        out: list[Violation] = []
        seen: dict[str, set[int]] = {}
        for key, value in params.items():
            if key in IGNORED_REQUEST_PARAMS:
                continue
            problem = self._param_problem(documented, key, value, seen)
            if problem is not None:
                kind, detail = problem
                out.append(Violation(product, action, kind, key, detail))
        for name in self.missing_required(product, action, params):
            out.append(Violation(product, action, ViolationKind.MISSING_REQUIRED, name,
                                 "required by the contract, not sent"))
        for name, indexes in seen.items():
            limit = (documented[name]["schema"] or {}).get("maxItems")
            if isinstance(limit, int) and len(indexes) > limit:
                out.append(Violation(product, action, ViolationKind.BAD_PARAM_VALUE, name,
                                     f"{len(indexes)} items, documented maxItems {limit}"))
        return out

    @staticmethod
    def _param_problem(documented: Mapping[str, Mapping[str, Any]], key: str, value: str,
                       seen: dict[str, set[int]]) -> tuple[ViolationKind, str] | None:
        spec = documented.get(key)
        if spec is not None:
            schema = spec.get("schema") or {}
            kind = schema.get("type")
            if kind == "integer" and not re.fullmatch(r"-?\d+", value):
                return ViolationKind.BAD_PARAM_VALUE, f"{value!r} is not an integer"
            if kind == "boolean" and value.lower() not in ("true", "false"):
                return ViolationKind.BAD_PARAM_VALUE, f"{value!r} is not a boolean"
            if kind in ("array", "object"):
                return ViolationKind.BAD_PARAM_VALUE, f"{kind} {key} sent unflattened"
            return None
        indexed = _INDEX.match(key)
        if indexed:
            parent = documented.get(indexed.group("name"))
            schema = (parent or {}).get("schema") or {}
            if parent is not None and schema.get("type") == "array":
                items = schema.get("items") or {}
                sub = indexed.group("sub")
                props = items.get("properties") or {}
                inner = (props.get(sub) or {}) if sub is not None else {}
                nested_ok = indexed.group("m") is None or inner.get("type") == "array"
                if (sub is None and items.get("type") != "object") or (
                        sub is not None and sub in props and nested_ok):
                    seen.setdefault(indexed.group("name"), set()).add(int(indexed.group("n")))
                    return None
        flat = _FLAT.match(key)
        if flat:
            parent = documented.get(flat.group("name"))
            schema = (parent or {}).get("schema") or {}
            if parent is not None and parent.get("style") == "flat" \
                    and flat.group("sub") in (schema.get("properties") or {}):
                return None
        return ViolationKind.UNDOCUMENTED_PARAM, "not a documented parameter of the action"

    def missing_required(self, product: str, action: str, params: Mapping[str, str]
                         ) -> list[str]:
        """Required parameters absent (or empty) from ``params``; arrays need ``Name.1``."""
        api = self.api(product, action) or {}
        missing = []
        for spec in api.get("parameters") or []:
            schema = spec.get("schema") or {}
            if not schema.get("required") or spec.get("in") not in ("query", "formData", None):
                continue
            name = spec["name"]
            if schema.get("type") == "array":
                if not any(k.startswith(name + ".") and v != "" for k, v in params.items()):
                    missing.append(name)
            elif params.get(name, "") == "":
                missing.append(name)
        return missing

    def max_items(self, product: str, action: str, name: str) -> int | None:
        api = self.api(product, action) or {}
        for spec in api.get("parameters") or []:
            if spec["name"] == name:
                limit = (spec.get("schema") or {}).get("maxItems")
                return limit if isinstance(limit, int) else None
        return None


@lru_cache(maxsize=4)
def _load(directory: str) -> Contract:
    return Contract(Path(directory))


def load_contract(directory: Path | None = None) -> Contract:
    """The contract of :func:`api_meta_dir` (parsed once per directory)."""
    return _load(str(directory or api_meta_dir()))


def platform_table(entries: Iterable[PlatformCode] = PLATFORM_CODES) -> str:
    """The table as Markdown (README and reports)."""
    lines = ["| code | HTTP | scope | source | note |", "|---|---|---|---|---|"]
    for e in entries:
        scope = ", ".join(e.products) or "all"
        if e.actions:
            scope += ": " + ", ".join(e.actions)
        lines.append(f"| `{e.code}` | {', '.join(map(str, e.statuses))} | {scope} | {e.source} "
                     f"| {e.note} |")
    return "\n".join(lines)
