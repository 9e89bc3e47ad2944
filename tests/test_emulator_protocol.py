"""The emulator's wire protocol: signatures, faults, the fleet file, control endpoints, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as Ecs
from alibabacloud_tea_openapi.exceptions import ThrottlingException
from alibabacloud_tea_openapi.models import Config
from darabonba.exceptions import UnretryableException
from Tea.exceptions import TeaException

from tools.emulator import Emulator, Fleet, FleetError, load_fleet

ROOT = Path(__file__).resolve().parent.parent
FLEETS = ROOT / "tests" / "fixtures" / "fleets"
REGION = "cn-hangzhou"
WEB1 = "i-bp1aaaaaaaaaaaaaaaa1"
WEB2 = "i-bp1aaaaaaaaaaaaaaaa2"
BATCH1 = "i-bp1aaaaaaaaaaaaaaaa3"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.01) as emulator:
        yield emulator


def client(emu: Emulator, cred: int = 0, **overrides: Any) -> Ecs:
    values: dict[str, Any] = dict(emu.credentials[cred])
    values.update(overrides)
    return Ecs(Config(endpoint=emu.endpoint, protocol="http", region_id=REGION,
                      read_timeout=5000, connect_timeout=2000, **values))


def describe(ecs: Ecs) -> Any:
    return ecs.describe_instances(ecs_models.DescribeInstancesRequest(region_id=REGION)).body


def api_error(call: Callable[[], object]) -> Any:
    with pytest.raises(TeaException) as info:
        call()
    return info.value


# --- signatures ------------------------------------------------------------------------------

def test_acs3_and_v2_signatures_are_accepted(emu: Emulator) -> None:
    """Both the default ACS3-HMAC-SHA256 and the legacy v2 HMAC-SHA1 signatures verify."""
    assert describe(client(emu)).total_count == 7
    v2 = client(emu, signature_algorithm="v2")
    assert describe(v2).total_count == 7
    v2.start_instance(ecs_models.StartInstanceRequest(instance_id=BATCH1))
    assert [(c.action, c.status, c.access_key_id) for c in emu.calls()] == [
        ("DescribeInstances", 200, "LTAIexampleKey01"),
        ("DescribeInstances", 200, "LTAIexampleKey01"),
        ("StartInstance", 200, "LTAIexampleKey01")]
    assert emu.calls()[2].params == {"InstanceId": BATCH1}


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_wrong_secret_is_signature_does_not_match(emu: Emulator, algorithm: str | None) -> None:
    """A wrong secret gets 400 SignatureDoesNotMatch and the call has no effect."""
    bad = client(emu, access_key_secret="not-the-secret", signature_algorithm=algorithm)
    err = api_error(lambda: bad.start_instance(
        ecs_models.StartInstanceRequest(instance_id=BATCH1)))
    assert (err.code, err.data["statusCode"]) == ("SignatureDoesNotMatch", 400)
    assert emu.instance(BATCH1)["status"] == "Stopped"


def test_unknown_access_key_is_not_found(emu: Emulator) -> None:
    """An access key the fleet does not list gets 404 InvalidAccessKeyId.NotFound."""
    err = api_error(lambda: describe(client(emu, access_key_id="LTAIunknownKey")))
    assert (err.code, err.data["statusCode"]) == ("InvalidAccessKeyId.NotFound", 404)


def test_sts_token_accepted_and_rejected(emu: Emulator) -> None:
    """An STS key works with its token; a wrong or missing token is refused."""
    assert describe(client(emu, cred=1)).total_count == 7
    wrong = api_error(lambda: describe(client(emu, cred=1, security_token="other-token")))
    assert (wrong.code, wrong.data["statusCode"]) == (
        "InvalidSecurityToken.MismatchWithAccessKey", 403)
    sts = emu.credentials[1]
    missing = api_error(lambda: describe(client(emu, cred=0, **{
        "access_key_id": sts["access_key_id"], "access_key_secret": sts["access_key_secret"]})))
    assert (missing.code, missing.data["statusCode"]) == ("InvalidSecurityToken.Missing", 400)
    v2 = client(emu, cred=1, signature_algorithm="v2")
    assert describe(v2).total_count == 7


def test_unsigned_and_unknown_action_requests(emu: Emulator) -> None:
    """Unsigned requests are refused; a signed call to an action not emulated is a 404."""
    request = urllib.request.Request(
        f"{emu.url}/?Action=DescribeInstances&Version=2014-05-26&RegionId={REGION}",
        method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 400
    assert json.loads(info.value.read())["Code"] == "IncompleteSignature"
    info.value.close()
    err = api_error(lambda: client(emu).describe_regions(ecs_models.DescribeRegionsRequest()))
    assert (err.code, err.data["statusCode"]) == ("InvalidAction.NotFound", 404)


# --- faults ----------------------------------------------------------------------------------

def test_fail_next_queues_exact_errors(emu: Emulator) -> None:
    """fail_next answers the queued codes in order, then the real answer."""
    emu.set_faults(fail_next={"StartInstance": ["Throttling.User", "ServiceUnavailable"]})
    ecs = client(emu)
    first = api_error(lambda: ecs.start_instance(
        ecs_models.StartInstanceRequest(instance_id=BATCH1)))
    second = api_error(lambda: ecs.start_instance(
        ecs_models.StartInstanceRequest(instance_id=BATCH1)))
    ecs.start_instance(ecs_models.StartInstanceRequest(instance_id=BATCH1))
    assert (first.code, first.data["statusCode"]) == ("Throttling.User", 400)
    assert (second.code, second.data["statusCode"]) == ("ServiceUnavailable", 503)
    assert [(c.status, c.code) for c in emu.calls()] == [
        (400, "Throttling.User"), (503, "ServiceUnavailable"), (200, None)]
    assert emu.instance(BATCH1)["status"] in ("Starting", "Running")


def test_fail_next_takes_the_documented_status_and_refuses_undocumented_codes(
        emu: Emulator) -> None:
    """A queued code gets the HTTP status api-meta documents for it on that action; a code the
    action cannot answer, or a status it is not documented with, is refused when set."""
    # WHEN queuing StartInstance's documented capacity and conflict codes
    emu.set_faults(fail_next={
        "StartInstance": ["LackResource", "QuotaExceed.ElasticQuota", "InternalError"],
        "StartInstances": ["InvalidOperation.Conflict"]})
    ecs = client(emu)
    answers = [api_error(lambda: ecs.start_instance(
        ecs_models.StartInstanceRequest(instance_id=BATCH1))) for _ in range(3)]
    batch = api_error(lambda: ecs.start_instances(ecs_models.StartInstancesRequest(
        region_id=REGION, instance_id=[BATCH1])))
    # THEN each carries its documented status (StartInstance: 400, 403, 500; 409 for the batch)
    assert [(a.code, a.data["statusCode"]) for a in answers] == [
        ("LackResource", 400), ("QuotaExceed.ElasticQuota", 403), ("InternalError", 500)]
    assert (batch.code, batch.data["statusCode"]) == ("InvalidOperation.Conflict", 409)
    # AND codes the contract does not allow there are refused with a clear error
    with pytest.raises(ValueError, match=r"StartInstance cannot answer InvalidOperation\.Conflict"):
        emu.set_faults(fail_next={"StartInstance": ["InvalidOperation.Conflict"]})
    with pytest.raises(ValueError, match=r"StartInstance answers InternalError with HTTP "
                       r"\[500\], not '503'"):
        emu.set_faults(fail_next={"StartInstance": ["InternalError:503"]})
    with pytest.raises(ValueError, match="'DescribeRegions' is not an action the emulator"):
        emu.set_faults(fail_next={"DescribeRegions": ["InternalError"]})
    with pytest.raises(ValueError, match="DescribeLoadBalancers cannot answer SystemBusy"):
        emu.set_faults(fail_next={"DescribeLoadBalancers": ["SystemBusy"]})
    with pytest.raises(ValueError, match="start_error 'SystemBusy' is documented neither"):
        emu.set_faults(start_error={BATCH1: "SystemBusy"})
    assert emu.faults.snapshot()["fail_next"] == {}


def test_lose_answer_applies_the_write_and_loses_the_answer(emu: Emulator) -> None:
    """lose_answer: the start happens, the caller sees a documented 5xx or a dropped
    connection; the calls are recorded as lost."""
    emu.set_faults(lose_answer={"StartInstance": ["InternalError"],
                                "StopInstance": ["ConnectionDropped"]})
    ecs = client(emu)
    # WHEN starting a stopped instance and stopping a running one
    err = api_error(lambda: ecs.start_instance(
        ecs_models.StartInstanceRequest(instance_id=BATCH1)))
    with pytest.raises(UnretryableException):
        ecs.stop_instance(ecs_models.StopInstanceRequest(instance_id=WEB1))
    # THEN both took effect although neither caller was told
    assert (err.code, err.data["statusCode"]) == ("InternalError", 500)
    emu.wait_for_status(BATCH1, "Running", timeout_s=2)
    emu.wait_for_status(WEB1, "Stopped", timeout_s=2)
    assert [(c.action, c.status, c.code, c.answer_lost) for c in emu.calls()] == [
        ("StartInstance", 500, "InternalError", True),
        ("StopInstance", 0, "ConnectionDropped", True)]
    assert [r["eventName"] for r in emu.trail()] == ["StartInstance", "StopInstance"]
    # AND a lost answer must be a 5xx or a dropped connection
    with pytest.raises(ValueError, match="a lost answer is a documented 5xx"):
        emu.set_faults(lose_answer={"StartInstance": ["IncorrectInstanceStatus"]})
    # AND a refused call does not consume the queue: only a success loses its answer
    emu.set_faults(lose_answer={"StartInstance": ["ServiceUnavailable"]})
    refused = api_error(lambda: ecs.start_instance(
        ecs_models.StartInstanceRequest(instance_id=WEB2)))
    assert refused.code == "IncorrectInstanceStatus"
    assert emu.faults.snapshot()["lose_answer"] == {"StartInstance": ["ServiceUnavailable"]}


def test_throttling_with_retry_after_header_raises_throttling_exception(emu: Emulator) -> None:
    """With retry_after_ms the SDK sees x-acs-retry-after and raises ThrottlingException."""
    emu.set_faults(retry_after_ms=250, fail_next={"DescribeInstances": ["Throttling:429"]})
    err = api_error(lambda: describe(client(emu)))
    assert isinstance(err, ThrottlingException)
    assert (err.code, err.retry_after, err.data["statusCode"]) == ("Throttling", 250, 429)


def test_rate_limit_per_action(emu: Emulator) -> None:
    """throttle_actions limits one action; other actions are not affected."""
    emu.set_faults(throttle_actions={"DescribeInstances": 1})
    ecs = client(emu)
    describe(ecs)
    err = api_error(lambda: describe(ecs))
    assert (err.code, err.data["statusCode"]) == ("Throttling.User", 400)
    ecs.start_instance(ecs_models.StartInstanceRequest(instance_id=BATCH1))
    emu.set_faults(throttle_actions={})
    describe(ecs)


def test_reads_and_writes_are_limited_apart_by_operation_type(emu: Emulator) -> None:
    """throttle_reads and throttle_writes limit each action by api-meta's operationType: a
    read (DescribeInstances) throttled does not hold a write (StartInstance, readAndWrite) back,
    and each action has its own bucket."""
    assert emu.faults.is_read("ecs", "DescribeInstances")
    assert not emu.faults.is_read("ecs", "StartInstance")
    assert not emu.faults.is_read("slb", "SetVServerGroupAttribute")  # no operationType: by name
    emu.set_faults(throttle_reads=1, throttle_writes=2)
    ecs = client(emu)
    describe(ecs)
    err = api_error(lambda: describe(ecs))
    assert (err.code, err.data["statusCode"]) == ("Throttling.User", 400)
    ecs.start_instance(ecs_models.StartInstanceRequest(instance_id=BATCH1))
    emu.set_faults(throttle_reads=None, throttle_writes=None)
    describe(ecs)
    assert emu.faults.snapshot()["throttle_reads"] is None


def test_dropped_connection_raises_in_sdk(emu: Emulator) -> None:
    """A dropped connection surfaces as the SDK's UnretryableException and is recorded."""
    emu.set_faults(fail_next={"DescribeInstances": ["ConnectionDropped"]})
    ecs = client(emu)
    with pytest.raises(UnretryableException):
        describe(ecs)
    assert describe(ecs).total_count == 7
    assert [(c.status, c.code) for c in emu.calls()] == [(0, "ConnectionDropped"), (200, None)]


