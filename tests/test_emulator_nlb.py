"""The emulator's NLB (2022-04-30) side, driven by the real Tea SDK over HTTP.

Fleet: tests/fixtures/fleets/lb.yaml. Each documented action answers in success and in an error
case (``CASES``, read by tests/test_conformance.py's coverage check); the behaviour tests cover
the asynchronous jobs (``GetJobStatus``), ``Conflict.Lock``, connection draining, per-call
limits, ``ClientToken``, ``DryRun``, Ip groups and lookups by ServerIps across groups.
"""

from __future__ import annotations

import pytest
from alibabacloud_nlb20220430 import models as N
from alibabacloud_nlb20220430.client import Client as Nlb

from tests.helpers import api_error, sdk_config
from tests.lb_helpers import (
    ABSENT,
    JOB_S,
    NEW,
    NLB_IP,
    NLB_TCP,
    NO_GROUP,
    SPOT,
    SPOT_IP,
    WEB2,
    Case,
    GroupCalls,
    check_documented_answer,
    contract,
    covered,
    emu,
)
from tools.emulator import Emulator
from tools.emulator.contract import Contract

__all__ = ["contract", "emu"]  # the fixtures, imported for pytest

NLB = "nlb-bp1edge00000000001"
CALLS = GroupCalls(N, NLB_TCP, 443)
_upd, _rm, _add = CALLS.upd, CALLS.rm, CALLS.new
update, remove, add, servers = CALLS.update, CALLS.remove, CALLS.add, CALLS.servers


