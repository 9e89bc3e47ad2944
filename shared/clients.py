"""Narrow adapters over the Alibaba Cloud Tea SDKs: ECS and ActionTrail here; the load
balancers (CLB, ALB, NLB) in :mod:`shared.lb`, CloudMonitor in :mod:`shared.cms`, all on the
plumbing of this module (``_Adapter``, the error table, endpoints, credentials).

Each adapter exposes only the calls the practices need, named by intent, and returns frozen
dataclasses. SDK errors are translated here, at the boundary, into :class:`CloudError` and its
subclasses: no SDK type and no ``TeaException`` escapes this module. What each error code means
(retried, throttled, auth, not found, permanent, retry later, already done, DryRun verdict) is
decided code by code in ONE table, :data:`ERROR_RULES`, from the documented codes of every action
called here (../shared/api-meta).

The SDK packages are heavy (about 0.7 s and 70 MB for ECS alone), so they are imported only
when a client is first built or called, never when this module is imported. Retries (bounded
in attempts and in total sleep, full jitter, injectable ``sleep``) are described in
:mod:`shared.retry`. Endpoints: the emulator's URL, a per-product override, the documented VPC
host, or else the SDK's own table (:func:`build_sdk_client`).

Typical use in a handler::

    clients = Clients.warm(settings, credentials_from_context(context))
    instances = clients.for_region(event.region).ecs.describe_instances([iid])
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

from shared.events import is_valid_instance_id, parse_iso_or_none
from shared.log import emit, get_logger
from shared.retry import RetryPolicy

if TYPE_CHECKING:
    from shared.cms import CmsClient
    from shared.launch import LaunchClient
    from shared.lb.alb import AlbClient
    from shared.lb.clb import ClbClient
    from shared.lb.nlb import NlbClient
    from shared.lb.pools import LoadBalancers
    from shared.settings import Settings

__all__ = [
    "CALLED_ACTIONS",
    "ERROR_RULES",
    "AuthError",
    "Clients",
    "CloudError",
    "CodeRule",
    "Credentials",
    "EcsClient",
    "Instance",
    "NotFoundError",
    "Rule",
    "StartOutcome",
    "StartResult",
    "ThrottledError",
    "TrailClient",
    "TrailRecord",
    "TransientError",
    "build_sdk_client",
    "credentials_from_context",
    "rule_for",
    "user_agent",
]

log = get_logger(__name__)
T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# What each error code means: THE table of retry rules (issue 11, item 3)


class Rule(str, Enum):
    """What the client layer does with an error code."""

    TRANSIENT = "transient"  # retried here with backoff; past the budget TransientError (FC retries)
    THROTTLED = "throttled"  # the same, honouring x-acs-retry-after; then ThrottledError
    AUTH = "auth"  # AuthError: keys, signature or permission; never retried
    NOT_FOUND = "not_found"  # NotFoundError: the resource itself is gone; never retried
    PERMANENT = "permanent"  # CloudError: this request cannot succeed as sent; never retried
    # StartInstance(s) only: no capacity or a conflicting operation right now. Not retried within
    # the call (seconds do not bring capacity back); StartResult.retryable=True makes auto-start
    # raise RetryLaterError, so FC redelivers the event minutes later.
    RETRY_LATER = "retry_later"
    ALREADY_DONE = "already_done"  # StartInstance(s) IncorrectInstanceStatus: not Stopped any more
    DRY_RUN_OK = "dry_run_ok"  # the DryRun verdict "would succeed", sent as an error code
    # RunInstances: this offering (type, zone, spot strategy) cannot be had now; another may.
    # shared.launch raises CapacityError (a CloudError), never retried within the call.
    NO_CAPACITY = "no_capacity"


@dataclass(frozen=True)
class CodeRule:
    rule: Rule
    source: str  # where the code and its meaning are documented


# Every action the adapters below call, with its product (a test checks this list against the
# ``_call`` sites, and every code these actions document against ERROR_RULES).
CALLED_ACTIONS: Mapping[str, str] = {
    "DescribeInstances": "ecs",
    "StartInstance": "ecs",
    "StartInstances": "ecs",
    "StopInstance": "ecs",
    # The replacement launch (shared/launch.py).
    "RunInstances": "ecs",
    "DescribeRecommendInstanceType": "ecs",
    "DescribeInstanceRamRole": "ecs",
    "DescribeUserData": "ecs",
    "DescribeLaunchTemplateVersions": "ecs",
    "DescribeLoadBalancers": "slb",
    "DescribeLoadBalancerAttribute": "slb",
    "DescribeVServerGroups": "slb",
    "DescribeVServerGroupAttribute": "slb",
    "DescribeMasterSlaveServerGroups": "slb",
    "DescribeMasterSlaveServerGroupAttribute": "slb",
    "SetBackendServers": "slb",
    "SetVServerGroupAttribute": "slb",
    "RemoveBackendServers": "slb",
    "RemoveVServerGroupBackendServers": "slb",
    "AddBackendServers": "slb",
    "AddVServerGroupBackendServers": "slb",
    "DescribeHealthStatus": "slb",  # a successor's health in its CLB groups (shared/replace)
    # ALB and NLB share API names: their keys carry the product (the RAM action's spelling).
    "alb:ListServerGroups": "alb",
    "alb:ListServerGroupServers": "alb",
    "alb:UpdateServerGroupServersAttribute": "alb",
    "alb:RemoveServersFromServerGroup": "alb",
    "alb:AddServersToServerGroup": "alb",
    "alb:ListAsynJobs": "alb",
    "nlb:ListServerGroups": "nlb",
    "nlb:ListServerGroupServers": "nlb",
    "nlb:UpdateServerGroupServersAttribute": "nlb",
    "nlb:RemoveServersFromServerGroup": "nlb",
    "nlb:AddServersToServerGroup": "nlb",
    "nlb:GetJobStatus": "nlb",
    "LookupEvents": "actiontrail",
    # CloudMonitor: the metrics of an incident (sweep) and the wiring of the rules (tools).
    "DescribeMetricLast": "cms",
    "PutEventRule": "cms",
    "PutEventRuleTargets": "cms",
    "DescribeEventRuleList": "cms",
    "DescribeEventRuleTargetList": "cms",
}

_PLATFORM = (
    "platform-wide: api-meta README; OpenAPI common error codes (help.aliyun.com "
    "document_detail/51132, /435312); tools/emulator/contract.py PLATFORM_CODES"
)
_REFERENCE = "reference/cloud-apis.md 'Common errors' (403/409; not in api-meta)"
_ECS = "api-meta ecs-2014-05-26.json "
_SLB = "api-meta slb-2014-05-15.json "
_TRAIL = "api-meta actiontrail-2020-07-06.json "
_CMS = "api-meta cms-2019-01-01.json "
_CMS_PLACEHOLDER = (
    "api-meta cms-2019-01-01.json lists the literal '%%s' (the real code is formatted at run "
    "time, so no server sends '%%s' itself; a real code in its place falls back on its shape "
    "and status, 5xx transient): %s"
)
_CLB_BUSY = (
    _SLB + "AddBackendServers, AddVServerGroupBackendServers, RemoveBackendServers (400); "
    "CLB's error pages list them for the sibling writes too (api-meta README), so every CLB action"
)
_SDK_DRY_RUN = "the SDK's own DryRun documentation of the request (models/_%s_request.py)"
_ALB = "api-meta alb-2020-06-16.json "
_NLB = "api-meta nlb-2022-04-30.json "
_LB_REF = "reference/load-balancers-and-replacement.md "
_ALB_BUSY = (
    _ALB + "UpdateServerGroupServersAttribute, RemoveServersFromServerGroup, "
    "AddServersToServerGroup (400); " + _LB_REF + "§1.3, §7.1: the group is Configuring while a "
    "job runs, a write meanwhile is refused; it clears when the job ends (Terraform retries it)"
)
_NLB_BUSY = (
    _NLB + "UpdateServerGroupServersAttribute, RemoveServersFromServerGroup, "
    "AddServersToServerGroup (400); " + _LB_REF + "§2.9, §7.1: the group's lock is held while a "
    "job runs (Terraform's NLB attachment retries both)"
)
_LB_PLACEHOLDER = (
    "api-meta %s lists the literal '%%s' (the real code is formatted at run time; a real code "
    "in its place falls back on its shape: Forbidden.* auth, else permanent): %s"
)


def _rules(scope: str, rule: Rule, source: str, *codes: str) -> dict[tuple[str, str], CodeRule]:
    return {(scope, code): CodeRule(rule, source) for code in codes}


# (scope, code) -> rule. The scope is an action (its meaning for that action only), a product
# ("ecs", "slb", "actiontrail") or "*" (every API); the narrowest scope wins. A code in none of
# them falls back on its shape (``_fallback_rule``): 429 or ``Throttling*`` throttled, 5xx
# transient, ``Forbidden.*``/``InvalidAccessKeyId.*``/``InvalidSecurityToken.*`` auth,
# ``*.NotFound`` not found, anything else permanent.
ERROR_RULES: Mapping[tuple[str, str], CodeRule] = {
    # -- every API ------------------------------------------------------------------------------
    **_rules("*", Rule.THROTTLED, _PLATFORM, "Throttling", "Throttling.User", "Throttling.Api"),
    **_rules("*", Rule.TRANSIENT, _PLATFORM, "ServiceUnavailable", "InternalError"),
    **_rules("*", Rule.TRANSIENT, _REFERENCE, "OperationConflict"),
    # A nonce seen before: each attempt is signed afresh with a new nonce, so a retry is clean.
    **_rules("*", Rule.TRANSIENT, _PLATFORM + "; " + _SLB + "AddVServerGroupBackendServers (400)",
             "SignatureNonceUsed"),
    **_rules("*", Rule.AUTH, _PLATFORM,
             "SignatureDoesNotMatch", "IncompleteSignature", "InvalidAccessKeyId.NotFound",
             "InvalidAccessKeyId.Inactive", "InvalidSecurityToken.Missing",
             "InvalidSecurityToken.Expired", "InvalidSecurityToken.Malformed",
             "InvalidSecurityToken.MismatchWithAccessKey", "Forbidden", "Forbidden.RAM"),
    **_rules("*", Rule.AUTH, "raised by the Tea SDK itself for a client without credentials "
             "(alibabacloud_tea_openapi/client.py)", "InvalidCredentials"),
    # The request itself is wrong (a clock far off included): the same request fails again.
    # Named here because the *.NotFound ones must not read as "the resource is gone".
    **_rules("*", Rule.PERMANENT, _PLATFORM, "MissingParameter", "InvalidParameter",
             "InvalidTimeStamp.Expired", "InvalidAction.NotFound", "InvalidApi.NotFound",
             "InvalidVersion", "NoSuchVersion"),
    # -- ECS 2014-05-26 ---------------------------------------------------------------------------
    # DescribeInstances: its 404s name a bad filter value, not a missing instance (a released
    # instance is simply absent from the answer).
    **_rules("DescribeInstances", Rule.PERMANENT, _ECS + "DescribeInstances (400, 404)",
             "InvalidHpcClusterId.Creating", "InvalidHpcClusterId.NotFound",
             "InvalidTag.Mismatch", "InvalidTagCount", "InvalidFilterKey.NotFound",
             "InvalidFilterValue", "InvalidInstanceChargeType.NotFound",
             "InvalidInternetChargeType.ValueNotSupported", "InvalidLockReason.NotFound",
             "InvalidNetworkType.NotFound", "InvalidStatus.NotFound"),
    **_rules("StartInstance", Rule.RETRY_LATER, _ECS + "StartInstance (400, 403, 500)",
             "LackResource", "Invalid.PrivatePoolOptions.NoStock",
             "InvalidDedicatedHost.NotEnoughResource", "OperationDenied.NoStock",
             "OperationDenied.HostRepairing", "QuotaExceed.ElasticQuota", "InstanceNotReady"),
    **_rules("StartInstance", Rule.ALREADY_DONE, _ECS + "StartInstance (403)",
             "IncorrectInstanceStatus"),
    **_rules("StartInstance", Rule.NOT_FOUND, _ECS + "StartInstance (404)",
             "InvalidInstanceId.NotFound"),
    **_rules("StartInstance", Rule.PERMANENT, _ECS + "StartInstance (400, 403, 404)",
             "InvalidInstance.NotFoundSystemDisk", "DiskError", "DiskInArrears",
             "InstanceExpired", "InstanceLockedForSecurity", "InsufficientBalance",
             "InvalidParameter.KMSKeyId.CMKNotEnabled",
             "InvalidParameter.KMSKeyId.CMKUnauthorized",
             "InvalidParameter.KMSKeyId.KMSUnauthorized", "InvalidParameter.KMSKeyId.NotFound",
             "OperationDenied.SpotPriceLowerThanPublicPrice",
             "InvalidCapacityReservationId.NotFound"),
    **_rules("StartInstance", Rule.DRY_RUN_OK, _SDK_DRY_RUN % "start_instance",
             "DryRunOperation"),
    **_rules("StartInstances", Rule.RETRY_LATER, _ECS + "StartInstances (400, 403, 409)",
             "Invalid.PrivatePoolOptions.NoStock", "OperationDenied.NoStock",
             "OperationDenied.HostRepairing", "InstanceNotReady", "InvalidOperation.Conflict"),
    **_rules("StartInstances", Rule.ALREADY_DONE, _ECS + "StartInstances (403)",
             "IncorrectInstanceStatus"),
    **_rules("StartInstances", Rule.NOT_FOUND, _ECS + "StartInstances (403, 404)",
             "InvalidInstanceId.NotFound", "InvalidInstanceIds.NotFound"),
    **_rules("StartInstances", Rule.PERMANENT, _ECS + "StartInstances (400, 403)",
             "InvalidParameter.KMSKeyId.CMKNotEnabled",
             "InvalidParameter.KMSKeyId.KMSUnauthorized", "Abs.InvalidInstanceIds.MalFormed",
             "InstanceExpired", "InstanceExpiredOrInArrears", "InstanceLockedForSecurity",
             "InsufficientBalance", "InvalidInstance.NotFoundSystemDisk",
             "InvalidParameter.TooManyInstanceIds",
             "OperationDenied.SpotPriceLowerThanPublicPrice"),
    **_rules("StartInstances", Rule.DRY_RUN_OK, _ECS + "StartInstances (400); "
             + _SDK_DRY_RUN % "start_instances", "DRYRUN.SUCCESS"),
    **_rules("StopInstance", Rule.NOT_FOUND, _ECS + "StopInstance (404)",
             "InvalidInstanceId.NotFound"),
    **_rules("StopInstance", Rule.PERMANENT, _ECS + "StopInstance (403)",
             "DiskError", "HibernationConfigured.InstanceOperationForbidden",
             "HibernationConfigured.NotEnabled", "IncorrectInstanceStatus",
             "InstanceExpiredOrInArrears", "InstanceLockedForSecurity",
             "InstanceType.ParameterMismatch", "InvalidInstanceId.NotSupport",
             "InvalidParameter.KMSKeyId.CMKNotEnabled",
             "InvalidParameter.KMSKeyId.CMKUnauthorized",
             "InvalidParameter.KMSKeyId.KMSUnauthorized"),
    **_rules("StopInstance", Rule.DRY_RUN_OK, _SDK_DRY_RUN % "stop_instance", "DryRunOperation"),
    # -- ECS launch (issue 14: shared/launch.py) ---------------------------------------------
    **_rules("RunInstances", Rule.NO_CAPACITY, _ECS + "RunInstances (400, 403); reference "
             "load-balancers-and-replacement.md §4.1-4.2 (Alibaba's no-stock sample, Karpenter's "
             "vSwitch fallback): the offering cannot be had now, another may",
             "InstanceType.Offline", "InvalidInstanceType.ZoneNotSupported",
             "InvalidResourceType.NotSupported", "InvalidVpcZone.NotSupported", "LackResource",
             "OperationDenied.NoStock", "OperationDenied.PaygNotAvailable",
             "ResourceNotAvailable", "SpotNotSupported", "Zone.NotOnSale", "Zone.NotOpen"),
    **_rules("RunInstances", Rule.THROTTLED, _ECS + "RunInstances (429)", "Throttling.Resource"),
    **_rules("RunInstances", Rule.TRANSIENT, _ECS + "RunInstances (403, 500): internal "
             "failures of the service", "InvalidParameter.DataEncryptedKeyCreateFailed", "Mayi.InternalError"),
    # Everything else RunInstances documents: the request as sent (spec, quota, account,
    # permission) cannot succeed; a replacement stops there with an alert.
    **_rules("RunInstances", Rule.PERMANENT, _ECS + "RunInstances (400, 401, 403, 404)",
             "Account.Arrearage", "AccountForbidden.AssociatedWithResellerPartner",
             "AccountForbidden.ProductCreationLimited",
             "BurstingEnabledForDiskCategoryUnsupported",
             "BurstingEnabledForMultiAttachDiskUnsupported", "CategoryNotSupported",
             "CategoryViolation", "ChargeTypeViolation.PostPaidDedicatedHost",
             "ClassicNetworkNotSupported", "DedicatedHostNotSupported",
             "DedicatedHostType.Unmatched", "DefaultVswitch.Existed",
             "DeleteWithInstance.Conflict", "DependencyViolation.IoOptimized",
             "DependencyViolation.WindowsInstance", "DeploymentSet.NotFound",
             "DryRun.InvalidAmount", "Duplicate.TagKey", "EnterpriseGroupLimited.InstanceType",
             "EnterpriseGroupLimited.MutliGroupType", "HOSTNAME_ILLEGAL",
             "HibernationConfigured.ImageNotEncrypted",
             "HibernationConfigured.InstanceOperationForbidden",
             "HibernationConfigured.InstanceTypeNotSupport",
             "HibernationConfigured.MemorySizeTooBig", "ImageNotSubscribed",
             "ImageNotSupportCloudInit", "ImageNotSupportInstanceType", "ImageRemovedInMarket",
             "IncorrectDedicatedHostStatus", "IncorrectDefaultVpcStatus", "IncorrectImageStatus",
             "IncorrectInstanceStatus", "IncorrectRecycleBinStatus", "IncorrectVSwitchStatus",
             "IncorrectVpcStatus", "InstanceDiskCategoryLimitExceed", "InstanceDiskLimitExceeded",
             "InstanceDiskNumLimitExceed", "InstanceDiskNumber.LimitExceed",
             "InsufficientBalance", "InsufficientBalance.AgentCredit",
             "Invalid.InstanceChargeType", "Invalid.InstanceId", "Invalid.InstanceType",
             "Invalid.PrivatePoolOptions.Id", "Invalid.PrivatePoolOptions.MatchCriteria",
             "Invalid.PrivatePoolOptions.NoStock", "Invalid.PrivatePoolOptions.status",
             "Invalid.PrivatePoolOptionsId", "Invalid.ZoneId", "InvalidAccount.NotSupportSpot",
             "InvalidAccountStatus", "InvalidAccountStatus.NotEnoughBalance",
             "InvalidAccountStatus.PayAmountLimitExceeded",
             "InvalidAdditionalInfoPvdConfig.SizeExceeded", "InvalidAliUid",
             "InvalidAutoPay.PostPaidUnsupported", "InvalidAutoReleaseTime.Malformed",
             "InvalidAutoRenewPeriod.ValueNotSupported", "InvalidAutoSnapshotPolicyId.NotFound",
             "InvalidBandwidthOut.LessThanZero", "InvalidCapacityReservationId.NotFound",
             "InvalidChargeType.CapacityReservationNotSupported",
             "InvalidChargeType.ValueNotSupported", "InvalidClientToken.ValueNotSupported",
             "InvalidCloudBoxZone.OperationNotSupported", "InvalidClusterId.NotFound",
             "InvalidCustomInstanceType.NotSupported", "InvalidDataDevice.Malformed",
             "InvalidDataDiskCategory.ValueNotSupported", "InvalidDataDiskSize.ValueNotSupported",
             "InvalidDataDiskSnapshotId.NotFound", "InvalidDedicatedHostClusterId.InValid",
             "InvalidDedicatedHostClusterId.NotFound", "InvalidDedicatedHostId.NotFound",
             "InvalidDedicatedHostStatus.NotSupport", "InvalidDeploymentOnHost",
             "InvalidDeploymentSetId.NotFound", "InvalidDescription.Malformed",
             "InvalidDestinationZone.DeploymentSetMismatch", "InvalidDevice.InUse",
             "InvalidDisk.SystemDiskSize", "InvalidDiskCategory.ConflictSnapshotCategory",
             "InvalidDiskCategory.Mismatch", "InvalidDiskCategory.NotSupported",
             "InvalidDiskCategory.ValueNotSupported", "InvalidDiskDescription.Malformed",
             "InvalidDiskIds.NotPortable", "InvalidDiskName.Malformed",
             "InvalidDiskSize.TooSmall", "InvalidEncryptAlgorithm",
             "InvalidEncryptAlgorithm.NotMatchSnapshot",
             "InvalidEncrypted.DefaultEncryptionUnsupported",
             "InvalidEncrypted.NotMatchEncryptAlgorithm", "InvalidEncrypted.NotMatchKmsKeyId",
             "InvalidEncrypted.NotMatchSnapshot", "InvalidEniId.NotFound",
             "InvalidEniQueueSize.RegionOrUserNotSupported", "InvalidHostName.Malformed",
             "InvalidHostname.SingleAndMultiConflict", "InvalidHostname.SizeInvalid",
             "InvalidHpcClusterId.Creating", "InvalidHpcClusterId.Necessary",
             "InvalidHpcClusterId.NotFound", "InvalidHpcClusterId.Unnecessary",
             "InvalidHttpEndpoint.NotSupported", "InvalidHttpPutResponseHopLimit.NotSupported",
             "InvalidHttpTokens.NotSupported", "InvalidImage.NotSupported",
             "InvalidImageFamily.MissingAvailableImage", "InvalidImageId.NotFound",
             "InvalidInnerIpAddress.Malformed", "InvalidInnerIpAddress.Unusable",
             "InvalidInstance.UnPaidOrder", "InvalidInstanceChargeType.NotFound",
             "InvalidInstanceChargeType.NotSupport", "InvalidInstanceName.CustomMalformed",
             "InvalidInstanceName.Malformed",
             "InvalidInstanceType.ElasticNetworkInterfaceNotSupported",
             "InvalidInstanceType.NotSupportCpuOptionsTopologyType",
             "InvalidInstanceType.NotSupportDiskCategory", "InvalidInstanceType.NotSupported",
             "InvalidInstanceType.ValueNotSupported", "InvalidInstanceType.ValueUnauthorized",
             "InvalidInternetChargeType.ValueNotSupported",
             "InvalidInternetMaxBandwidthIn.Malformed",
             "InvalidInternetMaxBandwidthOut.Malformed", "InvalidIoOptimize.ValueNotSupported",
             "InvalidIp.Address", "InvalidIp.IpAssigned", "InvalidIp.IpRepeated",
             "InvalidIspBandwidthOut", "InvalidIspType.ValueNotSupported", "InvalidIspUID",
             "InvalidKMSKeyId.NotSymmetric", "InvalidKeyPairName.NotFound",
             "InvalidKmsKeyId.NotMatchSnapshot", "InvalidLaunchTemplate.NotFound",
             "InvalidLaunchTemplateVersion.NotFound",
             "InvalidManagedPrivateSpaceId.DedicatedHostIdConflict",
             "InvalidManagedPrivateSpaceId.NotFound",
             "InvalidManagedPrivateSpaceId.TenancyConflict", "InvalidMarketImage.NotFound",
             "InvalidMarketImageChargeType.NotSupport", "InvalidMaxAmount.Malformed",
             "InvalidMaxPartitionNumber.Malformed", "InvalidMinAmount.Malformed",
             "InvalidNetworkType", "InvalidNetworkType.Mismatch",
             "InvalidNetworkType.MismatchRamRole", "InvalidNetworkType.NotSupported",
             "InvalidNodeControllerId.Malformed",
             "InvalidOperation.ConfidentialComputingModeInInviteOnlyTesting",
             "InvalidOperation.EniCountExceeded",
             "InvalidOperation.ExceedInstanceTypeQueueNumber",
             "InvalidOperation.HighPerformanceEniPerInstanceLimitExceeded",
             "InvalidOperation.HighPerformanceTrafficModeIsNotAllowed",
             "InvalidOperation.InstanceTypeNotSupportHighPerformanceTrafficMode",
             "InvalidOperation.InvalidNetworkInterfaceId", "InvalidOperation.Ipv4CountExceeded",
             "InvalidOperation.Ipv4NotSupport", "InvalidOperation.Ipv6CountExceeded",
             "InvalidOperation.Ipv6NotSupport", "InvalidOperation.MaxEniQueueNumberExceeded",
             "InvalidOperation.NetworkInterface", "InvalidOperation.PublicIpAddressNoStock",
             "InvalidOperation.RegionNotSupportNetworkInterfaceId",
             "InvalidOperation.ResourceManagedByCloudProduct",
             "InvalidOperation.UserNotSupportNetworkCard", "InvalidOperation.UserNotSupported",
             "InvalidOperation.VpcHasEnabledAdvancedNetworkFeature", "InvalidParam.Amount",
             "InvalidParam.ConfidentialComputingMode", "InvalidParam.CpuOptionsCore",
             "InvalidParam.CpuOptionsNuma", "InvalidParam.EncryptedMismatch",
             "InvalidParam.IpAssign", "InvalidParam.IpCount", "InvalidParam.NetworkInterface",
             "InvalidParam.NotSupportJumboFrame", "InvalidParam.SecondaryIp",
             "InvalidParam.SecondaryNetworkInterface", "InvalidParam.Tenancy",
             "InvalidParam.TrustedSystemMode", "InvalidParameter.Affinity",
             "InvalidParameter.Arns", "InvalidParameter.Bandwidth",
             "InvalidParameter.CloudboxNotSupported", "InvalidParameter.Combination",
             "InvalidParameter.Conflict", "InvalidParameter.CpuOptionsTopologyType",
             "InvalidParameter.CreditSpecification",
             "InvalidParameter.DedicatedRegionNotSupported",
             "InvalidParameter.DeploymentSetGroupNo", "InvalidParameter.Encrypted.KmsNotEnable",
             "InvalidParameter.EncryptedIllegal", "InvalidParameter.EncryptedNotSupported",
             "InvalidParameter.EniNumExceededWithLaunchEcs", "InvalidParameter.EniQueueSize",
             "InvalidParameter.EniTrafficMode", "InvalidParameter.EniType",
             "InvalidParameter.InvalidEniQueueNumber", "InvalidParameter.InvalidQueuePairNumber",
             "InvalidParameter.KMSKeyId.CMKNotEnabled",
             "InvalidParameter.KMSKeyId.CMKUnauthorized",
             "InvalidParameter.KMSKeyId.KMSUnauthorized", "InvalidParameter.KMSKeyId.NotFound",
             "InvalidParameter.KmsNotEnabled", "InvalidParameter.Mismatch",
             "InvalidParameter.NetworkCardIndexInvalid", "InvalidParameter.NetworkInterface",
             "InvalidParameter.NotMatch", "InvalidParameter.PrivateIpAddressRepeated",
             "InvalidParameter.QueuePairNumberMustEmpty",
             "InvalidParameter.SecurityGroupIdRepeated", "InvalidParameter.StorageSetId",
             "InvalidParameter.StorageSetPartitionNumber", "InvalidParameter.StorageSetZoneId",
             "InvalidParameter.VSwitchId", "InvalidParams.CreateEniParams",
             "InvalidParams.HostnameExceed", "InvalidParams.InstanceNameExceed",
             "InvalidPassword.Malformed", "InvalidPasswordParam.Mismatch", "InvalidPayMethod",
             "InvalidPerformanceLevel.Malformed", "InvalidPerformanceLevel.ValueNotSupported",
             "InvalidPeriod", "InvalidPeriod.ExceededDedicatedHost",
             "InvalidPeriodType.ValueNotSupported", "InvalidPlatform.ValueNotSupported",
             "InvalidPrimaryIpAddress.SizeInvalid", "InvalidPrivateIpAddress",
             "InvalidPrivateIpAddress.Duplicated", "InvalidPrivateIpAddress.Malformed",
             "InvalidProvisionedIops.LimitExceed", "InvalidRamRole.NotEcsRole",
             "InvalidRamRole.NotFound", "InvalidRegion.NotSupport", "InvalidRegionId.NotFound",
             "InvalidRegionId.NotSupportEncryptAlgorithm", "InvalidRelationResource.NotFound",
             "InvalidResourceGroup.NotFound", "InvalidResourceId.NotSupported",
             "InvalidSchedulerOptions", "InvalidSecurityGroup.NetworkType",
             "InvalidSecurityGroup.NotInDefaultVpc", "InvalidSecurityGroup.VpcMismatch",
             "InvalidSecurityGroupId", "InvalidSecurityGroupId.MultiGroupIdNetworkTypeConflict",
             "InvalidSecurityGroupId.NotFound",
             "InvalidSecurityGroupId.SingleIdAndMultiIdConflict",
             "InvalidSecurityOptions.NotSupported", "InvalidSnapshotId.BasedSnapshotTooOld",
             "InvalidSnapshotId.Malformed", "InvalidSnapshotId.NotDataDiskSnapshot",
             "InvalidSnapshotId.NotFound", "InvalidSnapshotId.NotReady", "InvalidSpotAliUid",
             "InvalidSpotAuthorized", "InvalidSpotDuration", "InvalidSpotInterruptionBehavior",
             "InvalidSpotInterruptionBehavior.ClassicNetworkNotSupport",
             "InvalidSpotInterruptionBehavior.LocalDiskNotSupport",
             "InvalidSpotParam.EmptyZoneID", "InvalidSpotPrepaid", "InvalidSpotPriceLimit",
             "InvalidSpotPriceLimit.LowerThanPublicPrice", "InvalidSpotStrategy",
             "InvalidStorageClusterId.CapacityNotEnough",
             "InvalidStorageClusterId.CategoryNotMatch", "InvalidStorageClusterId.DiskSizeEmpty",
             "InvalidStorageClusterId.NotExist",
             "InvalidStorageClusterId.PerformanceLevelNotMatch",
             "InvalidStorageClusterId.StatusNotSupport", "InvalidStorageClusterId.ZoneIdEmpty",
             "InvalidStorageSetName.Malformed", "InvalidSystemDiskCategory.ValueNotSupported",
             "InvalidSystemDiskCategory.ValueUnauthorized",
             "InvalidSystemDiskSize.ImageNotSupportResize",
             "InvalidSystemDiskSize.LessThanImageSize", "InvalidSystemDiskSize.LessThanMemSize",
             "InvalidSystemDiskSize.LessThanMinSize", "InvalidSystemDiskSize.MoreThanMaxSize",
             "InvalidSystemDiskSize.ValueNotSupported", "InvalidTag.Mismatch", "InvalidTagCount",
             "InvalidTagKey.Malformed", "InvalidTagValue.Malformed",
             "InvalidUserData.Base64FormatInvalid",
             "InvalidUserData.Forbidden", "InvalidUserData.NotSupported",
             "InvalidUserData.SizeExceeded", "InvalidVSwitch.DefaultVSwitchNotSupport",
             "InvalidVSwitch.Ipv6NotTurnOn", "InvalidVSwitchId.IpInvalid",
             "InvalidVSwitchId.Necessary", "InvalidVSwitchId.NotExist",
             "InvalidVSwitchId.NotFound", "InvalidZoneId.NotFound",
             "InvalidZoneId.NotSupportCreateWithShareEncryptedImage",
             "InvalidZoneId.NotSupportShareEncryptedImage", "IoOptimized.NotSupported",
             "JoinedGroupLimitExceed", "LoginAsNonRoot.ImageNotSupport",
             "MaxEniIpv6IpsCountExceeded", "MissingParameter.PrivatePoolOptions.Id",
             "MissingParameter.PrivatePoolOptionsId", "MissingParamter",
             "NoAvaliableDedicatedHost", "NodeControllerUnavailable", "NotSupport.SnapshotEncryptedAlgorithmConflict",
             "NotSupportSnapshotEncrypted.DiskCategory",
             "NotSupportSnapshotEncrypted.ImageOwnerAlias",
             "NotSupportSnapshotEncrypted.InstanceType", "NotSupportSnapshotEncrypted.RegionId",
             "NotSupportSnapshotEncrypted.ShareImage", "NotSupportSnapshotEncrypted.ZoneId",
             "NumberExceed.Tags", "OperationDenied", "OperationDenied.BidOwnResource",
             "OperationDenied.CloudSSDNotSupported", "OperationDenied.CreatingConflict",
             "OperationDenied.DiskTypeNotSupport", "OperationDenied.FlavorNotSupported",
             "OperationDenied.ImageNotValid", "OperationDenied.InconsistentNetwork",
             "OperationDenied.InvalidNetworkType", "OperationDenied.LocalDiskUnsupported",
             "OperationDenied.NoVlan", "OperationDenied.PerformanceLevelNotMatch",
             "OperationDenied.PrepayNotAvailable", "OperationDenied.QuotaExceed",
             "OperationDenied.RegionIdNotSupported", "OperationDenied.ResourceControl",
             "OperationDenied.SnapshotNotAllowed", "OperationDenied.SnapshotNotValid",
             "OperationDenied.SnapshotParamsNotValid", "OperationDenied.TimestampNotSupported",
             "OperationDenied.ZoneNotAllowed", "OperationDenied.ZoneSystemCategoryNotMatch",
             "PaymentMethodNotFound", "ProvisionedIopsForDiskCategoryRequired",
             "ProvisionedIopsForDiskCategoryUnsupported", "QuotaExceed.AfterpayInstance",
             "QuotaExceed.BuyImage", "QuotaExceed.DeploymentSetInstanceQuotaFull",
             "QuotaExceed.DiskCapacity", "QuotaExceed.ElasticQuota",
             "QuotaExceed.PortableCloudDisk", "QuotaExceed.PostPaidDisk", "QuotaExceed.Tags",
             "QuotaExceeded", "QuotaExceeded.PostpaidDataDiskCapacity",
             "QuotaExceeded.PrepayDataDiskCapacity", "QuotaExceeded.PrivateIpAddress",
             "RealNameAuthenticationError", "RegionUnauthorized", "ResourcesNotInSameZone",
             "SecurityGroupInstanceLimitExceed", "SecurityRisk.3DVerification",
             "UnexpectedImageFamily.ImageIdSupplied", "UnsupportedIspChargeType",
             "UnsupportedIspClassicNetwork", "UnsupportedIspNetworkChargeType",
             "UnsupportedIspRegion", "UserNotInTheWhiteList", "VpcNotFound"),
    **_rules("RunInstances", Rule.AUTH, _ECS + "RunInstances (403, 400): the account or the "
             "role may not (ram:PassRole for RamRoleName, system tags, prices, risk control)",
             "Forbbiden", "Forbidden.OnlySupportEnterpriseGroup", "Forbidden.RegionId", "Forbidden.RiskControl", "InvalidUser.PassRoleForbidden", "NoPermission.Price", "NoPermission.SystemTag"),
    **_rules("RunInstances", Rule.DRY_RUN_OK, _SDK_DRY_RUN % "run_instances", "DryRunOperation"),
    # A ClientToken reused with other parameters: a bug of ours (the token names one request).
    **_rules("RunInstances", Rule.PERMANENT, "ECS 'How to ensure idempotence' (reference "
             "load-balancers-and-replacement.md §4.2; tools/emulator/contract.py PLATFORM_CODES)",
             "IdempotentParameterMismatch"),
    # DescribeRecommendInstanceType: RecommendEmpty.* is "nothing to offer" (no candidates).
    **_rules("DescribeRecommendInstanceType", Rule.NO_CAPACITY,
             _ECS + "DescribeRecommendInstanceType (400)",
             "RecommendEmpty.DiskCategoryNotRecommended", "RecommendEmpty.GenerationNotMatch",
             "RecommendEmpty.InstanceTypeFamilyNotMatched",
             "RecommendEmpty.InstanceTypeNotAuthorized", "RecommendEmpty.InstanceTypeNotMatched",
             "RecommendEmpty.InstanceTypeSoldOut", "RecommendEmpty.IzNotMatched",
             "RecommendEmpty.NetworkTypeNotSupported", "RecommendEmpty.PerformanceNotSatisfied",
             "RecommendEmpty.PriceNotSatisfied", "RecommendEmpty.QuotaNotSatisfied"),
    **_rules("DescribeRecommendInstanceType", Rule.PERMANENT,
             _ECS + "DescribeRecommendInstanceType (400, 404)",
             "InvalidCoreAndMemory.ValueNotSupported", "InvalidDiskCategory.NotFound",
             "InvalidInstanceChargeType.NotFound", "InvalidInstanceFamilyLevel.NotSupported",
             "InvalidInstanceType.NotSupported", "InvalidInstanceTypeFamily.NotFound",
             "InvalidIoOptimized.NotFound", "InvalidMaxPrice.NotSupported",
             "InvalidNetworkType.ValueNotSupported", "InvalidParam.TypeAndCpuMem.Conflict",
             "InvalidPriorityStrategy.ValueNotSupported", "InvalidRegionId.MalFormed",
             "InvalidScene.ValueNotSupported", "InvalidSpotStrategy.ValueNotSupported",
             "InvalidZoneId.MalFormed", "InvalidZoneId.ValueNotSupported",
             "QuotaExceed.AfterpayInstance", "InvalidRegionId.NotFound"),
    **_rules("DescribeInstanceRamRole", Rule.PERMANENT, _ECS + "DescribeInstanceRamRole (400, 403)",
             "InvalidInstanceIds.Malformed", "InvalidNetworkType.MismatchRamRole",
             "InvalidParameter.AllEmpty"),
    **_rules("DescribeInstanceRamRole", Rule.NOT_FOUND, _ECS + "DescribeInstanceRamRole (404)",
             "InvalidInstanceId.NotFound"),
    **_rules("DescribeUserData", Rule.NOT_FOUND, _ECS + "DescribeUserData (404)",
             "InvalidInstanceId.NotFound"),
    **_rules("DescribeLaunchTemplateVersions", Rule.PERMANENT,
             _ECS + "DescribeLaunchTemplateVersions (400)", "InvalidRegion.NotExist"),
    # "Inner service failed": the service's own dependency, as 5xx are; retried like them.
    **_rules("DescribeLaunchTemplateVersions", Rule.TRANSIENT,
             _ECS + "DescribeLaunchTemplateVersions (403)", "InnerServiceFailed"),
    **_rules("DescribeLaunchTemplateVersions", Rule.NOT_FOUND,
             _ECS + "DescribeLaunchTemplateVersions (404)", "InvalidLaunchTemplate.NotFound"),
    # -- CLB (SLB 2014-05-15) ---------------------------------------------------------------------
    # The backend-server writes of one load balancer are serialized by CLB: a concurrent change
    # answers "busy"; it clears in seconds, and one of them aborting a spot drain is the bug.
    **_rules("slb", Rule.TRANSIENT, _CLB_BUSY, "SystemBusy", "OperationBusy",
             "OperationFailed.ServiceGroupProcessing", "BackendServerProcessing",
             "VpcSystemBusy"),
    **_rules("slb", Rule.NOT_FOUND, "CLB's answer for an unknown LoadBalancerId (not in the slb "
             "metadata; tools/emulator/contract.py PLATFORM_CODES names the sources)",
             "InvalidLoadBalancerId.NotFound"),
    **_rules("slb", Rule.TRANSIENT, _SLB + "DescribeLoadBalancers, "
             "DescribeLoadBalancerAttribute, DescribeVServerGroupAttribute, "
             "DescribeHealthStatus (400)", "LocationServiceTimeout"),
    # The load balancer has more listeners than the call describes: asking again will not help.
    **_rules("DescribeHealthStatus", Rule.PERMANENT, _SLB + "DescribeHealthStatus (400)",
             "TooManyListeners"),
    **_rules("DescribeLoadBalancers", Rule.PERMANENT, _SLB + "DescribeLoadBalancers (400)",
             "InvalidTag", "TooManyResult"),
    **_rules("DescribeVServerGroups", Rule.PERMANENT, _SLB + "DescribeVServerGroups (400)",
             "MissingParam.TagKey"),
    **_rules("DescribeMasterSlaveServerGroups", Rule.PERMANENT,
             _SLB + "DescribeMasterSlaveServerGroups (400)", "MissingParam.TagKey"),
    **_rules("SetBackendServers", Rule.PERMANENT, _SLB + "SetBackendServers (400)",
             "Mismatched.ZoneId"),
    **_rules("SetVServerGroupAttribute", Rule.PERMANENT,
             _SLB + "SetVServerGroupAttribute (400)", "InvalidParameter.ZoneNotSupport"),
    # The load balancer's state forbids the change (locked, inactive): not a matter of seconds.
    **_rules("RemoveVServerGroupBackendServers", Rule.PERMANENT,
             _SLB + "RemoveVServerGroupBackendServers (400)", "LbStatusNotSupport"),
    **_rules("AddBackendServers", Rule.PERMANENT, _SLB + "AddBackendServers (400)",
             "IncorrectStatus.RSByPassToas", "InvalidBackendServers.ServerIpConflict",
             "Mismatched.ZoneId", "NetworkConflict", "OperationFailed.ActionNotSupport",
             "OperationUnsupported.AddBackendServers"),
    # InvalidServerId.NotExist: one server of up to 20 in the call is gone; reported as a
    # failure of the call, not as "the group is gone" (NotFoundError), so the others are not
    # silently dropped.
    **_rules("AddVServerGroupBackendServers", Rule.PERMANENT,
             _SLB + "AddVServerGroupBackendServers (400, 404)",
             "BackendServer.InvalidType", "BackendServer.ServerRegionIdNotEqual",
             "IncorrectStatus.CenNotAssociated", "IncorrectStatus.RSByPassToas",
             "InvalidBackendServers.MissingCenBandWidth",
             "InvalidBackendServers.ServerIpConflict", "InvalidBackendServers.VpcNotInCen",
             "InvalidParameter.ServerRegionId", "InvalidParameter.ZoneNotSupport",
             "InvalidServerId.NotExist", "InvalidVbrId.NotInCen", "MasterSlaveServerConflict",
             "Mismatched.ZoneId", "MissingParameter.ServerRegionId", "MissingParameter.VbrId",
             "NetworkConflict", "OperationDeny.LbNotSupportIPv6Server",
             "OperationFailed.InvalidCen", "OperationUnsupported.AddVServerGroupBackendServers",
             "ResourceNotFound.Cen"),
    **_rules("AddVServerGroupBackendServers", Rule.NOT_FOUND,
             _SLB + "AddVServerGroupBackendServers (404)", "ResourceNotFound.vServers"),
    # -- ALB 2020-06-16 -----------------------------------------------------------------------
    **_rules("alb", Rule.TRANSIENT, _ALB_BUSY, "IncorrectStatus.ServerGroup",
             "ResourceInConfiguring"),
    **_rules("alb:RemoveServersFromServerGroup", Rule.TRANSIENT,
             _ALB + "RemoveServersFromServerGroup (400): the member is still changing (the "
             "weight job); " + _LB_REF + "§8.1", "ResourceInConfiguring.BackendServer"),
    **_rules("alb", Rule.AUTH, _ALB + "ListServerGroupServers, UpdateServerGroupServersAttribute, "
             "RemoveServersFromServerGroup, AddServersToServerGroup (403)", "Forbidden.ServerGroup"),
    # The group is gone: nothing to drain there. A member gone is handled by the adapter (the
    # others of the call are sent again; none left = done): reference §1.4, §1.10.
    **_rules("alb", Rule.NOT_FOUND, _ALB + "UpdateServerGroupServersAttribute, "
             "RemoveServersFromServerGroup, AddServersToServerGroup (404)",
             "ResourceNotFound.ServerGroup", "ResourceNotFound.BackendServer"),
    # The instance to register is not there (yet or any more): this call cannot succeed.
    **_rules("alb:AddServersToServerGroup", Rule.PERMANENT,
             _ALB + "AddServersToServerGroup (404)", "ResourceNotFound.Ecs",
             "ResourceNotFound.Eci", "ResourceNotFound.Eni"),
    **_rules("alb:AddServersToServerGroup", Rule.PERMANENT,
             _ALB + "AddServersToServerGroup (400)", "Conflict.BackendServer",
             "DuplicatedParam.BackendServer", "IllegalParam.ServerIp", "IncorrectStatus.Eni",
             "Mismatch.ServerType", "Mismatch.Type", "Mismatch.VpcId", "OperationDenied.CloudBox",
             "OperationDenied.EciNotSupportJobType", "OperationDenied.NoAvailableVSwitch",
             "OperationDenied.VgwVipNotFound", "OperationDenied.VpcVportNotFound",
             "ResourceInUse.IP", "ResourceQuotaExceeded.LoadBalancerServersNum",
             "ResourceQuotaExceeded.ServerAddedNum"),
    **_rules("alb", Rule.DRY_RUN_OK, _SDK_DRY_RUN % "update_server_group_servers_attribute"
             + " (alibabacloud_alb20200616; Remove/Add the same)", "DryRunOperation"),
    # -- NLB 2022-04-30 -----------------------------------------------------------------------
    **_rules("nlb", Rule.TRANSIENT, _NLB_BUSY, "Conflict.Lock", "IncorrectStatus.serverGroup"),
    **_rules("nlb", Rule.TRANSIENT, _NLB + "ListServerGroups, ListServerGroupServers, "
             "RemoveServersFromServerGroup, AddServersToServerGroup, GetJobStatus (400)",
             "SystemBusy"),
    **_rules("nlb", Rule.AUTH, _NLB + "every server-group action and GetJobStatus (403)",
             "Forbidden.NoPermission"),
    **_rules("nlb", Rule.AUTH, _LB_PLACEHOLDER % ("nlb-2022-04-30.json", "ListServerGroups, "
             "UpdateServerGroupServersAttribute (403)"), "Forbidden.%s"),
    **_rules("nlb", Rule.PERMANENT, _LB_PLACEHOLDER % ("nlb-2022-04-30.json",
             "UpdateServerGroupServersAttribute, RemoveServersFromServerGroup, "
             "AddServersToServerGroup (400)"), "IllegalParam.%s", "MissingParam.%s"),
    **_rules("nlb", Rule.NOT_FOUND, _NLB + "ListServerGroupServers, "
             "UpdateServerGroupServersAttribute, RemoveServersFromServerGroup, "
             "AddServersToServerGroup (404)", "ResourceNotFound.serverGroup",
             "ResourceNotFound.BackendServer"),
    **_rules("nlb:GetJobStatus", Rule.NOT_FOUND, _NLB + "GetJobStatus (404)",
             "ResourceNotFound.JobId"),
    # The same ClientToken with another request: a bug of ours, never retried.
    **_rules("nlb", Rule.PERMANENT, _NLB + "RemoveServersFromServerGroup, "
             "AddServersToServerGroup (400)", "IdempotenceSignatureMismatch"),
    **_rules("nlb:AddServersToServerGroup", Rule.PERMANENT,
             _NLB + "AddServersToServerGroup (404)", "ResourceNotFound.Ecs",
             "ResourceNotFound.Eci", "ResourceNotFound.Eni"),
    **_rules("nlb:AddServersToServerGroup", Rule.PERMANENT,
             _NLB + "AddServersToServerGroup (400)", "DuplicatedParam.Server", "IllegalParam",
             "IllegalParam.IP", "IllegalParam.RSPortConflictWithServerGroup",
             "IllegalParam.description", "IncorrectStatus.Eni", "Mismatch.ServerType",
             "Mismatch.VpcId", "MissingParam.IP", "OperationDenied.ServerGroupNotSupportIpv6",
             "QuotaExceeded.QuotaInsufficient", "ResourceInUse.IP", "TagInvokeError"),
    **_rules("nlb", Rule.DRY_RUN_OK, _SDK_DRY_RUN % "update_server_group_servers_attribute"
             + " (alibabacloud_nlb20220430; Remove/Add the same)", "DryRunOperation"),
    # -- ActionTrail 2020-07-06 -------------------------------------------------------------------
    **_rules("LookupEvents", Rule.PERMANENT, _TRAIL + "LookupEvents (400)",
             "InvalidParameterCombination", "InvalidParameterEndTime",
             "InvalidParameterStartTime", "InvalidQueryParameter"),
    # -- CloudMonitor (CMS 2019-01-01) ----------------------------------------------------------
    **_rules("cms", Rule.AUTH, _CMS + "DescribeEventRuleList, DescribeEventRuleTargetList, "
             "DescribeMetricLast (403)", "AccessForbidden"),
    **_rules("cms", Rule.PERMANENT, _CMS + "DescribeEventRuleList, DescribeEventRuleTargetList "
             "(400)", "InvalidParameterValue"),
    **_rules("DescribeMetricLast", Rule.PERMANENT, _CMS + "DescribeMetricLast (400)",
             "ParameterInvalid"),
    # No such namespace, metric or rule group: asking again does not create it.
    **_rules("cms", Rule.NOT_FOUND, _CMS + "DescribeEventRuleList, DescribeMetricLast (404)",
             "ResourceNotFound"),
    **_rules("cms", Rule.PERMANENT, _CMS_PLACEHOLDER % "PutEventRule (400, 403), "
             "PutEventRuleTargets (400, 403, 404, 500), DescribeEventRuleList (500)", "%s"),
}

_AUTH_PREFIXES = ("Forbidden.", "InvalidSecurityToken.", "InvalidAccessKeyId.", "NoPermission")


def rule_for(action: str, code: str, status: int | None = None) -> Rule:
    """The rule for ``code`` answered by ``action``: the narrowest entry of ERROR_RULES, else
    the code's shape and HTTP status."""
    product = CALLED_ACTIONS.get(action, "")
    for scope in (action, product, "*"):
        found = ERROR_RULES.get((scope, code))
        if found is not None:
            return found.rule
    return _fallback_rule(code, status)