def test_fault_rate_is_seeded_and_mixed() -> None:
    """fault_rate=1 with a seed gives a reproducible mix of 500, 503 and drops (a read
    documents no busy code)."""
    def run(seed: int) -> list[str]:
        with Emulator(load_fleet(FLEETS / "basic.yaml"), fault_rate=1.0, seed=seed) as emu:
            ecs = client(emu)
            for _ in range(30):
                with pytest.raises(TeaException):
                    describe(ecs)
            return [str(c.code) for c in emu.calls()]

    first, again = run(7), run(7)
    assert first == again
    assert set(first) == {"InternalError", "ServiceUnavailable", "ConnectionDropped"}


def test_fault_rate_answers_the_busy_codes_the_action_documents() -> None:
    """fault_rate on a CLB write also answers its documented busy codes; a read gets none."""
    from tools.emulator.contract import BUSY_CODES, load_contract
    from tools.emulator.faults import Faults

    contract = load_contract()
    faults = Faults(fault_rate=1.0, seed=11,
                    statuses=lambda a, c: contract.statuses_of("slb", a, c),
                    busy=lambda a: contract.busy_codes("slb", a))
    write = {(v.code, v.status) for v in
             (faults.decide("SetVServerGroupAttribute") for _ in range(400)) if v is not None}
    read = {(v.code, v.status) for v in
            (faults.decide("DescribeVServerGroups") for _ in range(400)) if v is not None}
    base = {("InternalError", 500), ("ServiceUnavailable", 503), ("ConnectionDropped", 0)}
    assert write == base | {(code, 400) for code in BUSY_CODES}
    assert read == base


