"""Every region, every account checked (issue 11, item 5).

CloudMonitor rules are account-wide: one function receives every region's events. The functions
act in each event's own region (clients per region, kept warm), ``ECS_EVENT_OPS_REGIONS`` limits
the regions, and an event of another account is rejected by every function.

The emulator serves one region (its fleet's): a fleet moved to cn-shanghai, with the functions
configured for cn-hangzhou, is "an instance in another region". Asked in cn-hangzhou, the
emulator answers as Alibaba does: an empty list, which the old code read as "released".
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared.clients import Clients, Credentials
from shared.events import parse
from shared.scope import AccountSource, EventScope, RefusalKind
from shared.settings import Settings, SettingsError
from shared.store import Store
from tests.helpers import FLEETS, event_bytes
from tools.emulator import Emulator, load_fleet
from tools.envelopes import wrap
from tools.invoke import InvokeResult, invoke_local, load_function

HOME = "cn-hangzhou"  # the functions' region (FC_REGION of tools.invoke)
OTHER = "cn-shanghai"  # where the emulated fleet lives in most tests here
OURS = "1234567890123456"  # the emulator's and tools.invoke's account
FOREIGN = "1999000011112222"  # the foreign-account fixtures'
SPOT = "i-bp1spot000000000001"
WEB1 = "i-bp1web0000000000001"
LB_FRONT = "lb-bp1front000000000001"
LB_SECURE = "lb-bp1secure0000000000001"
APP2 = "i-bp1as000000000000002"  # autostart.yaml: tag always
OTHER_IID = "i-uf6ecr1234abcd5go2go"  # the *_other_region fixtures' instance
FAST = {"ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01", "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.01",
        "ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S": "0", "ECS_EVENT_OPS_DRAIN_TIME_S": "0.2"}
CLOUD = ("ecs", "slb", "actiontrail")
OUT_OF_SCOPE = f"region {OTHER} is outside ECS_EVENT_OPS_REGIONS ({HOME})"


@contextmanager
def emulator(fleet: str, monkeypatch: pytest.MonkeyPatch, region: str = OTHER) -> Iterator[Emulator]:
    """An emulator on ``fleets/<fleet>`` moved to ``region``, its first key in the environment."""
    spec = dataclasses.replace(load_fleet(FLEETS / fleet), region=region)
    with Emulator(spec, start_delay_s=0.005) as emu:
        for name, value in emu.signing_environment().items():
            monkeypatch.setenv(name, value)
        for name in ("WEBHOOK_URL", "DINGTALK_URL", "LARK_URL", "WECOM_URL", "SLACK_URL"):
            monkeypatch.delenv("ECS_EVENT_OPS_NOTIFY_" + name, raising=False)
        monkeypatch.delenv("ECS_EVENT_OPS_REGIONS", raising=False)
        monkeypatch.delenv("ECS_EVENT_OPS_ACCOUNT_ID", raising=False)
        emu.clear_calls()
        yield emu


def run(function: str, emu: Emulator, db: str, body: bytes, **env: str) -> dict[str, Any]:
    result: InvokeResult = invoke_local(function, body, cloud_url=emu.url, db_url=db,
                                        env={**FAST, **env})
    if result.error is not None:
        raise result.error
    assert isinstance(result.value, dict)
    return result.value


def cloud_calls(emu: Emulator) -> list[tuple[str, str]]:
    return [(c.action, c.params.get("RegionId", "")) for c in emu.calls() if c.product in CLOUD]


def regions_called(emu: Emulator) -> set[str]:
    return {region for _, region in cloud_calls(emu)}


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'scope.sqlite3'}"


# --- the scope rule ------------------------------------------------------------------------------


def event_of(rel: str) -> Any:
    (event,) = parse(event_bytes(rel)).events
    return event


def test_the_account_comes_from_the_setting_then_the_context_then_fc_account_id() -> None:
    settings = Settings.from_env({})
    context = SimpleNamespace(account_id=OURS)
    assert EventScope.resolve(settings.with_(account_id=FOREIGN), context, {}).account_id == FOREIGN
    assert (EventScope.resolve(settings.with_(account_id=FOREIGN), context, {}).account_source
            is AccountSource.SETTING)
    from_context = EventScope.resolve(settings, context, {"FC_ACCOUNT_ID": FOREIGN})
    assert (from_context.account_id, from_context.account_source) == (OURS, AccountSource.CONTEXT)
    from_env = EventScope.resolve(settings, SimpleNamespace(), {"FC_ACCOUNT_ID": FOREIGN})
    assert (from_env.account_id, from_env.account_source) == (FOREIGN, AccountSource.ENVIRONMENT)
    unknown = EventScope.resolve(settings, SimpleNamespace(account_id=""), {})
    assert (unknown.account_id, unknown.account_source) == (None, AccountSource.UNKNOWN)
    assert len(unknown.warnings) == 1 and "events of every account are accepted" in unknown.warnings[0]
    assert from_context.warnings == ()


def test_split_rejects_other_accounts_and_ignores_regions_out_of_scope() -> None:
    """GIVEN our account and REGIONS=cn-hangzhou WHEN a batch mixes ours, a foreign account's
    and a cn-shanghai event THEN only ours is kept, the others refused with their reasons."""
    scope = EventScope(HOME, frozenset({HOME}), OURS, AccountSource.CONTEXT)
    ours = event_of("cloudmonitor/state_stopped.json")
    foreign = event_of("eventbridge/state_stopped_foreign_account.json")
    elsewhere = event_of("cloudmonitor/state_stopped_other_region.json")
    kept, refused = scope.split([foreign, ours, elsewhere])
    assert kept == (ours,)
    assert [(r.decision, r.event_id, r.reason) for r in refused] == [
        (RefusalKind.REJECTED, foreign.event_id,
         f"account {FOREIGN} is not this deployment's ({OURS}, from context)"),
        (RefusalKind.IGNORED, elsewhere.event_id, OUT_OF_SCOPE),
    ]
    assert refused[1].to_dict() == {
        "event_id": elsewhere.event_id, "instance_id": OTHER_IID,
        "name": "Instance:StateChange", "region": OTHER, "account_id": OURS,
        "decision": "ignored", "reason": OUT_OF_SCOPE,
    }


def test_every_region_is_in_scope_by_default_and_an_event_without_region_is_ours() -> None:
    scope = EventScope.resolve(Settings.from_env({}), SimpleNamespace(account_id=OURS), {})
    elsewhere = event_of("cloudmonitor/state_stopped_other_region.json")
    assert scope.split([elsewhere]) == ((elsewhere,), ())
    data_only = parse(json.dumps({"resourceId": OTHER_IID, "state": "Stopped"}),
                      data_only_type="ecs:Instance:StateChange").events[0]
    assert (data_only.region, data_only.account_id) == (None, None)
    assert scope.region_of(data_only) == HOME
    limited = dataclasses.replace(scope, regions=frozenset({OTHER}))
    (refusal,) = limited.split([data_only])[1]  # no region: ours, and ours is not in scope
    assert refusal.reason == f"region {HOME} is outside ECS_EVENT_OPS_REGIONS ({OTHER})"


@pytest.mark.parametrize(("variable", "value"), [
    ("ECS_EVENT_OPS_REGIONS", "cn-hangzhou,Hangzhou"),
    ("ECS_EVENT_OPS_REGIONS", "cn-hangzhou;cn-shanghai"),
    ("ECS_EVENT_OPS_ACCOUNT_ID", "12345abc"),
])
def test_bad_regions_and_account_settings_are_refused(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable.removeprefix("ECS_EVENT_OPS_").split("S")[0]):
        Settings.from_env({variable: value})


def test_settings_read_the_regions_list_and_the_account() -> None:
    settings = Settings.from_env({"ECS_EVENT_OPS_REGIONS": " cn-hangzhou, cn-shanghai ,",
                                  "ECS_EVENT_OPS_ACCOUNT_ID": OURS})
    assert (settings.regions, settings.account_id) == ((HOME, OTHER), OURS)
    assert Settings.from_env({}).regions == ()


# --- clients per region, kept warm ---------------------------------------------------------------


def test_for_region_builds_each_region_once_and_nothing_before_use() -> None:
    clients = Clients.from_settings(Settings.from_env({}), Credentials("ak", "sk"))
    shanghai = clients.for_region(OTHER)
    assert clients.for_region(None) is clients and clients.for_region(HOME) is clients
    assert shanghai is clients.for_region(OTHER)
    assert (clients.region_id, shanghai.region_id) == (HOME, OTHER)
    assert shanghai.credentials == clients.credentials and shanghai.settings is clients.settings
    assert shanghai._ecs is None and shanghai._lb is None  # lazy: no SDK client yet
    assert shanghai.ecs.region == OTHER and shanghai.lb.region == OTHER
    # without an emulator URL the SDK clients are the region's: RegionId and endpoint
    sdk = shanghai.ecs._sdk
    assert (sdk._region_id, sdk._endpoint) == (OTHER, "ecs.cn-shanghai.aliyuncs.com")
    assert shanghai.trail._sdk._endpoint == "actiontrail.cn-shanghai.aliyuncs.com"
    assert clients.ecs._sdk._region_id == HOME


def test_warm_clients_are_kept_per_thread_and_replaced_when_the_keys_rotate() -> None:
    settings = Settings.from_env({"ECS_EVENT_OPS_REGION": "cn-beijing"})
    first = Clients.warm(settings, Credentials("STS.a", "s", "token-1"))
    regional = first.for_region(OTHER)
    assert Clients.warm(settings, Credentials("STS.a", "s", "token-1")) is first
    assert first.for_region(OTHER) is regional  # the region's clients stay warm with it
    rotated = Clients.warm(settings, Credentials("STS.a", "s", "token-2"))
    assert rotated is not first and rotated.credentials == Credentials("STS.a", "s", "token-2")
    assert Clients.warm(settings, Credentials("STS.a", "s", "token-2")) is rotated
    other_thread: list[Clients] = []
    thread = threading.Thread(target=lambda: other_thread.append(
        Clients.warm(settings, Credentials("STS.a", "s", "token-2"))))
    thread.start()
    thread.join()
    assert other_thread[0] is not rotated


def test_a_regional_client_asks_its_own_region(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator in cn-shanghai: the home client sees nothing, the regional one the fleet."""
    with emulator("spot.yaml", monkeypatch) as emu:
        cred = emu.credentials[0]
        clients = Clients.from_settings(
            Settings.from_env({}, cloud_url=emu.url),
            Credentials(cred["access_key_id"], cred["access_key_secret"]))
        assert clients.ecs.describe_instances([SPOT]) == {}
        found = clients.for_region(OTHER).ecs.describe_instances([SPOT])
        assert (list(found), found[SPOT].region_id) == ([SPOT], OTHER)
        assert cloud_calls(emu) == [("DescribeInstances", HOME), ("DescribeInstances", OTHER)]