def _fallback_rule(code: str, status: int | None) -> Rule:
    """Codes no table entry names (undocumented ones, or transport-level answers)."""
    if code.startswith(_AUTH_PREFIXES):
        return Rule.AUTH
    if code.startswith("Throttling") or status == 429:
        return Rule.THROTTLED
    if status is not None and status >= 500:
        return Rule.TRANSIENT
    if code == "NotFound" or code.endswith(".NotFound") or ".NotFound." in code:
        return Rule.NOT_FOUND
    return Rule.PERMANENT


ECS_VERSION_CHUNK = 100  # DescribeInstances InstanceIds and StartInstances InstanceId.N
SLB_MEMBERS_PER_CALL = 20  # BackendServers entries per CLB call
SLB_IDS_PER_CALL = 10  # comma-separated LoadBalancerId in DescribeLoadBalancers
TRAIL_PAGE_SIZE = 50
MAX_PAGES = 200  # safety bound on any paging loop (200 x 100 instances)
MAX_TRAIL_PAGES = 20


# --------------------------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True)
class Credentials:
    """An AccessKey pair, with the STS token when the keys are temporary (FC role keys)."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


def credentials_from_context(
    context: object | None, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """The invocation's credentials, for both FC runtime shapes.

    python3.9/3.10 put the role's STS keys on ``context.credentials``; python3.12 drops that
    attribute and sets ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET`` / ``_SECURITY_TOKEN``.
    ``None`` means neither is there: callers fall back to the SDK's default credential chain.
    Read them per invoke: STS keys rotate.
    """
    creds = getattr(context, "credentials", None) if context is not None else None
    if creds is not None:
        found = _credentials_from_object(creds)
        if found is not None:
            from shared.redact import register

            # not in the environment on python3.9/3.10: the log formatter must learn them here
            register(found.access_key_secret, found.security_token)
            return found
    import os

    env = os.environ if environ is None else environ
    key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
    secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")
    if key_id and secret:
        return Credentials(key_id, secret, env.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None)
    return None


def _credentials_from_object(creds: object) -> Credentials | None:
    def get(name: str) -> str:
        value = creds.get(name) if isinstance(creds, Mapping) else getattr(creds, name, None)
        return value if isinstance(value, str) else ""

    key_id, secret = get("access_key_id"), get("access_key_secret")
    if key_id and secret:
        return Credentials(key_id, secret, get("security_token") or None)
    return None


# --------------------------------------------------------------------------------------------
# Errors


class CloudError(Exception):
    """A cloud API call failed. ``message`` names the action and the resource ids."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        action: str,
        resource_ids: Sequence[str] = (),
        request_id: str | None = None,
        http_status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
        server_message: str | None = None,
        rule: Rule | None = None,
    ) -> None:
        self.code = code
        # The ERROR_RULES verdict for this answer (None: not an API answer, e.g. no connection).
        self.rule = rule
        self.action = action
        self.resource_ids = tuple(resource_ids)
        ids = ",".join(self.resource_ids)
        self.message = f"{action}{' ' + ids if ids else ''}: {message}"
        self.server_message = server_message if server_message is not None else message
        self.request_id = request_id
        self.http_status = http_status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.attempts = 1
        super().__init__(self.message)

    def __str__(self) -> str:
        extra = [f"code {self.code}"]
        if self.http_status is not None:
            extra.append(f"HTTP {self.http_status}")
        if self.request_id:
            extra.append(f"request id {self.request_id}")
        if self.attempts > 1:
            extra.append(f"after {self.attempts} attempts")
        return f"{self.message} ({', '.join(extra)})"