def test_lose_rate_loses_answers_of_writes_only(emu: Emulator) -> None:
    """lose_rate=1: every successful write is applied and its answer lost; reads answer."""
    emu.set_faults(lose_rate=1.0, seed=5)
    ecs = client(emu)
    assert describe(ecs).total_count == 7
    with pytest.raises((TeaException, UnretryableException)):
        ecs.start_instance(ecs_models.StartInstanceRequest(instance_id=BATCH1))
    emu.wait_for_status(BATCH1, "Running", timeout_s=2)
    assert [(c.action, c.answer_lost) for c in emu.calls()] == [
        ("DescribeInstances", False), ("StartInstance", True)]
    with pytest.raises(ValueError, match=r"lose_rate must be within 0\.\.1"):
        emu.set_faults(lose_rate=1.5)


def test_latency_is_added(emu: Emulator) -> None:
    """latency_ms delays every API call."""
    ecs = client(emu)
    describe(ecs)
    emu.set_faults(latency_ms=150)
    started = time.monotonic()
    describe(ecs)
    assert time.monotonic() - started >= 0.15


# --- fleet file ------------------------------------------------------------------------------

GOOD_INSTANCE = {"id": "i-bp1good000000000001"}


@pytest.mark.parametrize(("doc", "message"), [
    ({"instances": [GOOD_INSTANCE, GOOD_INSTANCE | {"id": "i-bp1b0000", "status": "Runing"}]},
     "instances[1].status: 'Runing' is not one of ['Pending', 'Running',"),
    ({"instances": [GOOD_INSTANCE | {"colour": "red"}]}, "instances[0].colour: unknown key"),
    ({"instances": [{"id": "i-BAD"}]}, "instances[0].id: 'i-BAD' does not match"),
    ({"instances": [GOOD_INSTANCE | {"id": "i-bp1good000000000001\n"}]},
     "instances[0].id: 'i-bp1good000000000001\\n' does not match"),
    ({"instances": [{"name": "x"}]}, "instances[0].id: is required"),
    ({"instances": [GOOD_INSTANCE, GOOD_INSTANCE]}, "instances[1].id: duplicate instance id"),
    ({"instances": [GOOD_INSTANCE | {"private_ip": "10.0.0.5", "enis": [
        {"id": "eni-bp1a0001", "private_ip": "10.0.0.6"}]}]},
     "instances[0].enis[0].private_ip: the primary ENI has the instance's 10.0.0.5"),
    ({"instances": [GOOD_INSTANCE | {"enis": [{"id": "eni-bp1a0001"}, {"id": "eni-bp1a0002"}]}]},
     "instances[0].enis[1].private_ip: is required"),
    ({"instances": [GOOD_INSTANCE | {"enis": []}]}, "instances[0].enis: names no ENI"),
    ({"instances": [GOOD_INSTANCE | {"enis": [{"id": "i-bp1a0001"}]}]},
     "instances[0].enis[0].id: 'i-bp1a0001' does not match"),
    ({"instances": [GOOD_INSTANCE, {"id": "i-bp1b0001", "enis": [
        {"id": "eni-bp1good000000000001"}]}]},
     "instances[1].enis[0].id: duplicate ENI id 'eni-bp1good000000000001'"),
    ({"instances": [GOOD_INSTANCE | {"tags": {"auto-start": True}}]},
     "instances[0].tags.auto-start: True is not a string"),
    ({"instances": [GOOD_INSTANCE | {"lock_reasons": ["money"]}]},
     "instances[0].lock_reasons[0]: 'money' is not one of"),
    ({"account_id": 1234}, "account_id: must be a string"),
    ({"credentials": [{"access_key_id": "LTAIx1"}]}, "credentials[0].access_key_secret: is required"),
    ({"regoin": "cn-hangzhou"}, "regoin: unknown key"),
    ({"load_balancers": [{"id": "lb-bp1x0001", "vserver_groups": [
        {"id": "rsp-bp1g0001", "servers": [{"server_id": "i-bp1good000000000001"}]}]}]},
     "load_balancers[0].vserver_groups[0].servers[0].port: is required"),
    ({"load_balancers": [{"id": "lb-bp1x0001", "default_servers": [
        {"server_id": "i-bp1good000000000001", "weight": 101}]}]},
     "load_balancers[0].default_servers[0].weight: 101 is not within 0..100"),
    ({"load_balancers": [{"id": "lb-bp1x0001", "listeners": [
        {"port": 80, "vserver_group_id": "rsp-bp1nope0001"}]}]},
     "load_balancers[0].listeners[0].vserver_group_id: 'rsp-bp1nope0001' is not a vServer"),
])
def test_fleet_validation_names_the_bad_entry(doc: dict[str, Any], message: str) -> None:
    """Invalid fleets are refused with the path of the bad entry first."""
    with pytest.raises(FleetError) as info:
        Fleet.from_dict(doc)
    assert str(info.value).startswith(message), str(info.value)


