"""The emulator's ALB (2020-06-16) side, driven by the real Tea SDK over HTTP.

Fleet: tests/fixtures/fleets/lb.yaml. Each documented action answers in success and in an error
case (``CASES``, read by tests/test_conformance.py's coverage check); the behaviour tests cover
the asynchronous jobs, ``Configuring`` conflicts, connection draining, per-call limits,
``ClientToken``, ``DryRun`` and a released instance that stays registered.
"""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_alb20200616 import models as A
from alibabacloud_alb20200616.client import Client as Alb
from Tea.exceptions import TeaException

from tests.helpers import api_error, sdk_config
from tests.lb_helpers import (
    ABSENT,
    ALB_ACK,
    ALB_DRAIN,
    ALB_PLAIN,
    JOB_S,
    NEW,
    NO_GROUP,
    SPOT,
    WEB1,
    WEB2,
    Case,
    GroupCalls,
    check_documented_answer,
    contract,
    covered,
    emu,
    lb_emulator,
)
from tools.emulator import Emulator
from tools.emulator.contract import Contract
from tools.emulator.fleet import Fleet, FleetError

__all__ = ["contract", "emu"]  # the fixtures, imported for pytest

ALB = "alb-bp1front0000000001"
CALLS = GroupCalls(A, ALB_PLAIN, 8080)
_upd, _rm, _add = CALLS.upd, CALLS.rm, CALLS.new
update, remove, add, servers = CALLS.update, CALLS.remove, CALLS.add, CALLS.servers


def _replace(c: Alb, token: str | None = None, new: str = NEW) -> Any:
    return c.replace_servers_in_server_group(A.ReplaceServersInServerGroupRequest(
        server_group_id=ALB_PLAIN, client_token=token,
        added_servers=[A.ReplaceServersInServerGroupRequestAddedServers(
            server_id=new, server_type="Ecs", port=8080, weight=50)],
        removed_servers=[A.ReplaceServersInServerGroupRequestRemovedServers(
            server_id=SPOT, server_type="Ecs", port=8080)]))


def _replace_then_finish(c: Alb, e: Emulator) -> None:
    _replace(c, "tok-1")
    e.finish_lb_jobs()