class NotFoundError(CloudError):
    """The resource does not exist (released instance, deleted load balancer or group)."""


class AuthError(CloudError):
    """Bad keys, bad signature, expired token or missing permission: fix the setup."""


class TransientError(CloudError):
    """Throttling, conflict, HTTP 5xx or connection failure that outlasted the retries.

    Handlers let it propagate so Function Compute retries the whole event later.
    """


class ThrottledError(TransientError):
    """Throttled until the retry budget ran out (a :class:`TransientError` too)."""


_ERROR_TYPES: Mapping[Rule, type[CloudError]] = {
    Rule.AUTH: AuthError,
    Rule.NOT_FOUND: NotFoundError,
}


def _classify(
    code: str,
    message: str,
    *,
    action: str,
    ids: Sequence[str],
    status: int | None,
    request_id: str | None,
    retry_after_s: float | None = None,
) -> CloudError:
    """The CloudError for an API error answer, typed by ERROR_RULES (see :func:`rule_for`)."""
    rule = rule_for(action, code, status)
    kwargs: dict[str, Any] = {
        "action": action,
        "resource_ids": ids,
        "request_id": request_id,
        "http_status": status,
        "retry_after_s": retry_after_s,
        "rule": rule,
    }
    if rule is Rule.THROTTLED:
        return ThrottledError(code, message, retryable=True, **kwargs)
    if rule is Rule.TRANSIENT:
        return TransientError(code, message, retryable=True, **kwargs)
    return _ERROR_TYPES.get(rule, CloudError)(code, message, **kwargs)