CASES: list[Case[Nlb]] = [
    Case("list-lbs", "ListLoadBalancers", lambda c: c.list_load_balancers(
        N.ListLoadBalancersRequest(load_balancer_ids=[NLB]))),
    Case("list-lbs-bad-token", "ListLoadBalancers", lambda c: c.list_load_balancers(
        N.ListLoadBalancersRequest(next_token="nope")), "InvalidParameter"),
    Case("list-groups", "ListServerGroups", lambda c: c.list_server_groups(
        N.ListServerGroupsRequest(server_group_type="Ip"))),
    Case("list-groups-21-ids", "ListServerGroups", lambda c: c.list_server_groups(
        N.ListServerGroupsRequest(server_group_ids=[f"sgp-bp1x{n:012d}" for n in range(21)])),
        "InvalidParameter"),
    Case("list-servers", "ListServerGroupServers", lambda c: c.list_server_group_servers(
        N.ListServerGroupServersRequest(server_ips=[SPOT_IP]))),
    Case("list-servers-no-group", "ListServerGroupServers", lambda c: c.list_server_group_servers(
        N.ListServerGroupServersRequest(server_group_id=NO_GROUP)), "ResourceNotFound.serverGroup"),
    Case("job-status", "GetJobStatus", lambda c: c.get_job_status(N.GetJobStatusRequest(
        job_id=update(c)))),
    Case("job-status-unknown", "GetJobStatus", lambda c: c.get_job_status(N.GetJobStatusRequest(
        job_id="job-nothere")), "ResourceNotFound.JobId"),
    Case("list-jobs", "ListAsynJobs", lambda c: c.list_asyn_jobs(N.ListAsynJobsRequest(
        job_ids=[update(c), "job-nothere"]))),
    Case("list-jobs-throttled", "ListAsynJobs", lambda c: c.list_asyn_jobs(
        N.ListAsynJobsRequest(job_ids=["job-nothere"])), "Throttling.User",
         setup=lambda c, e: e.set_faults(fail_next={"nlb:ListAsynJobs": ["Throttling.User"]})),
    Case("update", "UpdateServerGroupServersAttribute", update),
    Case("update-locked", "UpdateServerGroupServersAttribute", update,
         "Conflict.Lock", setup=lambda c, e: remove(c, NLB_TCP, _rm(WEB2))),
    Case("update-not-member", "UpdateServerGroupServersAttribute",
         lambda c: update(c, NLB_TCP, _upd(NEW)), "ResourceNotFound.BackendServer"),
    Case("update-no-port", "UpdateServerGroupServersAttribute",
         lambda c: update(c, NLB_TCP, N.UpdateServerGroupServersAttributeRequestServers(
             server_id=SPOT, server_type="Ecs", weight=0)), "MissingParam.Port"),
    Case("update-twice", "UpdateServerGroupServersAttribute",
         lambda c: update(c, NLB_TCP, _upd(), _upd(weight=3)), "IllegalParam.Servers"),
    Case("update-no-group", "UpdateServerGroupServersAttribute", lambda c: update(c, NO_GROUP),
         "ResourceNotFound.serverGroup"),
    Case("remove", "RemoveServersFromServerGroup", remove),
    Case("remove-dry-run", "RemoveServersFromServerGroup", lambda c: remove(c, dry_run=True),
         "DryRunOperation"),
    Case("remove-201", "RemoveServersFromServerGroup", lambda c: remove(
        c, NLB_TCP, *[_rm(f"i-bp1x{n:016d}") for n in range(201)]), "IllegalParam.Servers"),
    Case("remove-token-other-request", "RemoveServersFromServerGroup",
         lambda c: remove(c, NLB_TCP, _rm(WEB2), token="tok-1"), "IdempotenceSignatureMismatch",
         setup=lambda c, e: remove(c, token="tok-1")),
    Case("add", "AddServersToServerGroup", add),
    Case("add-unknown-ecs", "AddServersToServerGroup", lambda c: add(c, NLB_TCP, _add(ABSENT)),
         "ResourceNotFound.Ecs"),
    Case("add-existing", "AddServersToServerGroup", lambda c: add(c, NLB_TCP, _add(SPOT)),
         "DuplicatedParam.Server"),
    Case("add-twice", "AddServersToServerGroup", lambda c: add(c, NLB_TCP, _add(), _add()),
         "DuplicatedParam.Server"),
    Case("add-ecs-to-ip-group", "AddServersToServerGroup", lambda c: add(c, NLB_IP, _add()),
         "Mismatch.ServerType"),
    Case("remove-ecs-from-ip-group", "RemoveServersFromServerGroup",
         lambda c: remove(c, NLB_IP, _rm(SPOT, 5432)), "ResourceNotFound.BackendServer"),
    Case("add-locked", "AddServersToServerGroup", add, "Conflict.Lock",
         setup=lambda c, e: update(c)),
]
OVER_MAX_ITEMS = {"list-groups-21-ids", "remove-201"}
# Read by tests/test_conformance.py's coverage check: the NLB actions covered here.
NLB_COVERED_OK, NLB_COVERED_ERROR = covered("nlb", CASES)


@pytest.fixture
def nlb(emu: Emulator) -> Nlb:
    return Nlb(sdk_config(emu))


def job_status(nlb: Nlb, job_id: str) -> str:
    return str(nlb.get_job_status(N.GetJobStatusRequest(job_id=job_id)).body.status)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_nlb_action_answers_as_documented(case: Case[Nlb], emu: Emulator, nlb: Nlb,
                                          contract: Contract) -> None:
    """GIVEN the setup WHEN the SDK calls the action THEN success or the documented error (with
    its documented HTTP status), and the raw body and the request conform to the contract."""
    check_documented_answer("nlb", case, client=nlb, emu=emu, contract=contract,
                            over_max_items=OVER_MAX_ITEMS)