CASES: list[Case[Alb]] = [
    Case("list-lbs", "ListLoadBalancers", lambda c: c.list_load_balancers(
        A.ListLoadBalancersRequest(load_balancer_ids=[ALB]))),
    Case("list-lbs-bad-token", "ListLoadBalancers", lambda c: c.list_load_balancers(
        A.ListLoadBalancersRequest(next_token="nope")), "InvalidParameter"),
    Case("list-groups", "ListServerGroups", lambda c: c.list_server_groups(
        A.ListServerGroupsRequest(tag=[A.ListServerGroupsRequestTag(key="ack.aliyun.com")]))),
    Case("list-groups-bad-max", "ListServerGroups", lambda c: c.list_server_groups(
        A.ListServerGroupsRequest(max_results=101)), "InvalidParameter"),
    Case("list-servers", "ListServerGroupServers", lambda c: c.list_server_group_servers(
        A.ListServerGroupServersRequest(server_group_id=ALB_DRAIN))),
    Case("list-servers-21-ids", "ListServerGroupServers", lambda c: c.list_server_group_servers(
        A.ListServerGroupServersRequest(server_ids=[f"i-bp1x{n:016d}" for n in range(21)])),
        "InvalidParameter"),
    Case("list-jobs", "ListAsynJobs", lambda c: c.list_asyn_jobs(A.ListAsynJobsRequest(
        resource_type="servergroup", resource_ids=[ALB_PLAIN])), setup=lambda c, e: update(c)),
    Case("list-jobs-11-ids", "ListAsynJobs", lambda c: c.list_asyn_jobs(A.ListAsynJobsRequest(
        job_ids=[f"job-{n}" for n in range(11)])), "InvalidParameter"),
    Case("update", "UpdateServerGroupServersAttribute", update),
    Case("update-configuring", "UpdateServerGroupServersAttribute", update,
         "IncorrectStatus.ServerGroup", setup=lambda c, e: remove(c, ALB_PLAIN, _rm(WEB2))),
    Case("update-not-member", "UpdateServerGroupServersAttribute",
         lambda c: update(c, ALB_PLAIN, _upd(NEW)), "ResourceNotFound.BackendServer"),
    Case("update-twice", "UpdateServerGroupServersAttribute",
         lambda c: update(c, ALB_PLAIN, _upd(), _upd(weight=3)), "InvalidParameter"),
    Case("update-ip-in-instance-group", "UpdateServerGroupServersAttribute",
         lambda c: update(c, ALB_PLAIN, A.UpdateServerGroupServersAttributeRequestServers(
             server_id="10.0.1.21", server_type="Ip", port=8080, weight=0)),
         "ResourceNotFound.BackendServer"),
    Case("update-no-group", "UpdateServerGroupServersAttribute", lambda c: update(c, NO_GROUP),
         "ResourceNotFound.ServerGroup"),
    Case("update-dry-run", "UpdateServerGroupServersAttribute",
         lambda c: update(c, dry_run=True), "DryRunOperation"),
    Case("remove", "RemoveServersFromServerGroup", remove),
    Case("remove-not-member", "RemoveServersFromServerGroup",
         lambda c: remove(c, ALB_PLAIN, _rm(WEB1)), "ResourceNotFound.BackendServer"),
    Case("remove-bad-type", "RemoveServersFromServerGroup", lambda c: remove(
        c, ALB_PLAIN, A.RemoveServersFromServerGroupRequestServers(
            server_id=SPOT, server_type="Vm", port=8080)), "InvalidParameter"),
    Case("remove-configuring", "RemoveServersFromServerGroup", remove,
         "IncorrectStatus.ServerGroup", setup=lambda c, e: update(c, ALB_PLAIN, _upd(WEB2))),
    Case("add", "AddServersToServerGroup", lambda c: c.add_servers_to_server_group(
        A.AddServersToServerGroupRequest(server_group_id=ALB_PLAIN, servers=[_add()]))),
    Case("add-unknown-ecs", "AddServersToServerGroup", lambda c: c.add_servers_to_server_group(
        A.AddServersToServerGroupRequest(server_group_id=ALB_PLAIN, servers=[_add(ABSENT)])),
        "ResourceNotFound.Ecs"),
    Case("add-existing", "AddServersToServerGroup", lambda c: c.add_servers_to_server_group(
        A.AddServersToServerGroupRequest(server_group_id=ALB_PLAIN, servers=[_add(SPOT)])),
        "Conflict.BackendServer"),
    Case("add-twice", "AddServersToServerGroup", lambda c: c.add_servers_to_server_group(
        A.AddServersToServerGroupRequest(server_group_id=ALB_PLAIN, servers=[_add(), _add()])),
        "DuplicatedParam.BackendServer"),
    Case("add-ip-to-instance-group", "AddServersToServerGroup",
         lambda c: c.add_servers_to_server_group(A.AddServersToServerGroupRequest(
             server_group_id=ALB_PLAIN, servers=[A.AddServersToServerGroupRequestServers(
                 server_id="10.0.1.31", server_type="Ip", port=80)])), "Mismatch.ServerType"),
    Case("replace", "ReplaceServersInServerGroup", _replace),
    Case("replace-token-other-request", "ReplaceServersInServerGroup",
         lambda c: _replace(c, "tok-1", new=WEB1), "IdempotentParameterMismatch",
         setup=_replace_then_finish),
    Case("replace-unknown-ecs", "ReplaceServersInServerGroup",
         lambda c: _replace(c, new=ABSENT), "ResourceNotFound.Ecs"),
]
OVER_MAX_ITEMS = {"list-servers-21-ids", "list-jobs-11-ids"}
# Read by tests/test_conformance.py's coverage check: the ALB actions covered here.
ALB_COVERED_OK, ALB_COVERED_ERROR = covered("alb", CASES)