def _text(value: object) -> str | None:
    """The SDK formats missing values as the string 'None'."""
    if value is None:
        return None
    text = str(value)
    return None if text in ("", "None") else text


def _translate(exc: BaseException, action: str, ids: Sequence[str]) -> CloudError | None:
    """Map an SDK or transport exception to a CloudError; None for anything else (a bug)."""
    import requests
    from alibabacloud_credentials.exceptions import CredentialException
    from darabonba.exceptions import RetryError as DaraRetryError
    from Tea.exceptions import RetryError as TeaRetryError
    from Tea.exceptions import TeaException, UnretryableException

    if isinstance(exc, UnretryableException):
        inner = getattr(exc, "inner_exception", None)
        if isinstance(inner, BaseException) and inner is not exc:
            translated = _translate(inner, action, ids)
            if translated is not None:
                return translated
        # Typically a body that is not JSON (a proxy's HTML page): not retried, reported.
        return CloudError("InvalidResponse", repr(inner), action=action, resource_ids=ids)
    if isinstance(exc, TeaException):
        data = exc.data if isinstance(exc.data, Mapping) else {}
        code = _text(exc.code) or _text(data.get("Code")) or "Unknown"
        status = _int(getattr(exc, "status_code", None) or data.get("statusCode"))
        request_id = _text(getattr(exc, "request_id", None)) or _text(data.get("RequestId"))
        message = _text(data.get("Message")) or _text(exc.message) or code
        # ThrottlingException carries x-acs-retry-after, in milliseconds (DaraCore.sleep's unit).
        retry_after_ms = getattr(exc, "retry_after", None)
        retry_after_s = (
            retry_after_ms / 1000.0 if isinstance(retry_after_ms, (int, float)) else None
        )
        return _classify(
            code,
            message,
            action=action,
            ids=ids,
            status=status,
            request_id=request_id,
            retry_after_s=retry_after_s,
        )
    if isinstance(exc, (DaraRetryError, TeaRetryError)):  # the SDK's wrapper of any IOError
        return TransientError(
            "ConnectionError", str(exc.message), action=action, resource_ids=ids, retryable=True
        )
    if isinstance(exc, CredentialException):
        return AuthError("CredentialsUnavailable", str(exc), action=action, resource_ids=ids)
    if isinstance(exc, (requests.exceptions.RequestException, ConnectionError, TimeoutError)):
        return TransientError(
            type(exc).__name__, str(exc), action=action, resource_ids=ids, retryable=True
        )
    return None


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, CloudError) and exc.retryable