# --- the functions act in the event's region -----------------------------------------------------


def test_a_spot_notice_from_another_region_is_drained_there(
        monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    """GIVEN spot-1 in cn-shanghai and the function in cn-hangzhou, scoped by load-balancer ids
    WHEN its interruption notice arrives THEN it is drained from every group, every call made in
    cn-shanghai, and the drain's ledger entry records the region."""
    with emulator("spot.yaml", monkeypatch) as emu:
        emu.interrupt_spot(SPOT)
        notice = emu.events()[-1]
        assert (notice["name"], notice["regionId"]) == ("Instance:PreemptibleInstanceInterruption", OTHER)
        emu.clear_calls()
        result = run("drain_spot", emu, db, json.dumps(notice).encode(),
                     ECS_EVENT_OPS_LB_IDS=f"{LB_FRONT},{LB_SECURE}")
        (drain,) = result["drains"]
        assert (drain["outcome"], drain["instance_id"], result["refused"]) == ("drained", SPOT, [])
        assert {(m["load_balancer_id"], m["group_id"], m["port"]) for m in drain["removed"]} == {
            (LB_FRONT, None, None), (LB_FRONT, "rsp-bp1http00000000001", 80),
            (LB_FRONT, "rsp-bp1api000000000001", 8080), (LB_SECURE, "rsp-bp1https0000000001", 443),
        }
        assert regions_called(emu) == {OTHER}
        # the notice is verified there first (a spot instance of ours in that region), then
        # lb_ids outside the home region are looked up there: they may name any region (the
        # replacement beside the drain reads the instance in the same call)
        assert cloud_calls(emu)[:2] == [("DescribeInstances", OTHER), ("DescribeLoadBalancers", OTHER)]
        assert cloud_calls(emu).count(("DescribeInstances", OTHER)) == 1
        front = emu.load_balancer(LB_FRONT)
        assert SPOT not in {s["server_id"] for s in front["default_servers"]}
        store = Store(db)
        entry = store.ledger_get(drain["key"])
        assert entry is not None and entry.data["region"] == OTHER
        store.close()
        # spot-1 was not reclaimed after all: the sweep (its regions: ours and the one in the
        # store) restores it where the drain was made, the entry's region
        emu.unlock(SPOT)
        emu.clear_calls()
        swept = run("sweep", emu, db, b'{"triggerName": "sweep"}', ECS_EVENT_OPS_RESTORE_AFTER_S="-1000",
                    ECS_EVENT_OPS_LB_IDS=f"{LB_FRONT},{LB_SECURE}")
        assert swept["regions"] == [HOME, OTHER]
        report = swept["drains"]
        assert (report["restored"], report["errors"], report["released_backends_removed"]) == (
            [SPOT], [], [])
        default = {s["server_id"]: s["weight"] for s in emu.load_balancer(LB_FRONT)["default_servers"]}
        assert default[SPOT] == 100
        writes = [(a, r) for a, r in cloud_calls(emu) if a.startswith(("Add", "Set"))]
        assert writes and {r for _, r in writes} == {OTHER}


def test_a_stop_in_another_region_is_started_there(monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    """GIVEN app-2 (tag always) in cn-shanghai WHEN its Stopped event reaches the cn-hangzhou
    function THEN it is found and started in cn-shanghai (before: "not found (released?)")."""
    with emulator("autostart.yaml", monkeypatch) as emu:
        emu.stop_instance(APP2, by="crash")
        emu.wait_for_status(APP2, "Stopped")
        stopped = next(p for p in reversed(emu.events()) if p["content"].get("state") == "Stopped")
        emu.clear_calls()
        result = run("auto_start", emu, db, wrap(stopped, "eventbridge"))
        assert [(d["instance_id"], d["decision"]) for d in result["decisions"]] == [(APP2, "started")]
        assert result["refused"] == []
        # StartInstance has no RegionId: its region is its client's endpoint (checked below)
        assert cloud_calls(emu) == [("DescribeInstances", OTHER), ("StartInstance", "")]
        emu.wait_for_status(APP2, "Running")
        # the incident the start opened is checked in cn-shanghai too: Running there, verified
        # (asked in cn-hangzhou it would look gone and be escalated)
        swept = run("sweep", emu, db, b'{"triggerName": "sweep"}', ECS_EVENT_OPS_INCIDENT_TIMEOUT_S="0",
                    ECS_EVENT_OPS_REGIONS=OTHER)
        assert [(d["instance_id"], d["decision"]) for d in swept["auto_start"]["decisions"]] == [
            (APP2, "verified")]


def test_an_instance_of_another_region_is_recorded_with_its_region_and_snapshot(
        monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    """GIVEN an instance created then released in cn-shanghai WHEN its events are recorded THEN
    the snapshot comes from cn-shanghai, the store keeps the region, and the released list
    filters by it."""
    with emulator("basic.yaml", monkeypatch) as emu:
        iid = emu.create_instance({"id": "i-uf6created000000001", "name": "sh-1",
                                   "instance_type": "ecs.c7.large", "zone": "cn-shanghai-l"})
        emu.wait_for_status(iid, "Running", 5)
        for payload in [p for p in emu.events() if p["content"].get("resourceId") == iid]:
            result = run("record_lifecycle", emu, db, wrap(payload, "cloudmonitor"))
            assert result["refused"] == []
        assert cloud_calls(emu) == [("DescribeInstances", OTHER)]
        emu.release(iid)
        deleted = [p for p in emu.events() if p["content"].get("state") == "Deleted"][-1]
        run("record_lifecycle", emu, db, wrap(deleted, "mns_topic_json"))
        store = Store(db)
        record = store.instance(iid)
        assert record is not None
        assert (record.region, record.name, record.zone_id) == (OTHER, "sh-1", "cn-shanghai-l")
        assert [r.instance_id for r in store.released(region=OTHER).items] == [iid]
        assert store.released(region=HOME).items == ()
        assert store.known_regions() == [OTHER]
        store.close()


def test_a_failed_snapshot_is_retried_in_the_instances_region(
        monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    """The retry backlog is described where each instance lives, as the store recorded it."""
    with emulator("basic.yaml", monkeypatch) as emu:
        iid = emu.create_instance({"id": "i-uf6created000000002", "name": "sh-2"})
        emu.wait_for_status(iid, "Running", 5)
        pending = next(p for p in emu.events() if p["content"].get("resourceId") == iid)
        emu.set_faults(fail_next={"DescribeInstances": ["ServiceUnavailable"] * 4})
        first = run("record_lifecycle", emu, db, wrap(pending, "cloudmonitor"),
                    ECS_EVENT_OPS_API_MAX_ATTEMPTS="4")
        assert first["snapshots"] == {"taken": [], "failed": [iid]}
        emu.clear_calls()
        unrelated = event_bytes("cloudmonitor/state_stopped.json")  # a cn-hangzhou instance
        second = run("record_lifecycle", emu, db, unrelated)
        # the backlog now holds both: each described in its own region (the cn-hangzhou one is
        # not in the emulated cn-shanghai fleet, so it stays in the backlog)
        assert second["snapshots"] == {"taken": [iid], "failed": ["i-bp1ecr1234abcd5go2go"]}
        assert cloud_calls(emu) == [("DescribeInstances", HOME), ("DescribeInstances", OTHER)]


# --- the sweep covers the regions in scope -------------------------------------------------------


def test_the_sweep_covers_its_region_and_the_regions_in_the_store(
        monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    """GIVEN a cn-shanghai instance in the store and app-2 stopped there without any event
    WHEN the sweep runs with no REGIONS THEN it re-checks cn-hangzhou and cn-shanghai, and starts
    app-2 in cn-shanghai."""
    with emulator("autostart.yaml", monkeypatch) as emu:
        store = Store(db)
        store.record(parse(event_bytes("cloudmonitor/state_running_other_region.json")).events)
        store.close()
        emu.stop_instance(APP2, by="crash")
        emu.wait_for_status(APP2, "Stopped")
        emu.clear_calls()
        result = run("sweep", emu, db, b'{"triggerName": "sweep"}')
        assert result["regions"] == [HOME, OTHER]
        started = [d for d in result["auto_start"]["decisions"] if d["decision"] == "started"]
        assert [d["instance_id"] for d in started] == [APP2]
        # the missed stop is found by the listing in cn-shanghai (the one in cn-hangzhou is empty)
        assert cloud_calls(emu) == [
            ("DescribeInstances", HOME), ("DescribeInstances", OTHER), ("StartInstance", ""),
        ]


def test_the_sweep_keeps_to_regions_when_they_are_set(monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    with emulator("autostart.yaml", monkeypatch) as emu:
        emu.stop_instance(APP2, by="crash")
        emu.wait_for_status(APP2, "Stopped")
        emu.clear_calls()
        result = run("sweep", emu, db, b'{"triggerName": "sweep"}', ECS_EVENT_OPS_REGIONS=HOME)
        assert result["regions"] == [HOME]
        assert result["auto_start"]["decisions"] == []
        assert regions_called(emu) == {HOME}
        assert emu.instance(APP2)["status"] == "Stopped"


# --- regions out of scope: reported, not acted on ------------------------------------------------


@pytest.mark.parametrize(("function", "fixture"), [
    ("drain_spot", "cloudmonitor/spot_interruption_other_region.json"),
    ("auto_start", "eventbridge/state_stopped_other_region.json"),
    ("record_lifecycle", "eventbridge/state_running_other_region.json"),
])
def test_an_event_of_a_region_outside_regions_is_ignored_with_its_reason(
        function: str, fixture: str, monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    with emulator("basic.yaml", monkeypatch, region=HOME) as emu:
        result = run(function, emu, db, event_bytes(fixture), ECS_EVENT_OPS_REGIONS=HOME)
        event = event_of(fixture)
        assert result["refused"] == [{
            "event_id": event.event_id, "instance_id": OTHER_IID, "name": event.full_name,
            "region": OTHER, "account_id": OURS, "decision": "ignored", "reason": OUT_OF_SCOPE,
        }]
        assert cloud_calls(emu) == []
        store = Store(db)
        assert store.timeline(OTHER_IID) == [] and store.instance(OTHER_IID) is None
        store.close()


# --- other accounts: rejected by every function --------------------------------------------------


FOREIGN_CASES = [
    ("drain_spot", "cloudmonitor/spot_interruption_foreign_account.json"),
    ("drain_spot", "eventbridge/spot_interruption_foreign_account.json"),
    ("auto_start", "cloudmonitor/state_stopped_foreign_account.json"),
    ("auto_start", "eventbridge/state_stopped_foreign_account.json"),
    ("record_lifecycle", "cloudmonitor/state_running_foreign_account.json"),
    ("record_lifecycle", "eventbridge/state_running_foreign_account.json"),
]


@pytest.mark.parametrize(("function", "fixture"), FOREIGN_CASES)
def test_a_foreign_account_event_is_rejected_and_not_acted_on(
        function: str, fixture: str, monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    """GIVEN the deployment's account from the FC context WHEN another account's event arrives
    THEN it is rejected with its reason: no cloud call, nothing stored, no drain."""
    with emulator("spot.yaml", monkeypatch, region=HOME) as emu:
        before = emu.state()["load_balancers"]
        result = run(function, emu, db, event_bytes(fixture))
        event = event_of(fixture)
        assert result["refused"] == [{
            "event_id": event.event_id, "instance_id": event.instance_id, "name": event.full_name,
            "region": HOME, "account_id": FOREIGN, "decision": "rejected",
            "reason": f"account {FOREIGN} is not this deployment's ({OURS}, from context)",
        }]
        assert result.get("drains", []) == [] and result.get("decisions", []) == []
        assert result.get("recorded", 0) == 0
        assert cloud_calls(emu) == []
        assert emu.state()["load_balancers"] == before
        store = Store(db)
        assert store.timeline(str(event.instance_id)) == []
        store.close()


def test_the_account_setting_wins_over_the_fc_context(monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    """With ECS_EVENT_OPS_ACCOUNT_ID set, the context's account is another account."""
    with emulator("basic.yaml", monkeypatch, region=HOME) as emu:
        body = json.dumps([json.loads(event_bytes("cloudmonitor/state_stopped_foreign_account.json")),
                           json.loads(event_bytes("cloudmonitor/state_stopped.json"))]).encode()
        result = run("record_lifecycle", emu, db, body, ECS_EVENT_OPS_ACCOUNT_ID=FOREIGN)
        assert result["recorded"] == 1
        assert [(r["account_id"], r["decision"], r["reason"]) for r in result["refused"]] == [
            (OURS, "rejected", f"account {OURS} is not this deployment's ({FOREIGN}, from setting)"),
        ]


def test_without_any_known_account_events_are_accepted_and_the_result_says_so(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A local run with no account anywhere: nothing can be rejected, and the result warns."""
    monkeypatch.setenv("ECS_EVENT_OPS_DB_URL", f"sqlite:///{tmp_path / 'local.sqlite3'}")
    for name in ("FC_ACCOUNT_ID", "ECS_EVENT_OPS_ACCOUNT_ID", "ECS_EVENT_OPS_REGIONS",
                 "ECS_EVENT_OPS_CLOUD_URL"):
        monkeypatch.delenv(name, raising=False)
    handler = load_function("record_lifecycle").module.handler
    # A Stopped event needs no snapshot: no cloud call is attempted.
    result = handler(event_bytes("cloudmonitor/state_stopped_foreign_account.json"),
                     SimpleNamespace(request_id="r-local"))
    assert (result["recorded"], result["refused"]) == (1, [])
    assert result["warnings"] == [
        "deployment account unknown (no ECS_EVENT_OPS_ACCOUNT_ID, no account in the FC context "
        "or FC_ACCOUNT_ID): events of every account are accepted",
    ]
