"""Issue 15: ``tools.doctor``, settings nobody reads, honest defaults on FC, data-only ids,
read-only ``tools.lifecycle`` (store named, never created), rejected payloads kept and listed,
and the decision / incident / drain history. One test per trap of the issue."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import shared.settings as settings_module
import shared.store as store_module
from shared import notify
from shared.events import parse
from shared.settings import Settings, SettingsError, default_db_url, known_variables
from shared.store import Store
from tests.helpers import emulator_for
from tools import doctor, lifecycle
from tools.emulator import Emulator
from tools.invoke import invoke_local

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
REPO = Path(__file__).resolve().parent.parent
STOPPED_WEB_2 = "i-bp1aaaaaaaaaaaaaaaa2"  # basic.yaml: opted in (auto-start: always), stopped here


def run_doctor(*argv: str, environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = doctor.main(list(argv), environ=environ, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def findings(out: str) -> dict[tuple[str, str], tuple[str, str]]:
    body = json.loads(out)
    return {(f["check"], f["subject"]): (f["status"], f["message"]) for f in body["findings"]}


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator_for("basic.yaml", monkeypatch) as emulator:
        yield emulator


def signing(emu: Emulator, tmp_path: Path) -> dict[str, str]:
    """A clean environment: the emulator's keys and a store of this test only."""
    return {**emu.signing_environment(), "ECS_EVENT_OPS_DB_URL": f"sqlite:///{tmp_path / 's.db'}"}


# --- settings: unknown names are errors, with the nearest known name --------------------------


def test_a_misspelled_setting_is_an_error_naming_the_nearest_known_one() -> None:
    """GIVEN ECS_EVENT_OPS_DRYRUN=true WHEN settings are read THEN an error suggesting DRY_RUN."""
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"ECS_EVENT_OPS_DRYRUN": "true"})
    assert str(raised.value) == (
        "ECS_EVENT_OPS_DRYRUN is not a setting of ecs-event-ops; did you mean ECS_EVENT_OPS_DRY_RUN?")
    with pytest.raises(SettingsError, match=r"^ECS_EVENT_OPS_ZZZ is not a setting of ecs-event-ops$"):
        Settings.from_env({"ECS_EVENT_OPS_ZZZ": "1"})


def test_the_function_refuses_to_run_with_a_misspelled_setting(tmp_path: Path) -> None:
    """GIVEN the trap of the issue (DRYRUN typo) WHEN auto_start is invoked THEN it fails and
    does not act, naming the variable."""
    result = invoke_local("auto_start", b"[]", cloud_url="http://127.0.0.1:9",
                          db_url=f"sqlite:///{tmp_path / 'x.db'}",
                          env={"ECS_EVENT_OPS_DRYRUN": "true"})
    assert isinstance(result.error, SettingsError)
    assert "did you mean ECS_EVENT_OPS_DRY_RUN?" in str(result.error)


def test_notifier_variables_are_known_from_their_one_declaration() -> None:
    """GIVEN the channel variables shared.notify reads WHEN settings are read THEN no error."""
    assert notify.VARIABLES == (
        "ECS_EVENT_OPS_NOTIFY_DINGTALK_URL", "ECS_EVENT_OPS_NOTIFY_LARK_URL",
        "ECS_EVENT_OPS_NOTIFY_WECOM_URL", "ECS_EVENT_OPS_NOTIFY_SLACK_URL",
        "ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL", "ECS_EVENT_OPS_NOTIFY_DINGTALK_SECRET",
        "ECS_EVENT_OPS_NOTIFY_LARK_SECRET")
    assert set(notify.VARIABLES) <= set(known_variables())
    Settings.from_env(dict.fromkeys(notify.VARIABLES, "https://example.invalid/hook"))
    with pytest.raises(SettingsError, match="did you mean ECS_EVENT_OPS_NOTIFY_SLACK_URL"):
        Settings.from_env({"ECS_EVENT_OPS_NOTIFY_SLAK_URL": "https://example.invalid"})


def test_an_unusable_log_level_is_an_error() -> None:
    with pytest.raises(SettingsError, match="LOG_LEVEL must be one of"):
        Settings.from_env({"ECS_EVENT_OPS_LOG_LEVEL": "loud"})


# --- honest defaults --------------------------------------------------------------------------