def test_weight_write_is_a_job_and_the_group_is_locked(emu: Emulator, nlb: Nlb) -> None:
    """GIVEN spot-1 in the TCP group WHEN its weight is set to 0 THEN GetJobStatus says
    ``processing``, the group is Configuring, another write answers 400 Conflict.Lock; once
    due: Succeeded, weight 0, Available, and the group takes writes again."""
    job = update(nlb)
    assert job_status(nlb, job) == "processing"
    groups = nlb.list_server_groups(N.ListServerGroupsRequest(server_group_ids=[NLB_TCP])).body
    assert groups.server_groups[0].server_group_status == "Configuring"
    assert servers(nlb, NLB_TCP)[(SPOT, 443)] == (100, "Configuring")
    err = api_error(lambda: remove(nlb))
    assert (err.code, err.data["statusCode"]) == ("Conflict.Lock", 400)
    emu.advance_clock(JOB_S)
    assert job_status(nlb, job) == "Succeeded"
    assert servers(nlb, NLB_TCP)[(SPOT, 443)] == (0, "Available")
    remove(nlb)
    emu.finish_lb_jobs()
    assert servers(nlb, NLB_TCP) == {(WEB2, 443): (100, "Available")}


def test_list_asyn_jobs_reads_many_jobs(emu: Emulator, nlb: Nlb) -> None:
    """ListAsynJobs answers each asked job that exists with Processing, then Succeeded."""
    first = update(nlb)
    second = remove(nlb, NLB_IP, _rm(SPOT_IP, 5432, "Ip"))

    def statuses() -> list[tuple[str, str]]:
        body = nlb.list_asyn_jobs(N.ListAsynJobsRequest(job_ids=[first, second, "nope"])).body
        assert body.total_count == 2
        return [(j.id, j.status) for j in body.jobs]

    assert statuses() == [(first, "Processing"), (second, "Processing")]
    emu.finish_lb_jobs()
    assert statuses() == [(first, "Succeeded"), (second, "Succeeded")]


def test_ip_group_drains_a_removed_member(emu: Emulator, nlb: Nlb) -> None:
    """GIVEN spot-1's IP in an Ip group draining 10 s WHEN removed THEN Removing (job
    processing) until job time + 10 s, then gone."""
    job = remove(nlb, NLB_IP, _rm(SPOT_IP, 5432, "Ip"))
    emu.advance_clock(JOB_S + 5)
    assert servers(nlb, NLB_IP) == {(SPOT_IP, 5432): (100, "Removing")}
    assert job_status(nlb, job) == "processing"
    emu.advance_clock(5)
    assert job_status(nlb, job) == "Succeeded"
    assert servers(nlb, NLB_IP) == {}


def test_memberships_by_id_and_ip_across_groups(nlb: Nlb) -> None:
    """Without ServerGroupId, ServerIds and ServerIps find spot-1 in every NLB group: by id in
    the Instance group, by IP in the Ip group (ZoneId from the instance)."""
    body = nlb.list_server_group_servers(N.ListServerGroupServersRequest(
        server_ids=[SPOT], server_ips=[SPOT_IP])).body
    assert sorted((s.server_group_id, s.server_id, s.server_type, s.zone_id or "")
                  for s in body.servers) == [
        (NLB_IP, SPOT_IP, "Ip", ""), (NLB_TCP, SPOT, "Ecs", "cn-hangzhou-h")]
    forty_one = [f"10.9.0.{n}" for n in range(41)]
    err = api_error(lambda: nlb.list_server_group_servers(N.ListServerGroupServersRequest(
        server_ips=forty_one)))
    assert err.code == "InvalidParameter"


def test_client_token_and_dry_run(emu: Emulator, nlb: Nlb) -> None:
    """The same ClientToken and request answers the same job (one job); DryRun answers
    DryRunOperation and changes nothing."""
    first = add(nlb, token="restore-1")
    assert add(nlb, token="restore-1") == first
    assert len(emu.lb_jobs("nlb")) == 1
    emu.finish_lb_jobs()
    err = api_error(lambda: remove(nlb, NLB_TCP, _rm(NEW), dry_run=True))
    assert (err.code, err.data["statusCode"]) == ("DryRunOperation", 400)
    assert servers(nlb, NLB_TCP)[(NEW, 443)] == (100, "Available")
    assert len(emu.lb_jobs("nlb")) == 1