def _retry_after(exc: BaseException) -> float | None:
    return exc.retry_after_s if isinstance(exc, CloudError) else None


class _Adapter:
    """Shared plumbing: the SDK client, the region, the retry policy, error translation."""

    def __init__(
        self,
        sdk_client: Any,
        region: str,
        *,
        max_attempts: int = 4,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        retry_budget_s: float | None = None,
    ) -> None:
        self._sdk = sdk_client
        self.region = region
        self._retry = RetryPolicy(
            max_attempts, backoff_base_s, backoff_max_s, sleep, budget_s=retry_budget_s
        )

    def _call(self, action: str, ids: Sequence[str], send: Callable[[], Any]) -> dict[str, Any]:
        """Send one request (``send`` builds it afresh) with retries; the body as a dict.

        The dict has the API's own field names (``InstanceId``, ``BackendServers``…), which is
        what the reference documents, so parsing below reads like the API reference.
        """
        attempts = 0

        def attempt() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            try:
                response = send()
            except Exception as exc:  # SDK failures are translated; anything else re-raised
                translated = _translate(exc, action, ids)
                if translated is None:
                    raise
                raise translated from exc
            body = getattr(response, "body", None)
            if body is None:
                return {}
            mapped = body.to_map() if hasattr(body, "to_map") else body
            return dict(mapped) if isinstance(mapped, Mapping) else {}

        def on_retry(attempt_no: int, delay: float, exc: BaseException) -> None:
            emit(
                log,
                "cloud call retry",
                action=action,
                resource_ids=list(ids) or None,
                attempt=attempt_no,
                delay_s=round(delay, 3),
                code=getattr(exc, "code", None),
            )

        try:
            return self._retry.call(
                attempt, retryable=_is_retryable, retry_after_s=_retry_after, on_retry=on_retry
            )
        except CloudError as err:
            err.attempts = attempts
            # A person must see these: bad keys or a missing grant (ERROR), a call that
            # outlasted its retries (WARNING). Instance-level refusals are the callers' to log.
            if isinstance(err, (AuthError, TransientError)):
                emit(log, "cloud call failed",
                     40 if isinstance(err, AuthError) else 30,  # ERROR, WARNING
                     action=action, resource_ids=list(ids) or None, code=err.code,
                     reason=str(err), attempts=attempts)
            raise