@pytest.fixture
def alb(emu: Emulator) -> Alb:
    return Alb(sdk_config(emu))


def group_status(alb: Alb, group: str) -> str:
    body = alb.list_server_groups(A.ListServerGroupsRequest(server_group_ids=[group])).body
    return str(body.server_groups[0].server_group_status)


def job_status(alb: Alb, job_id: str) -> str:
    (job,) = alb.list_asyn_jobs(A.ListAsynJobsRequest(job_ids=[job_id])).body.jobs
    return str(job.status)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_alb_action_answers_as_documented(case: Case[Alb], emu: Emulator, alb: Alb,
                                          contract: Contract) -> None:
    """GIVEN the setup WHEN the SDK calls the action THEN success or the documented error (with
    its documented HTTP status), and the raw body and the request conform to the contract."""
    check_documented_answer("alb", case, client=alb, emu=emu, contract=contract,
                            over_max_items=OVER_MAX_ITEMS)


def test_weight_write_is_a_job_that_holds_the_group(emu: Emulator, alb: Alb) -> None:
    """GIVEN spot-1 at weight 50 WHEN its weight is set to 0 THEN a job: the group Configuring,
    the member Configuring at its old weight, a second write refused with
    IncorrectStatus.ServerGroup; once the job is due: Succeeded, weight 0, Available."""
    job = update(alb)
    assert job_status(alb, job) == "Processing"
    assert group_status(alb, ALB_PLAIN) == "Configuring"
    assert servers(alb, ALB_PLAIN)[(SPOT, 8080)] == (50, "Configuring")
    err = api_error(lambda: remove(alb, ALB_PLAIN, _rm(WEB2)))
    assert (err.code, err.data["statusCode"]) == ("IncorrectStatus.ServerGroup", 400)
    # another group is not held
    assert remove(alb, ALB_ACK, _rm(SPOT, 30080))
    emu.advance_clock(JOB_S)
    assert job_status(alb, job) == "Succeeded"
    assert group_status(alb, ALB_PLAIN) == "Available"
    assert servers(alb, ALB_PLAIN) == {(SPOT, 8080): (0, "Available"), (WEB2, 8080): (100, "Available")}
    assert servers(alb, ALB_ACK) == {}


def test_connection_draining_holds_a_removed_member_for_its_timeout(emu: Emulator,
                                                                      alb: Alb) -> None:
    """GIVEN a group draining 30 s and one without WHEN spot-1 is removed from both THEN the
    plain group's job ends after the job time; the draining group keeps spot-1 Removing and the
    group Configuring for the timeout, then spot-1 is gone."""
    drain_job = remove(alb, ALB_DRAIN, _rm(SPOT, 80))
    plain_job = remove(alb, ALB_PLAIN)
    assert servers(alb, ALB_DRAIN)[(SPOT, 80)] == (100, "Removing")
    emu.advance_clock(JOB_S + 1)
    assert job_status(alb, plain_job) == "Succeeded"
    assert (SPOT, 8080) not in servers(alb, ALB_PLAIN)
    assert job_status(alb, drain_job) == "Processing"
    assert servers(alb, ALB_DRAIN)[(SPOT, 80)] == (100, "Removing")
    assert group_status(alb, ALB_DRAIN) == "Configuring"
    emu.advance_clock(29)
    assert job_status(alb, drain_job) == "Succeeded"
    assert servers(alb, ALB_DRAIN) == {(WEB1, 80): (100, "Available")}


def test_jobs_finish_on_this_machines_time_too(emu: Emulator, alb: Alb) -> None:
    """GIVEN job_s 0.2 and drain_scale 0.01 WHEN spot-1 is removed from the 30 s draining group
    THEN it is gone after 0.2 + 0.3 s of real time, not before 0.2 s."""
    import time

    emu.set_lb_jobs(drain_scale=0.01)
    job = remove(alb, ALB_DRAIN, _rm(SPOT, 80))
    time.sleep(JOB_S)
    assert job_status(alb, job) == "Processing"
    deadline = time.monotonic() + 3
    while job_status(alb, job) != "Succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (SPOT, 80) not in servers(alb, ALB_DRAIN)