def test_fleet_defaults_and_files(tmp_path: Path) -> None:
    """Defaults fill optional keys, including a documented default credential."""
    fleet = Fleet.from_dict({"instances": [GOOD_INSTANCE]})
    (inst,) = fleet.instances
    assert (inst.status, inst.charge_type, inst.spot_strategy, inst.zone) == (
        "Running", "PostPaid", "NoSpot", "cn-hangzhou-h")
    assert fleet.credentials[0].access_key_id == "LTAIemulatorDefaultKey"
    bad = tmp_path / "bad.yaml"
    bad.write_text("instances:\n  - {id: i-bp1good000000000001, status: Runing}\n")
    with pytest.raises(FleetError, match=r"bad\.yaml: instances\[0\]\.status"):
        load_fleet(bad)
    for name in ("basic.yaml", "spot.yaml"):
        assert load_fleet(FLEETS / name).instances


def test_describe_instances_answers_each_instance_s_network_interfaces() -> None:
    """GIVEN an instance naming two ENIs and one naming none WHEN described THEN
    NetworkInterfaces lists the named ones, the primary first with the instance's IP, and the
    default primary ENI (eni-<id tail>) of the other; the answer conforms to api-meta."""
    fleet = Fleet.from_dict({"instances": [
        {"id": "i-bp1two000000000001", "private_ip": "10.0.0.5",
         "enis": [{"id": "eni-bp1first01"}, {"id": "eni-bp1second1", "private_ip": "10.0.0.6"}]},
        GOOD_INSTANCE]})
    with Emulator(fleet, start_delay_s=0.01) as emu:
        found = describe(client(emu)).instances.instance
        enis = {i.instance_id: [(n.network_interface_id, n.type, n.primary_ip_address)
                                for n in i.network_interfaces.network_interface] for i in found}
        assert enis == {
            "i-bp1two000000000001": [("eni-bp1first01", "Primary", "10.0.0.5"),
                                     ("eni-bp1second1", "Secondary", "10.0.0.6")],
            "i-bp1good000000000001": [("eni-bp1good000000000001", "Primary", "10.0.0.1")]}
        assert emu.instance("i-bp1two000000000001")["enis"] == [
            {"id": "eni-bp1first01", "private_ip": "10.0.0.5"},
            {"id": "eni-bp1second1", "private_ip": "10.0.0.6"}]
        assert emu.contract_violations() == []