def test_busy_fault_is_documented_for_nlb_writes(emu: Emulator, nlb: Nlb) -> None:
    """NLB documents SystemBusy (400) on RemoveServersFromServerGroup: a queued fault answers
    it; the write is not applied."""
    emu.set_faults(fail_next={"nlb:RemoveServersFromServerGroup": ["SystemBusy"]})
    err = api_error(lambda: remove(nlb))
    assert (err.code, err.data["statusCode"]) == ("SystemBusy", 400)
    assert servers(nlb, NLB_TCP)[(SPOT, 443)] == (100, "Available")
    assert emu.lb_jobs("nlb") == []


def test_released_instance_stays_registered(emu: Emulator, nlb: Nlb) -> None:
    """A released instance stays a member of its NLB groups (reference §1.13) and can be
    removed."""
    emu.release(SPOT)
    assert servers(nlb, NLB_TCP)[(SPOT, 443)] == (100, "Available")
    job = remove(nlb)
    emu.finish_lb_jobs()
    assert job_status(nlb, job) == "Succeeded"
    assert (SPOT, 443) not in servers(nlb, NLB_TCP)


def test_documented_code_templates_stand_for_one_name(contract: Contract) -> None:
    """NLB documents ``IllegalParam.%s`` / ``MissingParam.%s``: any one name fits, with the
    documented status; the bare ``%s`` CMS lists fits nothing; ALB documents no template."""
    assert contract.statuses_of("nlb", "RemoveServersFromServerGroup", "IllegalParam.Servers") \
        == [400]
    assert contract.statuses_of("nlb", "UpdateServerGroupServersAttribute", "MissingParam.Port") \
        == [400]
    assert contract.statuses_of("nlb", "RemoveServersFromServerGroup", "MissingParam.Port") == []
    assert contract.statuses_of("nlb", "RemoveServersFromServerGroup", "IllegalParam.") == []
    assert contract.statuses_of("cms", "PutEventRule", "AnythingAtAll") == []
    assert contract.statuses_of("alb", "RemoveServersFromServerGroup", "IllegalParam.Servers") \
        == []


def test_contract_takes_the_qualified_action_names(contract: Contract) -> None:
    """``nlb:Action`` (the fault key, the client's table key) looks up the same contract as
    ``Action``: own codes and platform-wide ones."""
    for code in ("Conflict.Lock", "DryRunOperation", "Throttling.User", "IllegalParam.Servers"):
        assert contract.statuses_of("nlb", "nlb:RemoveServersFromServerGroup", code) == \
            contract.statuses_of("nlb", "RemoveServersFromServerGroup", code) != []
    assert contract.statuses_of("alb", "alb:UpdateServerGroupServersAttribute",
                                "DryRunOperation") == [400]
    assert contract.api("nlb", "nlb:GetJobStatus") is contract.api("nlb", "GetJobStatus")


def test_a_failed_job_never_succeeds_and_undoes_its_change(emu: Emulator, nlb: Nlb) -> None:
    """GIVEN a removal WHEN the emulator fails its job (a code documented for the action) THEN
    GetJobStatus keeps answering ``processing`` (it documents only Succeeded and processing),
    even long after the job was due; ListAsynJobs says Failed; the member is Available again
    and the group takes writes."""
    job = remove(nlb)
    emu.fail_lb_job(job, "SystemBusy")
    assert job_status(nlb, job) == "processing"
    emu.advance_clock(JOB_S * 100)
    emu.finish_lb_jobs()
    assert job_status(nlb, job) == "processing"
    jobs = nlb.list_asyn_jobs(N.ListAsynJobsRequest(job_ids=[job])).body.jobs
    assert [(j.id, j.status) for j in jobs] == [(job, "Failed")]
    assert servers(nlb, NLB_TCP)[(SPOT, 443)] == (100, "Available")
    assert emu.lb_group(NLB_TCP)["status"] == "Available"
    assert [v for v in emu.contract_violations() if v.action == "GetJobStatus"] == []
    again = remove(nlb, token="tok-redo")
    assert again != job
    emu.finish_lb_jobs()
    assert job_status(nlb, again) == "Succeeded"
    assert (SPOT, 443) not in servers(nlb, NLB_TCP)