def test_add_goes_adding_then_available(emu: Emulator, alb: Alb) -> None:
    """GIVEN new-1 in no group WHEN added THEN Adding (its private IP as ServerIp), then
    Available; finish_lb_jobs ends it at once."""
    add(alb)
    body = alb.list_server_group_servers(A.ListServerGroupServersRequest(
        server_group_id=ALB_PLAIN, server_ids=[NEW])).body
    assert [(s.status, s.server_ip, s.weight) for s in body.servers] == [
        ("Adding", "10.0.1.31", 100)]
    assert emu.finish_lb_jobs() == 1
    assert servers(alb, ALB_PLAIN)[(NEW, 8080)] == (100, "Available")
    assert emu.lb_group(ALB_PLAIN)["status"] == "Available"


def test_replace_swaps_in_one_job(emu: Emulator, alb: Alb) -> None:
    """GIVEN spot-1 in ALB_PLAIN WHEN replaced by new-1 THEN one job: spot-1 Removing and new-1
    Adding, then only new-1 (weight 50) and web-2."""
    _replace(alb)
    assert servers(alb, ALB_PLAIN)[(SPOT, 8080)][1] == "Removing"
    assert servers(alb, ALB_PLAIN)[(NEW, 8080)] == (50, "Adding")
    assert len(emu.lb_jobs("alb")) == 1
    emu.finish_lb_jobs()
    assert servers(alb, ALB_PLAIN) == {(NEW, 8080): (50, "Available"), (WEB2, 8080): (100, "Available")}


def test_client_token_answers_the_same_job_without_a_second_one(emu: Emulator, alb: Alb) -> None:
    """GIVEN a weight write with a ClientToken WHEN it is retried with the same token (while its
    job holds the group, and after) THEN the same JobId and one job; the same token with
    another body on Update answers the first job too (no mismatch code is documented there)."""
    first = update(alb, token="drain-1")
    assert update(alb, token="drain-1") == first
    emu.finish_lb_jobs()
    assert update(alb, token="drain-1") == first
    assert update(alb, ALB_PLAIN, _upd(weight=7), token="drain-1") == first
    assert [j["id"] for j in emu.lb_jobs("alb")] == [first]
    assert servers(alb, ALB_PLAIN)[(SPOT, 8080)] == (0, "Available")
    # without a token a retry is a new write
    assert update(alb) != first


def test_dry_run_changes_nothing(emu: Emulator, alb: Alb) -> None:
    """GIVEN a valid weight write WHEN sent with DryRun THEN DryRunOperation, no job, weight
    kept; an invalid one fails its own check first."""
    err = api_error(lambda: update(alb, dry_run=True))
    assert (err.code, err.data["statusCode"]) == ("DryRunOperation", 400)
    assert emu.lb_jobs("alb") == []
    assert servers(alb, ALB_PLAIN)[(SPOT, 8080)] == (50, "Available")
    err = api_error(lambda: update(alb, ALB_PLAIN, _upd(NEW), dry_run=True))
    assert err.code == "ResourceNotFound.BackendServer"


def test_per_call_limits(emu: Emulator, alb: Alb) -> None:
    """Update takes at most 40 servers (41 refused before anything else, 40 judged member by
    member); Remove takes 200."""
    forty = [_upd(f"i-bp1x{n:016d}") for n in range(40)]
    assert api_error(lambda: update(alb, ALB_PLAIN, *forty, _upd(SPOT))).code == "InvalidParameter"
    assert api_error(lambda: update(alb, ALB_PLAIN, *forty)).code == "ResourceNotFound.BackendServer"
    many = [_rm(f"i-bp1x{n:016d}") for n in range(201)]
    assert api_error(lambda: remove(alb, ALB_PLAIN, *many)).code == "InvalidParameter"
    assert api_error(lambda: remove(alb, ALB_PLAIN, *many[:200])).code == \
        "ResourceNotFound.BackendServer"
    assert emu.lb_jobs("alb") == []