# --- control endpoints and CLI ---------------------------------------------------------------

def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_control_endpoints_over_http(emu: Emulator) -> None:
    """The /_emulator/ endpoints drive the same operations as the Python API."""
    base = f"{emu.url}/_emulator"
    created = _post(f"{base}/instances", {"id": "i-bp1http0000000001", "tags": {"a": "b"}})
    assert created == {"instance_id": "i-bp1http0000000001"}
    _post(f"{base}/instances/{WEB1}/stop", {"by": "user", "user": "bob"})
    _post(f"{base}/instances/{WEB1}/lock", {"reason": "security"})
    _post(f"{base}/instances/{BATCH1}/om-event", {"event_type": "SystemMaintenance.Redeploy",
                                                  "status": "Inquiring"})
    _post(f"{base}/faults", {"fail_next": {"StartInstance": ["Throttling.User"]},
                             "lose_answer": {"StopInstance": ["InternalError"]}})
    with pytest.raises(urllib.error.HTTPError) as refused:
        _post(f"{base}/faults", {"fail_next": {"StartInstance": ["SystemBusy"]}})
    assert refused.value.code == 400
    assert "StartInstance cannot answer SystemBusy" in json.loads(refused.value.read())["error"]
    refused.value.close()
    emu.wait_for_status(WEB1, "Stopped", timeout_s=2)
    state = _get(f"{base}/state")
    web1 = next(i for i in state["instances"] if i["id"] == WEB1)
    assert (web1["status"], web1["lock_reasons"]) == ("Stopped", ["security"])
    assert state["trail"][0]["userIdentity"]["userName"] == "bob"
    assert state["faults"]["fail_next"] == {"StartInstance": ["Throttling.User"]}
    assert state["faults"]["lose_answer"] == {"StopInstance": ["InternalError"]}
    names = [e["name"] for e in _get(f"{base}/events")]
    assert "Instance:SystemMaintenance.Redeploy:Inquiring" in names
    with pytest.raises(urllib.error.HTTPError) as info:
        _post(f"{base}/instances/i-bp1nothere000001/release", {})
    assert info.value.code == 404
    info.value.close()
    with pytest.raises(urllib.error.HTTPError) as bad:
        _post(f"{base}/instances", {"id": "i-bp1http0000000002", "status": "Runing"})
    assert bad.value.code == 400
    bad.value.close()
    assert _get(f"{base}/calls") == []