def test_on_fc_without_a_shared_store_the_functions_run_dry_unless_opted_in() -> None:
    """GIVEN FC and no DB URL WHEN settings are read THEN dry run with the reason; opting in or
    naming a database acts."""
    fc = {"FC_FUNC_CODE_PATH": "/code/"}
    forced = Settings.from_env(fc)
    assert (forced.db_url, forced.dry_run) == ("sqlite:////tmp/ecs-event-ops.sqlite3", True)
    assert forced.dry_run_reason is not None
    assert forced.dry_run_reason.startswith("no store shared by the functions")
    opted = Settings.from_env({**fc, "ECS_EVENT_OPS_ALLOW_LOCAL_STORE": "true"})
    assert (opted.dry_run, opted.dry_run_reason) == (False, None)
    shared_db = Settings.from_env({**fc, "ECS_EVENT_OPS_DB_URL": "postgresql+psycopg://u@db/x"})
    assert (shared_db.dry_run, shared_db.dry_run_reason) == (False, None)
    local = Settings.from_env({})  # locally the default store is one file for every function
    assert (local.dry_run, local.dry_run_reason) == (False, None)


def test_auto_start_on_fc_without_a_shared_store_does_not_start_and_says_why(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GIVEN FC, no ECS_EVENT_OPS_DB_URL WHEN a Stopped event of an opted-in instance arrives
    THEN the decision is a dry run whose reason names the unshared store; nothing started."""
    unshared = f"sqlite:///{tmp_path / 'per-instance.sqlite3'}"  # stands for /tmp on FC
    monkeypatch.setattr(settings_module, "FC_LOCAL_DB_URL", unshared)
    monkeypatch.setenv("FC_FUNC_CODE_PATH", "/code/")
    monkeypatch.delenv("ECS_EVENT_OPS_DB_URL", raising=False)
    monkeypatch.setenv("ECS_EVENT_OPS_CLOUD_URL", emu.url)
    monkeypatch.setenv("ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S", "0")
    assert default_db_url({"FC_FUNC_CODE_PATH": "/code/"}) == unshared
    emu.stop_instance(STOPPED_WEB_2, by="user")
    body = json.dumps({
        "product": "ECS", "resourceId": f"acs:ecs:cn-hangzhou:1234567890123456:instance/{STOPPED_WEB_2}",
        "level": "INFO", "instanceName": "web-2", "regionId": "cn-hangzhou",
        "name": "Instance:StateChange", "id": "doctor-test-stop-1", "status": "Normal",
        "eventTime": (datetime.now(timezone.utc) - timedelta(seconds=5)).strftime("%Y%m%dT%H%M%S.000+0000"),
        "content": {"resourceId": STOPPED_WEB_2, "resourceType": "ALIYUN::ECS::Instance", "state": "Stopped"},
    }).encode()
    from functions.auto_start.index import handler

    answer = handler(body, SimpleNamespace(request_id="r-1", account_id="1234567890123456"))
    (decision,) = answer["decisions"]
    assert decision["decision"] == "dry-run"
    assert decision["reason"].endswith(
        "[dry run: no store shared by the functions (ECS_EVENT_OPS_DB_URL unset: each function "
        "instance keeps its own SQLite under /tmp, so the platform-stop guard and the once-only "
        "claims cannot work); acting is off until ECS_EVENT_OPS_DB_URL names a shared database "
        "or ECS_EVENT_OPS_ALLOW_LOCAL_STORE=true]")
    assert emu.instance(STOPPED_WEB_2)["status"] == "Stopped"
    assert [c.action for c in emu.calls() if c.action.startswith("StartInstance")] == ["StartInstance"]


def test_data_only_deliveries_get_one_id_per_occurrence(tmp_path: Path) -> None:
    """GIVEN the same $.data delivered for two stops WHEN recorded THEN two events, not a
    duplicate; one delivery parsed twice at the same moment keeps its id."""
    data = json.dumps({"resourceId": STOPPED_WEB_2, "state": "Stopped"})
    first, second = (
        parse(data, data_only_type="ecs:Instance:StateChange", received_at=NOW + timedelta(minutes=m)).events[0]
        for m in (0, 7)
    )
    again = parse(data, data_only_type="ecs:Instance:StateChange", received_at=NOW).events[0]
    assert first.event_id != second.event_id
    assert again.event_id == first.event_id
    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        assert len(store.record([first, second]).inserted) == 2
        assert [e.event_id for e in store.timeline(STOPPED_WEB_2)] == [first.event_id, second.event_id]
    finally:
        store.close()


# --- tools.lifecycle: read-only, names its store -----------------------------------------------


def test_lifecycle_never_creates_a_store_and_names_the_one_it_reads(tmp_path: Path) -> None:
    """GIVEN a mistyped path WHEN queried THEN exit 2 naming it, nothing created (not even the
    directory); a real store is named on stderr."""
    missing = tmp_path / "typo" / "store.sqlite3"
    out, err = io.StringIO(), io.StringIO()
    code = lifecycle.main(["--db", f"sqlite:///{missing}", "released"], stdout=out, stderr=err)
    assert code == 2
    assert out.getvalue() == ""
    assert err.getvalue().splitlines() == [
        f"store: sqlite:///{missing}",
        f"python -m tools.lifecycle: error: no store at {missing} (nothing was created): check "
        "--db or ECS_EVENT_OPS_DB_URL",
    ]
    assert not missing.parent.exists()
    code = lifecycle.main(["--db", "sqlite://", "stats"], stdout=out, stderr=io.StringIO())
    assert code == 2


def test_lifecycle_reads_by_default_the_store_the_functions_and_the_demo_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default of tools.lifecycle, tools.invoke and tools.demo is one file, and it is said."""
    from tools import demo
    from tools.invoke import fc_environment

    monkeypatch.delenv("ECS_EVENT_OPS_DB_URL", raising=False)
    expected = f"sqlite:///{REPO / '.data' / 'ecs-event-ops.sqlite3'}"
    assert lifecycle._default_db_url() == expected
    assert fc_environment("auto_start", "python3.10", base={})["ECS_EVENT_OPS_DB_URL"] == expected
    assert expected == demo.DEFAULT_DB_URL
    err = io.StringIO()
    lifecycle.main(["stats"], stdout=io.StringIO(), stderr=err)
    assert err.getvalue().splitlines()[0] == f"store: {expected} (default)"


def test_a_password_in_the_store_url_is_not_printed() -> None:
    assert lifecycle.redact_url("postgresql+psycopg://ops:s3cret@db:5432/x") == (
        "postgresql+psycopg://ops:***@db:5432/x")


# --- rejected payloads: logged at WARNING, kept bounded, listable ------------------------------


def test_a_rejected_element_is_a_warning_and_its_payload_is_kept_and_listed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    body = b'[{"hello": 1}]'
    with caplog.at_level(logging.INFO, logger="ecs_event_ops"):
        result = invoke_local("record_lifecycle", body, cloud_url="http://127.0.0.1:9", db_url=url)
    assert result.error is None
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.getMessage() == "bad element"] == [
        ("WARNING", "bad element")]
    out, err = io.StringIO(), io.StringIO()
    assert lifecycle.main(["--db", url, "rejected", "--format", "json"], stdout=out, stderr=err) == 0
    (item,) = json.loads(out.getvalue())["items"]
    assert (item["function"], item["payload"], item["size"], item["truncated"]) == (
        "record_lifecycle", '[{"hello": 1}]', 14, False)
    assert item["reasons"] == [f"element 0: {result.value['bad'][0]['reason']}"]