def test_released_instance_stays_registered(emu: Emulator, alb: Alb) -> None:
    """GIVEN spot-1 released WHEN its groups are listed THEN it is still a member (Available,
    its old IP) and can be removed; it cannot be added anywhere."""
    emu.release(SPOT)
    body = alb.list_server_group_servers(A.ListServerGroupServersRequest(server_ids=[SPOT])).body
    assert sorted((s.server_group_id, s.status, s.server_ip) for s in body.servers) == [
        (ALB_ACK, "Available", "10.0.1.21"), (ALB_DRAIN, "Available", "10.0.1.21"),
        (ALB_PLAIN, "Available", "10.0.1.21")]
    remove(alb)
    emu.finish_lb_jobs()
    assert (SPOT, 8080) not in servers(alb, ALB_PLAIN)
    err = api_error(lambda: add(alb, ALB_PLAIN, _add(SPOT)))
    assert (err.code, err.data["statusCode"]) == ("ResourceNotFound.Ecs", 404)


def test_groups_by_tag_and_members_across_groups(alb: Alb) -> None:
    """ListServerGroups' Tag filter finds the ACK-managed group with its Tags; without a
    ServerGroupId ListServerGroupServers answers an instance's memberships in every group, paged."""
    body = alb.list_server_groups(A.ListServerGroupsRequest(tag=[
        A.ListServerGroupsRequestTag(key="ack.aliyun.com", value="c-emulator01")])).body
    assert [g.server_group_id for g in body.server_groups] == [ALB_ACK]
    assert {t.key: t.value for t in body.server_groups[0].tags} == {
        "ack.aliyun.com": "c-emulator01", "kubernetes.do.not.delete": "ingress-web"}
    drain = alb.list_server_groups(A.ListServerGroupsRequest(server_group_ids=[ALB_DRAIN])).body
    cfg = drain.server_groups[0].connection_drain_config
    assert (cfg.connection_drain_enabled, cfg.connection_drain_timeout) == (True, 30)
    first = alb.list_server_group_servers(A.ListServerGroupServersRequest(
        server_ids=[SPOT], max_results=2)).body
    assert (len(first.servers), first.total_count) == (2, 3) and first.next_token
    rest = alb.list_server_group_servers(A.ListServerGroupServersRequest(
        server_ids=[SPOT], max_results=2, next_token=first.next_token)).body
    assert (len(rest.servers), rest.next_token) == (1, "")
    assert {s.server_group_id for s in [*first.servers, *rest.servers]} == {ALB_DRAIN, ALB_PLAIN, ALB_ACK}
    unknown = alb.list_server_group_servers(A.ListServerGroupServersRequest(
        server_group_id=NO_GROUP)).body
    assert unknown.servers == [] and unknown.total_count == 0


def test_faults_are_keyed_by_product_and_action(emu: Emulator, alb: Alb) -> None:
    """ALB and NLB share action names: faults name ``alb:Action``; a code the action does not
    document is refused."""
    emu.set_faults(fail_next={"alb:ListServerGroupServers": ["Throttling.User", "InternalError"]})
    assert api_error(lambda: servers(alb, ALB_PLAIN)).code == "Throttling.User"
    assert api_error(lambda: servers(alb, ALB_PLAIN)).code == "InternalError"
    assert servers(alb, ALB_PLAIN)
    with pytest.raises(ValueError, match="cannot answer"):
        emu.set_faults(fail_next={"alb:RemoveServersFromServerGroup": ["Conflict.Lock"]})
    with pytest.raises(ValueError, match="not an action"):
        emu.set_faults(fail_next={"RemoveServersFromServerGroup": ["InternalError"]})