# --------------------------------------------------------------------------------------------
# Small parsing helpers over the SDK's ``to_map()`` dicts


def _items(container: object, key: str) -> list[Mapping[str, Any]]:
    """``{"Instance": [...]}`` → the list; tolerant of a missing or null container."""
    if not isinstance(container, Mapping):
        return []
    value = container.get(key)
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: object) -> str:
    return "" if value is None else str(value)


def _opt(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _int(value: object, default: int | None = None) -> int | None:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return default


def _strings(container: object, key: str) -> tuple[str, ...]:
    if not isinstance(container, Mapping):
        return ()
    value = container.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value if v not in (None, ""))


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _validate_ids(instance_ids: Iterable[str]) -> list[str]:
    ids = _unique(instance_ids)
    bad = [i for i in ids if not is_valid_instance_id(i)]
    if bad:
        raise ValueError(f"not ECS instance ids: {bad!r}")
    return ids


# --------------------------------------------------------------------------------------------
# ECS


@dataclass(frozen=True)
class Instance:
    """An ECS instance as DescribeInstances reports it."""

    instance_id: str
    name: str = ""
    status: str = ""
    instance_type: str = ""
    zone_id: str = ""
    region_id: str = ""
    image_id: str = ""
    creation_time: str | None = None
    charge_type: str = "PostPaid"
    spot_strategy: str = "NoSpot"
    spot_interruption_behavior: str | None = None
    stopped_mode: str | None = None
    lock_reasons: tuple[str, ...] = ()  # lower-cased: financial, security, recycling, …
    tags: tuple[tuple[str, str], ...] = ()
    private_ips: tuple[str, ...] = ()
    public_ips: tuple[str, ...] = ()
    vpc_id: str | None = None
    expired_time: str | None = None
    auto_release_time: str | None = None
    # What a replacement copies (shared/replace): the network and the spot terms.
    vswitch_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    key_pair_name: str | None = None
    spot_price_limit: float | None = None
    # Its elastic network interfaces, the primary one first: a load balancer's Eni-type member
    # names one of them (shared.spot.index).
    eni_ids: tuple[str, ...] = ()

    @property
    def is_spot(self) -> bool:
        return self.spot_strategy not in ("NoSpot", "", None)

    def tag(self, key: str) -> str | None:
        for tag_key, value in self.tags:
            if tag_key == key:
                return value
        return None

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready attributes for the lifecycle store (kept after the instance is gone)."""
        return {
            "instance_id": self.instance_id,
            "name": self.name,
            "status": self.status,
            "instance_type": self.instance_type,
            "zone_id": self.zone_id,
            "region_id": self.region_id,
            "image_id": self.image_id,
            "creation_time": self.creation_time,
            "charge_type": self.charge_type,
            "spot_strategy": self.spot_strategy,
            "spot_interruption_behavior": self.spot_interruption_behavior,
            "stopped_mode": self.stopped_mode,
            "lock_reasons": list(self.lock_reasons),
            "tags": dict(self.tags),
            "private_ips": list(self.private_ips),
            "public_ips": list(self.public_ips),
            "vpc_id": self.vpc_id,
            "expired_time": self.expired_time,
            "auto_release_time": self.auto_release_time,
            "vswitch_id": self.vswitch_id,
            "security_group_ids": list(self.security_group_ids),
            "key_pair_name": self.key_pair_name,
            "spot_price_limit": self.spot_price_limit,
            "eni_ids": list(self.eni_ids),
        }


def _instance_from_map(item: Mapping[str, Any]) -> Instance:
    vpc = _mapping(item.get("VpcAttributes"))
    private = _strings(vpc.get("PrivateIpAddress"), "IpAddress") + _strings(
        item.get("InnerIpAddress"), "IpAddress"
    )
    eip = _mapping(item.get("EipAddress"))
    public = _strings(item.get("PublicIpAddress"), "IpAddress")
    if eip.get("IpAddress"):
        public += (str(eip["IpAddress"]),)
    locks = tuple(
        _str(lock.get("LockReason")).lower()
        for lock in _items(item.get("OperationLocks"), "LockReason")
        if lock.get("LockReason")
    )
    tags = tuple(
        (_str(tag.get("TagKey")), _str(tag.get("TagValue")))
        for tag in _items(item.get("Tags"), "Tag")
        if tag.get("TagKey") is not None
    )
    enis = sorted(_items(item.get("NetworkInterfaces"), "NetworkInterface"),
                  key=lambda eni: eni.get("Type") != "Primary")  # stable: the API's order else
    return Instance(
        instance_id=_str(item.get("InstanceId")),
        name=_str(item.get("InstanceName")),
        status=_str(item.get("Status")),
        instance_type=_str(item.get("InstanceType")),
        zone_id=_str(item.get("ZoneId")),
        region_id=_str(item.get("RegionId")),
        image_id=_str(item.get("ImageId")),
        creation_time=_opt(item.get("CreationTime")),
        charge_type=_str(item.get("InstanceChargeType")) or "PostPaid",
        spot_strategy=_str(item.get("SpotStrategy")) or "NoSpot",
        spot_interruption_behavior=_opt(item.get("SpotInterruptionBehavior")),
        stopped_mode=_opt(item.get("StoppedMode")),
        lock_reasons=locks,
        tags=tags,
        private_ips=tuple(_unique(private)),
        public_ips=tuple(_unique(public)),
        vpc_id=_opt(vpc.get("VpcId")),
        expired_time=_opt(item.get("ExpiredTime")),
        auto_release_time=_opt(item.get("AutoReleaseTime")),
        vswitch_id=_opt(vpc.get("VSwitchId")),
        security_group_ids=_strings(item.get("SecurityGroupIds"), "SecurityGroupId"),
        key_pair_name=_opt(item.get("KeyPairName")),
        spot_price_limit=_float(item.get("SpotPriceLimit")),
        eni_ids=tuple(_unique(_str(eni.get("NetworkInterfaceId")) for eni in enis
                              if eni.get("NetworkInterfaceId"))),
    )


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class StartOutcome(str, Enum):
    """What became of one start request (compares equal to its string value)."""

    STARTED = "started"
    ALREADY_RUNNING = "already_running"
    DRY_RUN_OK = "dry_run_ok"
    FAILED = "failed"


@dataclass(frozen=True)
class StartResult:
    """One instance's start: ``retryable`` says whether trying again later may succeed."""

    instance_id: str
    outcome: StartOutcome
    code: str | None = None
    message: str | None = None
    retryable: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome is not StartOutcome.FAILED


