"""Endpoints and credentials of the SDK clients, without any network access.

The SDK client is built (no call is made) and the host it resolved is read back from its
``_endpoint``; the expectations come from ../shared/api-meta (always beside the repository).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.clients import AuthError, Credentials, Product, build_sdk_client
from shared.endpoints import METADATA_PRODUCTS, VPC_ENDPOINTS
from shared.settings import Settings, SettingsError

API_META = Path(__file__).resolve().parent.parent.parent / "shared" / "api-meta"
ENDPOINTS = json.loads((API_META / "endpoints.json").read_text())["products"]
PRODUCTS: tuple[Product, ...] = ("ecs", "slb", "alb", "nlb", "actiontrail")
KEYS = Credentials("LTAIexampleKey01", "example-secret")
# Where Alibaba's CLI metadata (endpoints.json regional_endpoints) names another public host than
# the API's own documentation (api-meta <product>.json "endpoints") and the SDK: the SDK's
# choice is kept. (product, region) -> (CLI metadata host, documented and chosen host)
CLI_PUBLIC_DISAGREEMENTS = {
    ("ecs", "us-east-1"): ("ecs.aliyuncs.com", "ecs.us-east-1.aliyuncs.com"),
    ("ecs", "us-west-1"): ("ecs-cn-hangzhou.aliyuncs.com", "ecs.us-west-1.aliyuncs.com"),
}

# A region api-meta does not list for the product but the SDK's own endpoint table does
# (alibabacloud_ecs20140526 Client._endpoint_map): the SDK's host is kept.
SDK_ONLY = {("ecs", "cn-north-2-gov-1"): "ecs.aliyuncs.com"}


def _documented(product: str) -> dict[str, str]:
    meta = json.loads((API_META / f"{METADATA_PRODUCTS[product]}.json").read_text())
    return {e["regionId"]: e["endpoint"] for e in meta["endpoints"]}


def _regions(product: str) -> list[str]:
    cli = ENDPOINTS[METADATA_PRODUCTS[product]]
    return sorted(set(_documented(product)) | set(cli["regional_endpoints"])
                  | set(cli["regional_vpc_endpoints"]))


PAIRS = [(p, r) for p in PRODUCTS for r in _regions(p)]


def _host(product: Product, env: dict[str, str] | None = None, region: str | None = None,
          **overrides: Any) -> str:
    settings = Settings.from_env(env or {}, **overrides)
    return str(build_sdk_client(product, settings, KEYS, region)._endpoint)


def test_the_committed_vpc_table_equals_the_metadata() -> None:
    """GIVEN ../shared/api-meta/endpoints.json THEN shared/endpoints.py holds exactly its VPC
    hosts for the products the functions call (CloudMonitor's metrics included)."""
    assert set(VPC_ENDPOINTS) == {*PRODUCTS, "cms"}
    for product in (*PRODUCTS, "cms"):
        expected = ENDPOINTS[METADATA_PRODUCTS[product]]["regional_vpc_endpoints"]
        assert dict(VPC_ENDPOINTS[product]) == expected


@pytest.mark.parametrize(("product", "region"), PAIRS, ids=[f"{p}-{r}" for p, r in PAIRS])
def test_public_host_of_every_region_and_product(product: Product, region: str) -> None:
    """GIVEN no cloud_url and the public network THEN the SDK's host: the documented one where
    api-meta lists the region, else its regional rule <product>.<region>.aliyuncs.com (one
    region excepted, SDK_ONLY)."""
    rule = SDK_ONLY.get((product, region), f"{product}.{region}.aliyuncs.com")
    expected = _documented(product).get(region, rule)
    assert _host(product, region=region) == expected


def test_public_hosts_differ_from_the_cli_metadata_only_where_listed() -> None:
    """GIVEN endpoints.json's public hosts THEN the chosen host equals them except for the
    listed pairs, where the API's own documentation (and the SDK) say otherwise."""
    differences = {}
    for product in PRODUCTS:
        for region, host in ENDPOINTS[METADATA_PRODUCTS[product]]["regional_endpoints"].items():
            chosen = _host(product, region=region)
            if chosen != host:
                differences[(product, region)] = (host, chosen)
    assert differences == CLI_PUBLIC_DISAGREEMENTS


def test_the_default_region_uses_the_hosts_that_are_not_product_dot_region() -> None:
    """GIVEN the default region cn-hangzhou THEN CLB is slb.aliyuncs.com and ECS is
    ecs-cn-hangzhou.aliyuncs.com (the hand-built slb.cn-hangzhou… was wrong)."""
    assert [_host(p) for p in PRODUCTS] == [
        "ecs-cn-hangzhou.aliyuncs.com", "slb.aliyuncs.com", "alb.cn-hangzhou.aliyuncs.com",
        "nlb.cn-hangzhou.aliyuncs.com", "actiontrail.cn-hangzhou.aliyuncs.com"]


@pytest.mark.parametrize(("product", "region"), PAIRS, ids=[f"{p}-{r}" for p, r in PAIRS])
def test_vpc_host_of_every_region_and_product(product: Product, region: str) -> None:
    """GIVEN ECS_EVENT_OPS_ENDPOINT_NETWORK=vpc THEN the documented VPC host, and a region
    without one is a configuration error, never a public host."""
    env = {"ECS_EVENT_OPS_ENDPOINT_NETWORK": "vpc"}
    expected = ENDPOINTS[METADATA_PRODUCTS[product]]["regional_vpc_endpoints"].get(region)
    if expected is not None:
        assert _host(product, env, region=region) == expected
    else:
        with pytest.raises(SettingsError, match=f"no documented VPC endpoint of {product} in "
                           f"{region}: set ECS_EVENT_OPS_ENDPOINT_{product.upper()}"):
            _host(product, env, region=region)


def test_a_per_product_override_wins_over_the_network_and_cloud_url_over_all() -> None:
    """GIVEN ECS_EVENT_OPS_ENDPOINT_<PRODUCT> THEN that host for that product only (https, or
    the URL's scheme); GIVEN cloud_url THEN the emulator for every product."""
    env = {"ECS_EVENT_OPS_ENDPOINT_NETWORK": "vpc",
           "ECS_EVENT_OPS_ENDPOINT_SLB": "slb-proxy.internal:8443",
           "ECS_EVENT_OPS_ENDPOINT_ECS": "http://127.0.0.1:8123"}
    settings = Settings.from_env(env)
    built = {p: build_sdk_client(p, settings, KEYS) for p in PRODUCTS}
    assert {p: (c._endpoint, c._protocol) for p, c in built.items()} == {
        "ecs": ("127.0.0.1:8123", "http"),
        "slb": ("slb-proxy.internal:8443", "https"),
        "alb": ("alb-vpc.cn-hangzhou.aliyuncs.com", "https"),
        "nlb": ("nlb-vpc.cn-hangzhou.aliyuncs.com", "https"),
        "actiontrail": ("actiontrail-vpc.cn-hangzhou.aliyuncs.com", "https"),
    }
    local = settings.with_(cloud_url="http://127.0.0.1:9000")
    assert {build_sdk_client(p, local, KEYS)._endpoint for p in PRODUCTS} == {"127.0.0.1:9000"}


@pytest.mark.parametrize(("env", "message"), [
    ({"ECS_EVENT_OPS_ENDPOINT_NETWORK": "private"},
     "ECS_EVENT_OPS_ENDPOINT_NETWORK must be 'public' or 'vpc', not 'private'"),
    ({"ECS_EVENT_OPS_CREDENTIALS": "imds"},
     "ECS_EVENT_OPS_CREDENTIALS must be one of auto, default-chain, explicit, not 'imds'"),
    ({"ECS_EVENT_OPS_API_RETRY_BUDGET_S": "-1"},
     "ECS_EVENT_OPS_API_RETRY_BUDGET_S must not be negative"),
])
def test_bad_endpoint_credential_and_budget_settings_are_refused(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message


def test_an_override_url_must_be_http_or_https() -> None:
    settings = Settings.from_env({"ECS_EVENT_OPS_ENDPOINT_ECS": "ftp://host"})
    with pytest.raises(ValueError, match="ECS_EVENT_OPS_ENDPOINT_ECS must be http"):
        build_sdk_client("ecs", settings, KEYS)


# --- credentials: the default chain only where it is asked for ---------------------------------

ON_FC = {"FC_FUNC_CODE_PATH": "/code/"}


@pytest.mark.parametrize(("mode", "environ", "cloud_url", "chain"), [
    ("auto", {}, None, False),  # a laptop, a CI runner: no metadata service to ask
    ("auto", ON_FC, None, True),  # Function Compute against the real cloud
    ("auto", ON_FC, "http://127.0.0.1:9", False),  # tools.invoke against the emulator
    ("explicit", ON_FC, None, False),
    ("default-chain", {}, None, True),
    ("default-chain", {}, "http://127.0.0.1:9", True),
])
def test_the_default_chain_is_used_only_on_fc_or_when_asked(
    mode: str, environ: dict[str, str], cloud_url: str | None, chain: bool
) -> None:
    """GIVEN no keys WHEN a client is built THEN the SDK's default credential chain where the
    mode allows it, else AuthError CredentialsUnavailable before anything is sent."""
    settings = Settings.from_env({"ECS_EVENT_OPS_CREDENTIALS": mode}, cloud_url=cloud_url)
    if chain:
        from alibabacloud_credentials.client import Client as CredentialClient

        sdk = build_sdk_client("ecs", settings, None, environ=environ)
        assert isinstance(sdk._credential, CredentialClient)
    else:
        with pytest.raises(AuthError) as caught:
            build_sdk_client("ecs", settings, None, environ=environ)
        assert (caught.value.code, caught.value.action) == ("CredentialsUnavailable",
                                                            "ecs client")
        assert "ECS_EVENT_OPS_CREDENTIALS=default-chain" in str(caught.value)


def test_given_keys_are_used_whatever_the_mode() -> None:
    """GIVEN keys and mode explicit WHEN built THEN the client signs with them."""
    settings = Settings.from_env({"ECS_EVENT_OPS_CREDENTIALS": "explicit"})
    sdk = build_sdk_client("slb", settings, KEYS, environ={})
    assert sdk.get_access_key_id() == KEYS.access_key_id