def test_state_snapshot_holds_groups_and_jobs(emu: Emulator, alb: Alb) -> None:
    """World.state() carries ALB/NLB load balancers, groups (members, status) and jobs."""
    job = update(alb)
    state = emu.state()
    assert [lb["id"] for lb in state["albs"]["load_balancers"]] == [ALB]
    plain = next(g for g in state["albs"]["server_groups"] if g["id"] == ALB_PLAIN)
    assert (plain["status"], plain["job_id"]) == ("Configuring", job)
    assert [j["status"] for j in state["albs"]["jobs"]] == ["Processing"]
    assert len(state["nlbs"]["server_groups"]) == 2


@pytest.mark.parametrize(("doc", "message"), [
    ({"albs": [{"id": "lb-bp1wrong"}]}, "albs[0].id: 'lb-bp1wrong' does not match"),
    ({"albs": [{"id": "alb-bp1aaaa", "server_groups": [{"id": "sgp-bp1aaaa", "members": [
        {"server_id": SPOT}]}]}]}, "albs[0].server_groups[0].members[0].port: is required"),
    ({"albs": [{"id": "alb-bp1aaaa", "server_groups": [{"id": "sgp-bp1aaaa",
                                                        "connection_drain": {"timeout_s": 901}}]}]},
     "albs[0].server_groups[0].connection_drain.timeout_s: 901 is not within 0..900"),
    ({"nlbs": [{"id": "nlb-bp1aaaa", "server_groups": [{"id": "sgp-bp1aaaa", "type": "Ip",
                                                        "members": [{"server_id": SPOT,
                                                                     "server_type": "Ecs"}]}]}]},
     "nlbs[0].server_groups[0].members[0].server_type: 'Ecs' is not one of ['Ip']"),
    ({"albs": [{"id": "alb-bp1aaaa", "server_groups": [{"id": "sgp-bp1aaaa"}]}],
      "nlbs": [{"id": "nlb-bp1aaaa", "server_groups": [{"id": "sgp-bp1aaaa"}]}]},
     "nlbs[0].server_groups[0].id: duplicate server group id"),
    ({"albs": [{"id": "alb-bp1aaaa", "server_groups": [{"id": "sgp-bp1aaaa", "members": [
        {"server_id": "eni-bp1aaaa", "server_type": "Eni", "port": 80}]}]}]},
     "members[0].server_ip: is required for an Eni member"),
    ({"albs": [{"id": "alb-bp1aaaa", "edition": "Basic", "server_groups": [
        {"id": "sgp-bp1aaaa", "connection_drain": {"enabled": True}}]}]},
     "albs[0].server_groups[0].connection_drain.enabled: a Basic Edition ALB does not support"),
    ({"nlbs": [{"id": "nlb-bp1aaaa", "edition": "Standard"}]},
     "nlbs[0].edition: unknown key"),
])
def test_fleet_refuses_bad_lb_entries_with_their_path(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(FleetError) as info:
        Fleet.from_dict(doc)
    assert message in str(info.value)


def test_control_endpoints_show_groups_and_finish_jobs(emu: Emulator, alb: Alb) -> None:
    """HTTP control: GET /_emulator/server_groups/<id>, POST /_emulator/lb_jobs/finish and
    POST /_emulator/lb_jobs {job_s} (a negative one refused with 400)."""
    import json
    import urllib.error
    import urllib.request

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(f"{emu.url}/_emulator/{path}", method=method,
                                         data=json.dumps(body or {}).encode())
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())

    update(alb)
    group = call("GET", f"server_groups/{ALB_PLAIN}")
    assert (group["product"], group["status"]) == ("alb", "Configuring")
    assert [(m["server_id"], m["status"]) for m in group["members"]] == [
        (SPOT, "Configuring"), (WEB2, "Available")]
    assert call("POST", "lb_jobs/finish") == {"finished": 1}
    assert call("GET", f"server_groups/{ALB_PLAIN}")["members"][0]["weight"] == 0
    call("POST", "lb_jobs", {"job_s": 60})
    update(alb, ALB_PLAIN, _upd(weight=5))
    emu.advance_clock(JOB_S + 1)
    assert emu.lb_group(ALB_PLAIN)["status"] == "Configuring"
    with pytest.raises(urllib.error.HTTPError) as info:
        call("POST", "lb_jobs", {"job_s": -1})
    info.value.close()
    assert info.value.code == 400
    with pytest.raises(KeyError):
        emu.lb_group(NO_GROUP)