def test_rejected_payloads_are_bounded_in_size_count_and_age(
    store_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_module, "REJECTED_MAX_COUNT", 3)
    store = Store(store_url, clock=lambda: NOW)
    try:
        assert store.keep_rejected("auto_start", "x" * 20000, ["r"], now=NOW)
        assert not store.keep_rejected("auto_start", "x" * 20000, ["r"], now=NOW)  # same payload
        (kept,) = store.ledger_history(["rejected"])
        assert (len(kept.data["payload"]), kept.data["size"], kept.data["truncated"]) == (16384, 20000, True)
        for n in range(4):
            assert store.keep_rejected("auto_start", f"payload {n}", ["r"], now=NOW)
        assert [e.data["payload"] for e in store.ledger_history(["rejected"])] == [
            "payload 3", "payload 2", "payload 1"]
    finally:
        store.close()
    later = NOW + timedelta(days=31)
    store = Store(store_url, clock=lambda: later)
    try:
        assert store.keep_rejected("auto_start", "new", ["r"], now=later)
        assert [e.data["payload"] for e in store.ledger_history(["rejected"])] == ["new"]
    finally:
        store.close()


# --- history -----------------------------------------------------------------------------------


def seeded_history(url: str) -> None:
    def at(moment: datetime) -> Store:
        return Store(url, clock=lambda: moment)

    s = at(NOW - timedelta(days=2))
    s.ledger_claim("start:i-old00001:e1", kind="start_attempt", instance_id="i-old00001",
                   status="started", data={"reason": "unexpected stop (ActionTrail: none)", "stop_id": "e1"})
    s.close()
    s = at(NOW - timedelta(hours=1))
    s.ledger_claim("start:i-new00001:e2", kind="start_attempt", instance_id="i-new00001",
                   status="failed", data={"reason": "always: any stop", "stop_id": "e2"})
    s.ledger_claim("dryrun:start:i-new00002:e3", kind="dry_run", instance_id="i-new00002",
                   status="dry_run_ok", data={"reason": "always: any stop", "stop_id": "e3"})
    s.ledger_claim("incident:i-new00001:e2", kind="incident", instance_id="i-new00001",
                   status="escalated", data={"stop_time": "2026-11-30T10:59:00Z", "live_status": "Stopped"})
    s.ledger_claim("drain:i-spot0001:1", kind="drain", instance_id="i-spot0001", status="done",
                   data={"outcome": "drained", "region": "cn-hangzhou", "removed": [{"a": 1}, {"b": 2}],
                         "notice_time": "2026-11-30T11:00:00Z", "deadline": "2026-11-30T11:05:00Z"})
    s.close()