def _start_result(
    action: str, instance_id: str, code: str, message: str | None, *, dry_run: bool
) -> StartResult:
    """The outcome of a StartInstance(s) error code that concerns the instance itself, by
    ERROR_RULES: the DryRun verdict (only when a DryRun was asked: never a success for a start
    that did not happen), "not Stopped any more", retry later, or failed."""
    rule = rule_for(action, code)
    if rule is Rule.DRY_RUN_OK and dry_run:
        return StartResult(instance_id, StartOutcome.DRY_RUN_OK, code, message)
    if rule is Rule.ALREADY_DONE:
        return StartResult(instance_id, StartOutcome.ALREADY_RUNNING, code, message)
    retryable = rule in (Rule.RETRY_LATER, Rule.TRANSIENT, Rule.THROTTLED)
    return StartResult(instance_id, StartOutcome.FAILED, code, message, retryable=retryable)


class EcsClient(_Adapter):
    """ECS 2014-05-26: describe, list, start and stop instances."""

    def _models(self) -> Any:
        from alibabacloud_ecs20140526 import models

        return models

    def describe_instances(self, instance_ids: Sequence[str]) -> dict[str, Instance]:
        """The instances that exist, by id; released ids are simply absent.

        Raises ValueError on a malformed id before any call is made.
        """
        ids = _validate_ids(instance_ids)
        found: dict[str, Instance] = {}
        if not ids:
            return found
        models = self._models()
        for chunk in _chunks(ids, ECS_VERSION_CHUNK):

            def send(chunk: Sequence[str] = chunk) -> Any:
                return self._sdk.describe_instances(
                    models.DescribeInstancesRequest(
                        region_id=self.region,
                        instance_ids=json.dumps(list(chunk)),
                        page_size=ECS_VERSION_CHUNK,
                    )
                )

            body = self._call("DescribeInstances", chunk, send)
            for item in _items(body.get("Instances"), "Instance"):
                instance = _instance_from_map(item)
                if instance.instance_id in chunk:
                    found[instance.instance_id] = instance
        return found

    def list_instances(
        self, *, status: str | None = None, tags: Mapping[str, str] | None = None
    ) -> list[Instance]:
        """Every instance of the region matching the filters, all pages (for the sweep)."""
        if tags and len(tags) > 20:
            raise ValueError("DescribeInstances takes at most 20 tag filters")
        models = self._models()
        result: dict[str, Instance] = {}
        page = 1
        while page <= MAX_PAGES:

            def send(page: int = page) -> Any:
                tag_filters = [
                    models.DescribeInstancesRequestTag(key=key, value=value)
                    for key, value in (tags or {}).items()
                ]
                return self._sdk.describe_instances(
                    models.DescribeInstancesRequest(
                        region_id=self.region,
                        status=status,
                        tag=tag_filters or None,
                        page_number=page,
                        page_size=100,
                    )
                )

            body = self._call("DescribeInstances", (), send)
            items = _items(body.get("Instances"), "Instance")
            for item in items:
                instance = _instance_from_map(item)
                result[instance.instance_id] = instance
            total = _int(body.get("TotalCount"))
            if not items or len(items) < 100 or (total is not None and len(result) >= total):
                break
            page += 1
        return list(result.values())

    def start_instance(self, instance_id: str, *, dry_run: bool = False) -> StartResult:
        """Start one instance; "already running" and the DryRun verdict are not errors.

        Instance-level refusals come back as ``failed``, ``retryable`` for the RETRY_LATER codes
        of ERROR_RULES (no stock, host repair, elastic quota, conflict); auth errors raise
        :class:`AuthError`; throttling/5xx/busy/connection errors are retried, then raise
        :class:`TransientError`.
        """
        _validate_ids([instance_id])
        models = self._models()
        try:
            self._call(
                "StartInstance",
                [instance_id],
                lambda: self._sdk.start_instance(
                    models.StartInstanceRequest(
                        instance_id=instance_id, dry_run=True if dry_run else None
                    )
                ),
            )
        except (AuthError, TransientError):
            raise
        except CloudError as err:
            return _start_result(
                "StartInstance", instance_id, err.code, err.server_message, dry_run=dry_run
            )
        return StartResult(instance_id, StartOutcome.STARTED)

    def start_instances(
        self, instance_ids: Sequence[str], *, dry_run: bool = False
    ) -> list[StartResult]:
        """Start several (StartInstances, SuccessFirst, ≤100 per call); results in input order."""
        ids = _validate_ids(instance_ids)
        models = self._models()
        results: dict[str, StartResult] = {}
        for chunk in _chunks(ids, ECS_VERSION_CHUNK):

            def send(chunk: Sequence[str] = chunk) -> Any:
                return self._sdk.start_instances(
                    models.StartInstancesRequest(
                        region_id=self.region,
                        instance_id=list(chunk),
                        batch_optimization="SuccessFirst",
                        dry_run=True if dry_run else None,
                    )
                )

            try:
                body = self._call("StartInstances", chunk, send)
            except (AuthError, TransientError):
                raise
            except CloudError as err:  # the whole call was refused: the same verdict for all
                for iid in chunk:
                    results[iid] = _start_result(
                        "StartInstances", iid, err.code, err.server_message, dry_run=dry_run
                    )
                continue
            for item in _items(body.get("InstanceResponses"), "InstanceResponse"):
                iid = _str(item.get("InstanceId"))
                if iid not in chunk:
                    continue
                code = _str(item.get("Code"))
                if code in ("", "200", "Success", "success"):
                    results[iid] = StartResult(iid, StartOutcome.STARTED)
                else:
                    results[iid] = _start_result(
                        "StartInstances", iid, code, _opt(item.get("Message")), dry_run=dry_run
                    )
            for iid in chunk:
                if iid not in results:
                    results[iid] = StartResult(
                        iid, StartOutcome.FAILED, "MissingFromResponse",
                        "StartInstances did not report this instance", retryable=True,
                    )
        return [results[iid] for iid in ids]

    def stop_instance(self, instance_id: str, *, dry_run: bool = False) -> None:
        """Stop one instance (demo and tests). Raises CloudError on any refusal."""
        _validate_ids([instance_id])
        models = self._models()
        try:
            self._call(
                "StopInstance",
                [instance_id],
                lambda: self._sdk.stop_instance(
                    models.StopInstanceRequest(
                        instance_id=instance_id, dry_run=True if dry_run else None
                    )
                ),
            )
        except CloudError as err:
            if dry_run and err.rule is Rule.DRY_RUN_OK:
                return
            raise


# --------------------------------------------------------------------------------------------
# ActionTrail (2020-07-06)


@dataclass(frozen=True)
class TrailRecord:
    """Who called an API on an instance, from ActionTrail."""

    event_name: str
    event_time: datetime  # UTC, aware
    user_type: str | None  # root-account, ram-user, assumed-role, system, …
    user_name: str | None
    instance_ids: tuple[str, ...] = ()
    event_id: str | None = None
    source_ip: str | None = None


def _format_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware (UTC) time")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _trail_instance_ids(event: Mapping[str, Any]) -> tuple[str, ...]:
    ids: list[str] = []
    for raw in (event.get("resourceName"), event.get("ResourceName")):
        if isinstance(raw, str):
            ids.extend(p.strip() for p in raw.replace(",", ";").split(";"))
    params = event.get("requestParameters")
    if isinstance(params, Mapping):
        for key, value in params.items():
            if key == "InstanceId" or key.startswith("InstanceId."):
                if isinstance(value, str):
                    ids.append(value)
                elif isinstance(value, list):
                    ids.extend(str(v) for v in value)
            elif key == "InstanceIds" and isinstance(value, str):
                try:
                    decoded = json.loads(value)
                except ValueError:
                    decoded = value.split(",")
                if isinstance(decoded, list):
                    ids.extend(str(v) for v in decoded)
    return tuple(_unique(i for i in ids if is_valid_instance_id(i)))


class TrailClient(_Adapter):
    """ActionTrail 2020-07-06: who stopped an instance."""

    def lookup_instance_events(
        self,
        instance_id: str,
        start: datetime,
        end: datetime,
        event_names: Sequence[str] = ("StopInstance", "StopInstances"),
    ) -> list[TrailRecord]:
        """API calls named ``event_names`` on ``instance_id`` between start and end, newest first.

        Queried by resource name (ActionTrail takes one lookup attribute), filtered by event
        name here; at most MAX_TRAIL_PAGES pages of 50.
        """
        _validate_ids([instance_id])
        from alibabacloud_actiontrail20200706 import models

        start_text, end_text = _format_utc(start), _format_utc(end)
        wanted = set(event_names)
        records: list[TrailRecord] = []
        token: str | None = None
        for _ in range(MAX_TRAIL_PAGES):

            def send(token: str | None = token) -> Any:
                return self._sdk.lookup_events(
                    models.LookupEventsRequest(
                        start_time=start_text,
                        end_time=end_text,
                        lookup_attribute=[
                            models.LookupEventsRequestLookupAttribute(
                                key="ResourceName", value=instance_id
                            )
                        ],
                        max_results=str(TRAIL_PAGE_SIZE),
                        next_token=token,
                    )
                )

            body = self._call("LookupEvents", [instance_id], send)
            events = body.get("Events")
            for event in events if isinstance(events, list) else []:
                record = _trail_record(event, instance_id)
                if record is not None and record.event_name in wanted:
                    records.append(record)
            next_token = _opt(body.get("NextToken"))
            if not next_token or next_token == token:
                break
            token = next_token
        records.sort(key=lambda r: r.event_time, reverse=True)
        return records


def _trail_record(event: object, instance_id: str) -> TrailRecord | None:
    if isinstance(event, str):
        try:
            event = json.loads(event)
        except ValueError:
            return None
    if not isinstance(event, Mapping):
        return None
    when = parse_iso_or_none(event.get("eventTime"))
    name = _str(event.get("eventName"))
    if when is None or not name:
        return None
    identity = event.get("userIdentity")
    identity = identity if isinstance(identity, Mapping) else {}
    ids = _trail_instance_ids(event)
    if instance_id not in ids:
        ids = (*ids, instance_id)
    return TrailRecord(
        event_name=name,
        event_time=when,
        user_type=_opt(identity.get("type")),
        user_name=_opt(identity.get("userName")),
        instance_ids=ids,
        event_id=_opt(event.get("eventId")),
        source_ip=_opt(event.get("sourceIpAddress")),
    )