@pytest.mark.contract_exempt("the product's client sends 21 ServerIds (api-meta maxItems 20) on "
                             "purpose, to show the plugin sees the new products' requests")
def test_product_requests_to_alb_are_checked_against_the_contract() -> None:
    """GIVEN a client with the product's User-Agent WHEN it sends a documented write and a list
    past the documented maxItems THEN only the second is a contract violation."""
    with lb_emulator() as emu:
        product = Alb(sdk_config(emu, user_agent="ecs-event-ops"))
        update(product, token="drain-x")
        assert emu.contract_violations() == []
        with pytest.raises(TeaException):
            product.list_server_group_servers(A.ListServerGroupServersRequest(
                server_ids=[f"i-bp1x{n:016d}" for n in range(21)]))
        assert [str(v) for v in emu.contract_violations()] == [
            "alb:ListServerGroupServers bad-param-value at ServerIds: 21 items, documented "
            "maxItems 20"]


def test_a_failed_job_changes_nothing_and_says_why(emu: Emulator, alb: Alb) -> None:
    """GIVEN a weight job and an add job WHEN the emulator fails them with documented codes
    THEN ListAsynJobs shows Failed with ErrorCode / ErrorMessage, the weight and the members are
    as before and the group takes writes again; undocumented codes and ended jobs are refused."""
    weight_job = update(alb)
    emu.fail_lb_job(weight_job, "IncorrectStatus.ServerGroup")
    (job,) = alb.list_asyn_jobs(A.ListAsynJobsRequest(job_ids=[weight_job])).body.jobs
    assert (job.status, job.error_code) == ("Failed", "IncorrectStatus.ServerGroup")
    assert job.error_message
    assert servers(alb, ALB_PLAIN)[(SPOT, 8080)] == (50, "Available")
    add_job = add(alb)
    emu.fail_lb_job(add_job, "ResourceQuotaExceeded.LoadBalancerServersNum")
    assert (NEW, 8080) not in servers(alb, ALB_PLAIN)
    with pytest.raises(ValueError, match="does not document"):
        emu.fail_lb_job(update(alb), "Conflict.Lock")
    emu.finish_lb_jobs()
    with pytest.raises(ValueError, match="not Processing"):
        emu.fail_lb_job(weight_job, "IncorrectStatus.ServerGroup")
    with pytest.raises(KeyError):
        emu.fail_lb_job("job-nothere", "IncorrectStatus.ServerGroup")
    assert emu.contract_violations() == []


def test_random_faults_pick_only_the_busy_codes_each_product_documents(contract: Contract
                                                                       ) -> None:
    """fault_rate's busy codes: NLB documents SystemBusy (400) on its reads and Add/Remove, not
    on Update; ALB documents none of contract.BUSY_CODES."""
    assert contract.busy_codes("nlb", "RemoveServersFromServerGroup") == [("SystemBusy", 400)]
    assert contract.busy_codes("nlb", "ListServerGroupServers") == [("SystemBusy", 400)]
    assert contract.busy_codes("nlb", "UpdateServerGroupServersAttribute") == []
    assert contract.busy_codes("alb", "RemoveServersFromServerGroup") == []


def test_list_load_balancers_shows_the_edition(alb: Alb) -> None:
    body = alb.list_load_balancers(A.ListLoadBalancersRequest()).body
    assert [(lb.load_balancer_id, lb.load_balancer_edition) for lb in body.load_balancers] == [
        (ALB, "Standard")]