def history(url: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = lifecycle.main(["--db", url, *argv], stdout=out, stderr=err, now=lambda: NOW)
    return code, out.getvalue(), err.getvalue()


def test_decisions_history_with_filters(store_url: str) -> None:
    url = store_url
    seeded_history(url)
    code, out, _ = history(url, "decisions", "--format", "json")
    assert code == 0
    assert [(i["key"], i["decision"]) for i in json.loads(out)["items"]] == [
        ("dryrun:start:i-new00002:e3", "dry_run_ok"), ("start:i-new00001:e2", "failed"),
        ("start:i-old00001:e1", "started")]
    code, out, _ = history(url, "decisions", "--since", "24h", "--decision", "failed", "--format", "csv")
    assert out.splitlines() == [
        "time,instance_id,kind,decision,reason,stop_id,key",
        "2026-11-30T11:00:00.000Z,i-new00001,start_attempt,failed,always: any stop,e2,start:i-new00001:e2"]
    code, out, _ = history(url, "decisions", "--instance", "i-old00001")
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["i-old00001"]
    assert history(url, "decisions", "--instance", "web-1")[0] == 2
    assert history(url, "decisions", "--since", "yesterday")[0] == 2


def test_incidents_and_drains_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    seeded_history(url)
    _, out, _ = history(url, "incidents", "--format", "json")
    (incident,) = json.loads(out)["items"]
    assert (incident["instance_id"], incident["status"], incident["live_status"]) == (
        "i-new00001", "escalated", "Stopped")
    _, out, _ = history(url, "drains", "--format", "csv")
    assert out.splitlines()[1] == (
        "2026-11-30T11:00:00Z,i-spot0001,done,drained,cn-hangzhou,2026-11-30T11:05:00Z,2,0,-,-,drain:i-spot0001:1")
    assert history(url, "drains", "--decision", "partial")[1] == "(none)\n"


# --- doctor ------------------------------------------------------------------------------------


def test_doctor_passes_against_the_emulator(emu: Emulator, tmp_path: Path) -> None:
    statuses = {i["id"]: i["status"] for i in emu.state()["instances"]}
    code, out, err = run_doctor("--cloud", emu.url, "--format", "json", environ=signing(emu, tmp_path))
    assert code == 0, out
    found = findings(out)
    assert found[("settings", "variables")] == ("ok", "1 set, all known, values valid")
    assert found[("credentials", "source")] == (
        "ok", "environment ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI...01: AccessKey pair")
    host = emu.url.split("://")[1]
    for product, action in (("ecs", "DescribeInstances"), ("slb", "DescribeLoadBalancers"),
                            ("actiontrail", "LookupEvents"), ("cms", "DescribeMetricLast")):
        status, message = found[(("endpoints", f"{product} cn-hangzhou"))]
        assert (status, message.split(" answered")[0]) == ("ok", f"{host}: signed {action}")
    # ALB and NLB are not in ECS_EVENT_OPS_LB_PRODUCTS (default clb): their hosts are not asked
    assert {s for c, s in found if c == "endpoints"} == {
        f"{p} cn-hangzhou" for p in ("ecs", "slb", "actiontrail", "cms")}
    assert found[("grants", "record_lifecycle")] == (
        "ok", "with the keys doctor runs with (LTAI...01); verified DescribeInstances, "
        "DescribeInstanceRamRole, DescribeUserData, DescribeLaunchTemplateVersions")
    assert found[("grants", "lifecycle_api")] == ("ok", "calls no cloud API")
    status, message = found[("grants", "drain_spot")]
    assert status == "warn"
    assert "cannot be verified without acting (no DryRun): SetBackendServers" in message
    assert found[("store", f"sqlite:///{tmp_path / 's.db'}")][0] == "warn"  # not created yet
    assert not (tmp_path / "s.db").exists()
    first = err.splitlines()[0]  # "doctor [1/N] ...": N grows as checks are registered
    assert (first.split("/")[0], first.split("] ")[1]) == (
        "doctor [1", "settings: every ECS_EVENT_OPS_* variable is known and its value usable")
    writes = [c.action for c in emu.calls()
              if not c.action.startswith(("Describe", "LookupEvents", "List", "Get"))]
    assert set(writes) <= {"StartInstance", "StartInstances", "RunInstances"}  # DryRun only
    assert all(c.params.get("DryRun") == "True" for c in emu.calls()
               if c.action == "RunInstances")
    assert {i: emu.instance(i)["status"] for i in statuses} == statuses


def test_doctor_fails_on_the_traps(emu: Emulator, tmp_path: Path) -> None:
    """A misspelled variable, a refused grant (Forbidden.RAM on the DryRun) and, judged as
    deployed on FC, the per-instance store: each a fail, exit 1."""
    env = {**signing(emu, tmp_path), "ECS_EVENT_OPS_DRYRUN": "true"}
    del env["ECS_EVENT_OPS_DB_URL"]
    emu.set_faults(fail_next={"StartInstances": ["Forbidden.RAM"]})
    code, out, _ = run_doctor("--cloud", emu.url, "--fc", "--format", "json", environ=env)
    assert code == 1
    found = findings(out)
    assert found[("settings", "ECS_EVENT_OPS_DRYRUN")] == (
        "fail", "ECS_EVENT_OPS_DRYRUN is not a setting of ecs-event-ops; did you mean ECS_EVENT_OPS_DRY_RUN?")
    status, message = found[("store", "shared")]
    assert (status, message.split(" (")[0]) == ("fail", "no store shared by the functions")
    status, message = found[("grants", "auto_start")]
    assert status == "fail"
    assert "FAILED StartInstances (refused: Forbidden.RAM" in message
    code, out, _ = run_doctor("--fc", "--check", "store", "--format", "json",
                              environ={"ECS_EVENT_OPS_ALLOW_LOCAL_STORE": "true"})
    assert (code, findings(out)[("store", "shared")][0]) == (0, "warn")


def test_doctor_reports_a_bad_key_at_the_endpoints(emu: Emulator, tmp_path: Path) -> None:
    env = {**signing(emu, tmp_path), "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "wrong"}
    code, out, _ = run_doctor("--cloud", emu.url, "--check", "endpoints", "--format", "json", environ=env)
    assert code == 1
    status, message = findings(out)[("endpoints", "ecs cn-hangzhou")]
    assert status == "fail"
    assert "DescribeInstances failed: SignatureDoesNotMatch" in message


def test_doctor_checks_the_alb_nlb_endpoints_when_in_scope_and_reports_a_failing_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """GIVEN ALB and NLB in ECS_EVENT_OPS_LB_PRODUCTS over two regions WHEN doctor checks the
    endpoints THEN each region's ALB, NLB and CloudMonitor host answers a signed read through
    the functions' adapters (ListServerGroups for the configured group, DescribeMetricLast);
    refused there (NLB 403 Forbidden.NoPermission, CloudMonitor 403 AccessForbidden, both
    documented) THEN those endpoints fail with the code, the others stay ok, exit 1."""
    with emulator_for("lb.yaml", monkeypatch, lb_job_s=0.05) as emu:
        env = {**signing(emu, tmp_path), "ECS_EVENT_OPS_LB_PRODUCTS": "clb,alb,nlb",
               "ECS_EVENT_OPS_NLB_GROUP_IDS": "sgp-bp1tcp0000000001",
               "ECS_EVENT_OPS_REGIONS": "cn-hangzhou,cn-shanghai"}
        code, out, _ = run_doctor("--cloud", emu.url, "--check", "endpoints", "--format", "json",
                                  environ=env)
        assert code == 0, out
        found = findings(out)
        host = emu.url.split("://")[1]
        for region in ("cn-hangzhou", "cn-shanghai"):
            for product, action in (("alb", "ListServerGroups"), ("nlb", "ListServerGroups"),
                                    ("cms", "DescribeMetricLast")):
                status, message = found[("endpoints", f"{product} {region}")]
                assert (status, message.split(" answered")[0]) == (
                    "ok", f"{host}: signed {action}"), message
        sent = [c for c in emu.calls() if c.action in ("ListServerGroups", "DescribeMetricLast")]
        assert sorted((c.product, c.action, c.status) for c in sent) == sorted(
            (p, a, 200) for p, a in (("alb", "ListServerGroups"), ("nlb", "ListServerGroups"),
                                     ("cms", "DescribeMetricLast")) for _ in range(2))
        assert {c.params.get("ServerGroupIds.1") for c in sent if c.product == "nlb"} == {
            "sgp-bp1tcp0000000001"}
        assert {c.params.get("ServerGroupIds.1") for c in sent if c.product == "alb"} == {
            doctor.PROBE_SERVER_GROUP_ID}
        emu.set_faults(fail_next={"nlb:ListServerGroups": ["Forbidden.NoPermission"],
                                  "DescribeMetricLast": ["AccessForbidden"]})
        code, out, _ = run_doctor("--cloud", emu.url, "--check", "endpoints", "--format", "json",
                                  environ={**env, "ECS_EVENT_OPS_REGIONS": "cn-hangzhou"})
        assert code == 1
        found = findings(out)
        status, message = found[("endpoints", "nlb cn-hangzhou")]
        assert status == "fail"
        assert message.startswith(f"{host}: ListServerGroups failed: Forbidden.NoPermission")
        status, message = found[("endpoints", "cms cn-hangzhou")]
        assert status == "fail"
        assert message.startswith(f"{host}: DescribeMetricLast failed: AccessForbidden")
        assert {s for (c, s), (st, _) in found.items() if c == "endpoints" and st == "ok"} == {
            f"{p} cn-hangzhou" for p in ("ecs", "slb", "alb", "actiontrail")}


def test_doctor_sends_nothing_without_consent_and_refuses_bad_input() -> None:
    code, out, _ = run_doctor("--format", "json", environ={})
    found = findings(out)
    assert found[("endpoints", "-")][0] == "skip"
    assert found[("grants", "-")][0] == "skip"
    assert found[("credentials", "source")][0] == "fail"
    assert code == 1
    for argv in (["--cloud", "http://127.0.0.1:9", "--real-cloud"], ["--cloud", "ftp://x"],
                 ["--check", "nope"]):
        code, out, err = run_doctor(*argv, environ={})
        assert (code, out) == (2, "")
        assert err.startswith("python -m tools.doctor: error: ")


def test_dry_run_actions_are_exactly_the_declared_actions_whose_api_has_dry_run() -> None:
    from tools.emulator.contract import load_contract
    from tools.ram_policy import declared_actions

    contract = load_contract()
    products = {"ecs": "ecs", "slb": "slb", "actiontrail": "actiontrail", "cms": "cms",
                "alb": "alb", "nlb": "nlb"}
    with_dry_run = set()
    for action in {a for actions in declared_actions().values() for a in actions}:
        product, name = action.split(":", 1)
        api: dict[str, Any] | None = contract.api(products[product], name)
        assert api is not None, action
        if any(p.get("name") == "DryRun" for p in api.get("parameters", [])):
            with_dry_run.add(action)
    # reads are verified by the call itself (DescribeInstances has DryRun too)
    assert with_dry_run - set(doctor.PROBED_READS) == set(doctor.DRY_RUN_ACTIONS)
    # each probed read is a function's grant, and the endpoint probe of its product is that call
    declared = {a for actions in declared_actions().values() for a in actions}
    assert set(doctor.PROBED_READS) <= declared
    assert {f"{p}:{doctor.PROBE_ACTIONS[p]}" for p in doctor.PROBED_READS.values()} == set(
        doctor.PROBED_READS)


def test_events_tool_formats_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """tools.events: --format csv|table|json like the other tools; refused elements exit 2."""
    from tools import events

    code = events.main(["--format", "csv", "tests/fixtures/events/batch/with_bad_elements.json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out.splitlines() == [
        "kind,name,status,instance_id,state,action,event_time",
        "state_change,Instance:StateChange,-,i-bp1ecr1234abcd5go2go,Stopped,-,2019-04-09T04:18:26.922Z",
        "state_change,Instance:StateChange,-,i-bp1ecr1234abcd5go2go,Stopped,-,2019-04-09T04:18:26.922Z",
    ]
    assert [line.split(": ")[1] for line in err.splitlines()] == ["element 1", "element 2"]
    assert events.main(["tests/fixtures/events/cloudmonitor/state_stopped.json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "Stopped"


def test_a_refused_cloud_call_is_logged_at_error_with_its_reason(
    emu: Emulator, caplog: pytest.LogCaptureFixture,
) -> None:
    """GIVEN a wrong secret WHEN a call is refused THEN an ERROR line names the action and code."""
    from shared.clients import AuthError, Clients, Credentials

    key_id = emu.signing_environment()["ALIBABA_CLOUD_ACCESS_KEY_ID"]
    clients = Clients.from_settings(Settings.from_env({}, cloud_url=emu.url), Credentials(key_id, "wrong"))
    with caplog.at_level(logging.INFO, logger="ecs_event_ops"), pytest.raises(AuthError):
        clients.ecs.describe_instances([STOPPED_WEB_2])
    failed = [r for r in caplog.records if r.getMessage() == "cloud call failed"]
    assert [(r.levelname, r.ecs_fields["action"], r.ecs_fields["code"]) for r in failed] == [  # type: ignore[attr-defined]
        ("ERROR", "DescribeInstances", "SignatureDoesNotMatch")]


def test_doctor_verifies_the_alb_nlb_writes_by_dry_run(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    """GIVEN ALB and NLB server groups with members WHEN doctor checks the grants THEN each
    ALB/NLB write of drain_spot is verified by a DryRun on a member (ACK's group skipped), and
    no group changed."""
    with emulator_for("lb.yaml", monkeypatch, lb_job_s=0.05) as emu:
        before = {g: emu.lb_group(g)["members"] for g in ("sgp-bp1plain000000001",
                                                          "sgp-bp1tcp0000000001")}
        _, out, _ = run_doctor("--cloud", emu.url, "--format", "json",
                               environ=signing(emu, tmp_path))
        for function in ("drain_spot", "sweep"):
            _, message = findings(out)[("grants", function)]
            verified = message.split("verified ", 1)[1].split(";")[0].split(", ")
            assert {"UpdateServerGroupServersAttribute", "RemoveServersFromServerGroup"} <= set(
                verified), message
        _, message = findings(out)[("grants", "sweep")]
        assert "AddServersToServerGroup" in message.split("verified ", 1)[1].split(";")[0]
        dry = [c for c in emu.calls() if c.product in ("alb", "nlb")
               and c.action.endswith(("Attribute", "FromServerGroup", "ToServerGroup"))]
        assert len(dry) == 6 and all(c.params.get("DryRun", "").lower() == "true"
                                     and c.code == "DryRunOperation" for c in dry)
        assert "sgp-bp1ack0000000001" not in {c.params.get("ServerGroupId") for c in dry}
        assert {g: emu.lb_group(g)["members"] for g in before} == before
        assert emu.lb_jobs("alb") == [] and emu.lb_jobs("nlb") == []