# --------------------------------------------------------------------------------------------
# Building the SDK clients

Product = Literal["ecs", "slb", "alb", "nlb", "actiontrail", "cms"]


def _url_endpoint(url: str, name: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if not parts.netloc or parts.scheme not in ("http", "https"):
        raise ValueError(f"{name} must be http(s)://host[:port], not {url!r}")
    return parts.netloc, parts.scheme


def _endpoint(
    product: Product, settings: Settings, region: str | None = None
) -> tuple[str | None, str]:
    """(host[:port], protocol) for ``product`` in ``region``; host ``None``: the SDK resolves it.

    In order: ``cloud_url`` (the emulator, every product); the product's own override
    (``endpoint_ecs`` …: a host, https, or an http(s) URL); with ``endpoint_network`` "vpc" the
    documented VPC host (shared/endpoints.py: a region without one is a configuration error,
    never a silent fall back to a public host the VPC cannot reach); else the SDK's own endpoint
    table and rule, which know the hosts that are not ``<product>.<region>`` (CLB in
    cn-hangzhou is ``slb.aliyuncs.com``).
    """
    if settings.cloud_url:
        return _url_endpoint(settings.cloud_url, "cloud_url")
    # ``getattr`` with a default: CloudMonitor has no override setting of its own.
    override: str | None = getattr(settings, f"endpoint_{product}", None)
    if override:
        if "://" in override:
            return _url_endpoint(override, f"ECS_EVENT_OPS_ENDPOINT_{product.upper()}")
        return override, "https"
    region = region or settings.region
    if settings.endpoint_network == "vpc":
        from shared.endpoints import VPC_ENDPOINTS
        from shared.settings import SettingsError

        host = VPC_ENDPOINTS[product].get(region)
        if host is None:
            raise SettingsError(
                f"no documented VPC endpoint of {product} in {region}: set "
                f"ECS_EVENT_OPS_ENDPOINT_{product.upper()} to the host to use"
            )
        return host, "https"
    return None, "https"


def _default_chain_allowed(settings: Settings, environ: Mapping[str, str]) -> bool:
    """Whether the SDK's default credential chain may be asked (settings.credentials)."""
    from shared.settings import on_function_compute

    if settings.credentials == "default-chain":
        return True
    if settings.credentials == "explicit":
        return False
    return on_function_compute(environ) and not settings.cloud_url


USER_AGENT = "ecs-event-ops"


def user_agent(environ: Mapping[str, str] | None = None) -> str:
    """``ecs-event-ops/<function>``: attributes every API call to the function that made it.

    ``FC_FUNCTION_NAME`` is set by Function Compute (and by tools.invoke); it is read when a
    client is built, not at import, so the label follows the environment of the invocation. The
    emulator reads it back from the ``User-Agent`` header for the least-privilege check.
    """
    import os

    env = os.environ if environ is None else environ
    function = env.get("FC_FUNCTION_NAME", "").strip()
    return f"{USER_AGENT}/{function}" if function else USER_AGENT


def build_sdk_client(
    product: Product,
    settings: Settings,
    credentials: Credentials | None,
    region: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """A real Tea SDK client for ``product`` in ``region`` (default ``settings.region``); the
    SDK is imported now, not before. No call is made: its ``_endpoint`` is the host it will use.

    Without ``credentials`` the SDK's default credential chain, which ends by asking the instance
    metadata service, is used only where ``settings.credentials`` allows it (by default: on FC
    against the real cloud); elsewhere a missing key is an :class:`AuthError` at once.
    """
    import os

    from alibabacloud_tea_openapi.models import Config

    region = region or settings.region
    env = os.environ if environ is None else environ
    if credentials is None and not _default_chain_allowed(settings, env):
        raise AuthError(
            "CredentialsUnavailable",
            "no AccessKey in the invocation context or in ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET; "
            "the SDK's default credential chain (instance metadata service) is used only on "
            "Function Compute against the real cloud, or with "
            "ECS_EVENT_OPS_CREDENTIALS=default-chain",
            action=f"{product} client",
        )
    endpoint, protocol = _endpoint(product, settings, region)
    config = Config(
        endpoint=endpoint,
        protocol=protocol,
        region_id=region,
        connect_timeout=settings.api_connect_timeout_ms,
        read_timeout=settings.api_read_timeout_ms,
        user_agent=user_agent(env),
    )
    if credentials is not None:
        config.access_key_id = credentials.access_key_id
        config.access_key_secret = credentials.access_key_secret
        config.security_token = credentials.security_token
    else:
        from alibabacloud_credentials.client import Client as CredentialClient

        config.credential = CredentialClient()
    if product == "ecs":
        from alibabacloud_ecs20140526.client import Client as EcsSdk

        return EcsSdk(config)
    if product == "slb":
        from alibabacloud_slb20140515.client import Client as SlbSdk

        return SlbSdk(config)
    if product == "alb":
        from alibabacloud_alb20200616.client import Client as AlbSdk

        return AlbSdk(config)
    if product == "nlb":
        from alibabacloud_nlb20220430.client import Client as NlbSdk

        return NlbSdk(config)
    if product == "cms":
        from alibabacloud_cms20190101.client import Client as CmsSdk

        return CmsSdk(config)
    from alibabacloud_actiontrail20200706.client import Client as TrailSdk

    return TrailSdk(config)


A = TypeVar("A", bound=_Adapter)

WARM_CLIENTS_MAX = 32  # warm Clients kept per process (one per settings, sleep and thread)
_warm: OrderedDict[tuple[Settings, Callable[[float], None], int, str], Clients] = OrderedDict()
_warm_lock = threading.Lock()


@dataclass
class Clients:
    """The adapters of one region, each built on first use (SDK import included).

    CloudMonitor rules are account-wide, so a function acts in each event's own region:
    :meth:`for_region` gives the Clients of another region (same settings and credentials),
    built on first use and kept by this object; :meth:`warm` keeps a Clients, and so its
    regions, across the invocations of one FC instance.
    """

    settings: Settings
    credentials: Credentials | None = None
    sleep: Callable[[float], None] = time.sleep
    region: str | None = None  # None: settings.region
    _ecs: EcsClient | None = field(default=None, init=False, repr=False)
    _lb: ClbClient | None = field(default=None, init=False, repr=False)
    _alb: AlbClient | None = field(default=None, init=False, repr=False)
    _nlb: NlbClient | None = field(default=None, init=False, repr=False)
    _lbs: LoadBalancers | None = field(default=None, init=False, repr=False)
    _trail: TrailClient | None = field(default=None, init=False, repr=False)
    _cms: CmsClient | None = field(default=None, init=False, repr=False)
    _launch: LaunchClient | None = field(default=None, init=False, repr=False)
    _regions: dict[str, Clients] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        credentials: Credentials | None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        region: str | None = None,
    ) -> Clients:
        return cls(settings=settings, credentials=credentials, sleep=sleep, region=region)

    @classmethod
    def warm(
        cls,
        settings: Settings,
        credentials: Credentials | None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Clients:
        """The Clients kept for these settings by this process, reused across invocations.

        One per (settings, sleep, thread): the drain gives each of its threads its own SDK
        clients, and a thread reuses its own. Credentials are part of the check, not the key:
        FC's STS keys rotate, and a Clients built with other keys is replaced (with every
        region it holds), never reused, so no client outlives its keys.
        """
        # The User-Agent names the function (least-privilege attribution): functions sharing a
        # process (the local FC runtime) must not share clients.
        key = (settings, sleep, threading.get_ident(), user_agent())
        with _warm_lock:
            found = _warm.get(key)
            if found is not None and found.credentials == credentials:
                _warm.move_to_end(key)
                return found
            fresh = cls(settings=settings, credentials=credentials, sleep=sleep)
            _warm[key] = fresh
            _warm.move_to_end(key)
            while len(_warm) > WARM_CLIENTS_MAX:
                _warm.popitem(last=False)
            return fresh

    @property
    def region_id(self) -> str:
        """The region these adapters call (``RegionId`` and the endpoint)."""
        return self.region or self.settings.region

    def for_region(self, region: str | None) -> Clients:
        """The Clients of ``region`` (None: this one), built once and kept by this object."""
        wanted = region or self.region_id
        if wanted == self.region_id:
            return self
        with self._lock:
            found = self._regions.get(wanted)
            if found is None:
                found = Clients(self.settings, self.credentials, self.sleep, wanted)
                self._regions[wanted] = found
            return found

    def _build(self, adapter: type[A], product: Product) -> A:
        s = self.settings
        return adapter(
            build_sdk_client(product, s, self.credentials, self.region_id),
            self.region_id,
            max_attempts=s.api_max_attempts,
            backoff_base_s=s.api_backoff_base_s,
            backoff_max_s=s.api_backoff_max_s,
            sleep=self.sleep,
            retry_budget_s=s.api_retry_budget_s,
        )

    @property
    def ecs(self) -> EcsClient:
        if self._ecs is None:
            self._ecs = self._build(EcsClient, "ecs")
        return self._ecs

    @property
    def lb(self) -> ClbClient:
        """CLB (shared/lb/clb.py, imported on first use)."""
        if self._lb is None:
            from shared.lb.clb import ClbClient

            self._lb = self._build(ClbClient, "slb")
        return self._lb

    @property
    def alb(self) -> AlbClient:
        """ALB (shared/lb/alb.py, imported on first use)."""
        if self._alb is None:
            from shared.lb.alb import AlbClient

            self._alb = self._build(AlbClient, "alb")
        return self._alb

    @property
    def nlb(self) -> NlbClient:
        """NLB (shared/lb/nlb.py, imported on first use)."""
        if self._nlb is None:
            from shared.lb.nlb import NlbClient

            self._nlb = self._build(NlbClient, "nlb")
        return self._nlb

    @property
    def lbs(self) -> LoadBalancers:
        """The three load-balancer products behind one interface (shared/lb/pools.py); each
        adapter is built when first used."""
        if self._lbs is None:
            from shared.lb.model import Product
            from shared.lb.pools import LoadBalancers

            self._lbs = LoadBalancers(
                {Product.CLB: lambda: self.lb, Product.ALB: lambda: self.alb,
                 Product.NLB: lambda: self.nlb}, sleep=self.sleep)
        return self._lbs

    @property
    def trail(self) -> TrailClient:
        if self._trail is None:
            self._trail = self._build(TrailClient, "actiontrail")
        return self._trail

    @property
    def cms(self) -> CmsClient:
        """CloudMonitor (shared/cms.py, imported on first use)."""
        if self._cms is None:
            from shared.cms import CmsClient

            self._cms = self._build(CmsClient, "cms")
        return self._cms

    @property
    def launch(self) -> LaunchClient:
        """ECS launches: RunInstances and its reads (shared/launch.py, imported on first use)."""
        if self._launch is None:
            from shared.launch import LaunchClient

            self._launch = self._build(LaunchClient, "ecs")
        return self._launch