def test_cli_prints_url_first_and_serves(tmp_path: Path) -> None:
    """python -m tools.emulator prints the base URL first, serves the SDK, stops on SIGTERM."""
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.emulator", "--fleet", str(FLEETS / "basic.yaml"),
         "--port", "0", "--events-out", str(events), "--start-delay", "0.01",
         "--fail-next", "StartInstance=QuotaExceed.ElasticQuota",
         "--lose-answer", "StopInstance=InternalError"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        ecs = Ecs(Config(endpoint=url.removeprefix("http://"), protocol="http", region_id=REGION,
                         access_key_id="LTAIexampleKey01", access_key_secret="example-secret"))
        quota = api_error(lambda: ecs.start_instance(
            ecs_models.StartInstanceRequest(instance_id=BATCH1)))
        assert (quota.code, quota.data["statusCode"]) == ("QuotaExceed.ElasticQuota", 403)
        ecs.start_instance(ecs_models.StartInstanceRequest(instance_id=BATCH1))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(events.read_text().splitlines()) < 2:
            time.sleep(0.02)
        assert [json.loads(line)["content"]["state"]
                for line in events.read_text().splitlines()] == ["Starting", "Running"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_cli_rejects_an_undocumented_fault_code() -> None:
    """--fail-next with a code the action cannot answer exits 2 and says why."""
    result = subprocess.run([sys.executable, "-m", "tools.emulator", "--fleet",
                             str(FLEETS / "basic.yaml"), "--fail-next",
                             "DescribeInstances=SystemBusy"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "DescribeInstances cannot answer SystemBusy" in result.stderr
    assert result.stdout == ""


def test_cli_rejects_a_bad_fleet(tmp_path: Path) -> None:
    """A bad fleet file exits 2 with the path of the bad entry on stderr."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("instances:\n  - {id: i-bp1good000000000001, zone: 7}\n")
    result = subprocess.run([sys.executable, "-m", "tools.emulator", "--fleet", str(bad)],
                            cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "instances[0].zone: 7 is not a string" in result.stderr
    assert result.stdout == ""
