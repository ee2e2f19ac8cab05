"""The Bicep templates in infra/: checkov's rules, and ours for what checkov has no rule for.

No Bicep compiler runs here, so the templates are read as text: each `resource` block is
cut out by bracket matching (strings and comments skipped) and its properties are read
with small regular expressions. That is enough for templates written in the plain style
of infra/ (one property per line), and every helper fails loudly when it finds nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.state import CONTAINERS

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CHECKOV = Path(sys.executable).parent / "checkov"

RESOURCE_HEADER = re.compile(
    r"^[ \t]*resource\s+(?P<symbol>\w+)\s+'(?P<type>[^'@]+)@(?P<version>[^']+)'\s*(?P<existing>existing\s*)?=",
    re.MULTILINE)
SKIP_COMMENT = re.compile(r"checkov:skip=(?P<id>[^:\s]*)(?::(?P<reason>.*))?")
ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


# -- reading Bicep as text ----------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """A bracketed part of a template: a resource's body or one of its nested objects."""

    where: str  # file and resource symbol, for messages
    body: str  # from an opening bracket to its match, inclusive

    def value(self, key: str) -> str:
        """The value of this block's own `key: value` line (not a nested object's), exactly one."""
        found = [match[1] for _, line in self._own_lines()
                 if (match := re.fullmatch(rf"\s*{re.escape(key)}:\s*(.+?)\s*", line))]
        assert len(found) == 1, f"{self.where}: expected one {key!r}, found {found}"
        return found[0]

    def section(self, key: str) -> Block:
        """The multi-line object or array this block's own `key:` opens, exactly one."""
        found = [offset + match.start(1) for offset, line in self._own_lines()
                 if (match := re.fullmatch(rf"\s*{re.escape(key)}:\s*([{{\[])\s*", line))]
        assert len(found) == 1, f"{self.where}: expected one {key!r} section, found {len(found)}"
        return Block(f"{self.where}.{key}", self.body[found[0]:_block_end(self.body, found[0])])

    def _own_lines(self) -> list[tuple[int, str]]:
        """(offset in body, code without comment) of the lines directly inside this block."""
        own, depth, offset = [], 0, 0
        for line in self.body.splitlines(keepends=True):
            code = _code_of(line)
            if depth == 1:
                own.append((offset, code.rstrip()))
            bare = re.sub(r"'(?:[^'\\]|\\.)*'", "''", code)
            depth += sum(bare.count(c) for c in "{[") - sum(bare.count(c) for c in "}]")
            offset += len(line)
        return own


def _code_of(line: str) -> str:
    """The line without its `//` comment; a `//` inside a string (a URL) is kept."""
    in_string, i = False, 0
    while i < len(line):
        if in_string and line[i] == "\\":
            i += 2
            continue
        if line[i] == "'":
            in_string = not in_string
        elif not in_string and line.startswith("//", i):
            return line[:i]
        i += 1
    return line


@dataclass(frozen=True)
class Resource(Block):
    file: str
    symbol: str
    type: str
    existing: bool


def _without_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return "".join(_code_of(line) for line in text.splitlines(keepends=True))


def _block_end(text: str, start: int) -> int:
    """Index just past the bracket matching text[start], skipping strings and comments."""
    closing = {"{": "}", "[": "]", "(": ")"}
    stack, i = [], start
    while i < len(text):
        char = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        if text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        if char == "'":
            i += 1
            while text[i] != "'":
                i += 2 if text[i] == "\\" else 1
        elif char in closing:
            stack.append(closing[char])
        elif stack and char == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    raise AssertionError(f"unbalanced brackets from offset {start}")


def parse_resources(path: Path) -> list[Resource]:
    text = path.read_text(encoding="utf-8")
    resources = []
    for match in RESOURCE_HEADER.finditer(text):
        opening = re.compile(r"[{\[]").search(text, match.end()).start()
        file = str(path.relative_to(ROOT))
        resources.append(Resource(where=f"{file} {match['symbol']}", body=text[opening:_block_end(text, opening)],
                                  file=file, symbol=match["symbol"], type=match["type"],
                                  existing=bool(match["existing"])))
    return resources


BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
RESOURCES = [resource for path in BICEP_FILES for resource in parse_resources(path)]


def declared(type_: str) -> list[Resource]:
    return [r for r in RESOURCES if r.type == type_ and not r.existing]


def the_one(type_: str) -> Resource:
    found = declared(type_)
    assert len(found) == 1, f"expected one {type_}, found {[r.symbol for r in found]}"
    return found[0]


def app_settings() -> dict[str, str]:
    site = the_one("Microsoft.Web/sites")
    entries = site.section("properties").section("siteConfig").section("appSettings")
    pairs = re.findall(r"^\s*\{\s*name:\s*'([^']+)',\s*value:\s*(.+?)\s*\}\s*$", entries.body, re.MULTILINE)
    assert pairs, "no appSettings entries found on the Function App"
    return dict(pairs)


def read(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


# -- checkov ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    # --skip-download: no call to the Prisma Cloud API for guideline links (offline CI).
    completed = subprocess.run(
        [str(CHECKOV), "--framework", "bicep", "-d", str(INFRA), "--compact", "--quiet", "-o", "json",
         "--skip-download"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert completed.stdout.strip(), f"checkov printed nothing: {completed.stderr[-2000:]}"
    report = json.loads(completed.stdout)
    reports = report if isinstance(report, list) else [report]
    (bicep,) = [r for r in reports if r.get("check_type") == "bicep"]
    return bicep


def test_checkov_parses_every_template(checkov_report):
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= len([r for r in RESOURCES if not r.existing])
    assert summary["passed"] > 0


def test_checkov_finds_no_failed_check(checkov_report):
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for c in checkov_report.get("results", {}).get("failed_checks", [])]
    assert checkov_report["summary"]["failed"] == 0, "\n".join(failed)


def test_every_checkov_skip_is_an_inline_comment_with_a_reason():
    skips = [(path.name, line.strip()) for path in BICEP_FILES
             for line in path.read_text(encoding="utf-8").splitlines() if "checkov:skip" in line]
    assert skips, "expected the documented skips (network exposure without a virtual network)"
    for file, line in skips:
        match = SKIP_COMMENT.search(line)
        assert line.startswith("// checkov:skip="), f"{file}: {line}"
        assert re.fullmatch(r"CKV2?_AZURE_\d+", match["id"]), f"{file}: one check id per skip: {line}"
        assert match["reason"] and len(match["reason"].split()) >= 8, f"{file}: the skip needs a reason: {line}"
    config_files = [found for folder in (ROOT, INFRA) for found in folder.glob(".checkov.y*ml")]
    assert not config_files, "skips belong next to the resource, not in a checkov config file"


def test_every_checkov_skip_suppresses_a_check_that_applies(checkov_report):
    """A skip for a check that no longer applies is dead weight: the counts must agree."""
    comments = sum(line.count("checkov:skip=") for path in BICEP_FILES
                   for line in path.read_text(encoding="utf-8").splitlines())
    assert checkov_report["summary"]["skipped"] == comments


# -- storage ------------------------------------------------------------------------------

def test_storage_account_accepts_only_entra_id_over_tls_1_2():
    storage = the_one("Microsoft.Storage/storageAccounts").section("properties")
    assert storage.value("allowSharedKeyAccess") == "false"
    assert storage.value("allowBlobPublicAccess") == "false"
    assert storage.value("minimumTlsVersion") == "'TLS1_2'"
    assert storage.value("supportsHttpsTrafficOnly") == "true"
    assert storage.value("defaultToOAuthAuthentication") == "true"


def test_the_products_containers_and_the_deployment_container_are_created_private():
    main = read("infra/main.bicep")
    product = re.search(r"var productContainers = \[(.*?)\]", main, re.DOTALL)[1]
    assert re.findall(r"'([^']+)'", product) == list(CONTAINERS)  # what shared/state/storage.py uses
    assert {"segments", "exports", "export-runs", "export-state"} <= set(CONTAINERS)
    assert "containerNames: concat(productContainers, [deploymentContainerName])" in main
    assert re.search(r"var deploymentContainerName = 'app-package-", main)
    container = the_one("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert re.search(r"^\s*publicAccess: 'None'$", container.body, re.MULTILINE)


# -- key vault ----------------------------------------------------------------------------

def test_key_vault_uses_rbac_and_keeps_deleted_secrets_recoverable():
    vault = the_one("Microsoft.KeyVault/vaults").section("properties")
    assert vault.value("enableRbacAuthorization") == "true"
    assert vault.value("enableSoftDelete") == "true"
    assert vault.value("softDeleteRetentionInDays") == "90"
    assert vault.value("enablePurgeProtection") == "true"
    assert "accessPolicies" not in vault.body


# -- monitoring ---------------------------------------------------------------------------

def test_application_insights_accepts_only_entra_id_telemetry_into_log_analytics():
    insights = the_one("Microsoft.Insights/components").section("properties")
    assert insights.value("DisableLocalAuth") == "true"
    assert insights.value("WorkspaceResourceId") == "workspace.id"
    the_one("Microsoft.OperationalInsights/workspaces")


def test_the_vaults_audit_and_the_blob_access_log_go_to_the_workspace_which_takes_no_shared_key():
    """Who read a credential or a segment: with public endpoints on, these logs are how it is traced."""
    settings = {r.file: r for r in declared("Microsoft.Insights/diagnosticSettings")}
    vault, blobs = settings["infra/app/keyvault.bicep"], settings["infra/app/storage.bicep"]
    assert vault.section("properties").value("workspaceId") == "logAnalyticsWorkspaceId"
    assert re.search(r"scope: vault\b", vault.body) and "'AuditEvent'" in vault.body
    assert re.search(r"scope: blobService\b", blobs.body)
    assert all(f"'{category}'" in blobs.body for category in ("StorageRead", "StorageWrite", "StorageDelete"))
    assert read("infra/main.bicep").count("logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId") == 2
    workspace = the_one("Microsoft.OperationalInsights/workspaces").section("properties")
    assert workspace.section("features").value("disableLocalAuth") == "true"


def test_instances_are_never_smaller_than_the_concurrency_host_json_is_sized_for():
    allowed = re.search(r"@allowed\(\[([^\]]*)\]\)\s*param instanceMemoryMB", read("infra/main.bicep"))[1]
    assert sorted(int(value) for value in allowed.split()) == [2048, 4096]


# -- no secrets ---------------------------------------------------------------------------

def test_no_template_reads_or_builds_a_key_sas_or_keyed_connection_string():
    for path in BICEP_FILES:
        text = _without_comments(path.read_text(encoding="utf-8"))
        for forbidden in ("listKeys(", "listAccountSas(", "listServiceSas(", "listSecrets(", "AccountKey=",
                          "SharedAccessSignature", "SharedAccessKey", "primaryKey", "InstrumentationKey="):
            assert forbidden not in text, f"{path.name} contains {forbidden}"


def test_app_settings_are_identity_based_and_hold_no_secret():
    settings = app_settings()
    allowed = {"KEY_VAULT_URL", "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}
    for name in settings:
        if name not in allowed:
            assert not re.search(r"KEY|SECRET|PASSWORD|TOKEN|SAS", name.upper()), f"secret-like app setting {name}"
    assert "AzureWebJobsStorage" not in settings  # the connection-string form; identity settings only
    assert settings["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    for service in ("blob", "queue", "table"):  # Durable Functions needs all three
        assert settings[f"AzureWebJobsStorage__{service}ServiceUri"] == f"storage.properties.primaryEndpoints.{service}"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "'ClientId=${identityClientId};Authorization=AAD'"
    assert settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "applicationInsights.properties.ConnectionString"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["KEY_VAULT_URL"] == "keyVaultUrl"
    assert settings["EXPORT_SCHEDULE"] == "exportSchedule"


def test_app_settings_leave_runtime_and_worker_to_the_flex_consumption_config():
    # Flex Consumption rejects these: the runtime comes from functionAppConfig.runtime.
    for name in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                 "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE"):
        assert name not in app_settings()


def test_the_python_worker_has_a_thread_for_every_concurrent_activity():
    host = json.loads(read("host.json"))
    threads = int(app_settings()["PYTHON_THREADPOOL_THREAD_COUNT"].strip("'"))
    assert threads > host["extensions"]["durableTask"]["maxConcurrentActivityFunctions"]


def test_deployment_package_leaves_out_tests_infra_and_azd_state():
    ignored = set(read(".funcignore").split())
    assert {"tests", "infra", "azure.yaml", ".azure", "local.settings.json", ".venv"} <= ignored
    assert ".azure/" in read(".gitignore").split()


def test_the_export_schedule_parameter_defaults_to_two_in_the_morning_utc():
    assert "param exportSchedule string = '0 0 2 * * *'" in read("infra/main.bicep")


# -- role assignments ---------------------------------------------------------------------

def role_assignments() -> list[tuple[str, Resource, str]]:
    """(role name, scope resource, principal expression) for every role assignment."""
    assignments = []
    for path in BICEP_FILES:
        text = path.read_text(encoding="utf-8")
        role_vars = dict(re.findall(r"^var (\w+) = '([0-9a-f-]{36})'", text, re.MULTILINE))
        symbols = {r.symbol: r for r in RESOURCES if r.file == str(path.relative_to(ROOT))}
        for resource in symbols.values():
            if resource.type != "Microsoft.Authorization/roleAssignments":
                continue
            scope = resource.value("scope")
            assert re.fullmatch(r"\w+", scope), f"{resource.symbol}: scope must be one resource, not {scope}"
            assert scope in symbols, f"{resource.symbol}: scope {scope} is not a resource of {path.name}"
            properties = resource.section("properties")
            role = re.fullmatch(r"subscriptionResourceId\('Microsoft.Authorization/roleDefinitions', (\w+)\)",
                                properties.value("roleDefinitionId"))
            assert role and role[1] in role_vars, f"{resource.symbol}: role definition not a known role id variable"
            assignments.append((ROLE_IDS[role_vars[role[1]]], symbols[scope], properties.value("principalId")))
    return assignments


def test_every_role_assignment_is_scoped_to_a_single_resource():
    """Never the subscription or the resource group: role_assignments() checks that each
    scope is one resource symbol of the same file; here, that it is one of the three."""
    assignments = role_assignments()
    assert len(assignments) == len(declared("Microsoft.Authorization/roleAssignments"))
    for _, scope, _ in assignments:
        assert scope.type in {"Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults",
                              "Microsoft.Insights/components"}, scope.where
    for path in BICEP_FILES:
        text = path.read_text(encoding="utf-8")
        if re.search(r"^targetScope = '(subscription|managementGroup|tenant)'", text, re.MULTILINE):
            assert "Microsoft.Authorization/roleAssignments" not in text, path.name


def test_the_app_identity_and_the_deploying_user_get_exactly_the_roles_they_need():
    granted = {(role, scope.type, principal) for role, scope, principal in role_assignments()}
    storage, vault, insights = ("Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults",
                                "Microsoft.Insights/components")
    assert granted == {
        ("Storage Blob Data Owner", storage, "identityPrincipalId"),
        ("Storage Queue Data Contributor", storage, "identityPrincipalId"),
        ("Storage Table Data Contributor", storage, "identityPrincipalId"),
        ("Key Vault Secrets User", vault, "identityPrincipalId"),
        ("Monitoring Metrics Publisher", insights, "identityPrincipalId"),
        ("Storage Blob Data Contributor", storage, "principalId"),
        ("Key Vault Secrets Officer", vault, "principalId"),
    }


def test_the_deploying_users_roles_are_skipped_when_no_principal_is_given():
    for resource in declared("Microsoft.Authorization/roleAssignments"):
        if resource.section("properties").value("principalId") == "principalId":
            header = re.search(rf"resource {resource.symbol} '[^']+' = (if \(!empty\(principalId\)\) )?\{{",
                               read(resource.file))
            assert header and header[1], f"{resource.symbol} must be conditional on principalId"


# -- function app -------------------------------------------------------------------------

def test_function_app_runs_python_3_11_on_flex_consumption_with_its_user_assigned_identity():
    sku = the_one("Microsoft.Web/serverfarms").section("sku")
    assert sku.value("name") == "'FC1'" and sku.value("tier") == "'FlexConsumption'"
    site = the_one("Microsoft.Web/sites")
    assert site.value("kind") == "'functionapp,linux'"
    assert site.section("properties").value("serverFarmId") == "plan.id"
    identity = site.section("identity")
    assert identity.value("type") == "'UserAssigned'" and "'${identityId}': {}" in identity.body
    config = site.section("properties").section("functionAppConfig")
    runtime = config.section("runtime")
    assert runtime.value("name") == "'python'" and runtime.value("version") == "'3.11'"
    storage = config.section("deployment").section("storage")
    assert storage.value("type") == "'blobContainer'"
    assert storage.value("value") == "'${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'"
    authentication = storage.section("authentication")
    assert authentication.value("type") == "'UserAssignedIdentity'"
    assert authentication.value("userAssignedIdentityResourceId") == "identityId"
    scale = config.section("scaleAndConcurrency")
    assert scale.value("instanceMemoryMB") == "instanceMemoryMB"
    assert scale.value("maximumInstanceCount") == "maximumInstanceCount"


def test_function_app_is_https_only_with_tls_1_2_and_no_basic_publishing():
    site = the_one("Microsoft.Web/sites")
    assert site.section("properties").value("httpsOnly") == "true"
    site_config = site.section("properties").section("siteConfig")
    assert site_config.value("ftpsState") == "'Disabled'"
    assert site_config.value("minTlsVersion") == "'1.2'"
    assert site_config.value("scmMinTlsVersion") == "'1.2'"
    policies = {p.value("name"): p for p in declared("Microsoft.Web/sites/basicPublishingCredentialsPolicies")}
    assert set(policies) == {"'ftp'", "'scm'"}
    for policy in policies.values():
        assert policy.value("parent") == site.symbol
        assert policy.section("properties").value("allow") == "false"


def test_function_app_is_tagged_as_the_service_azure_yaml_deploys():
    azure_yaml = read("azure.yaml")
    services = re.search(r"^services:\n((?:[ \t]+.*\n?)+)", azure_yaml, re.MULTILINE)[1]
    assert re.findall(r"^  (\w+):", services, re.MULTILINE) == ["api"]
    assert re.search(r"^    project: \.\s*$", services, re.MULTILINE)
    assert re.search(r"^    language: python\s*$", services, re.MULTILINE)
    assert re.search(r"^    host: function\s*$", services, re.MULTILINE)
    site = the_one("Microsoft.Web/sites")
    assert site.value("tags") == "union(tags, { 'azd-service-name': serviceName })"
    assert "serviceName: 'api'" in read("infra/main.bicep")


# -- main.bicep and azd -------------------------------------------------------------------

def test_main_template_creates_the_resource_group_tagged_with_the_azd_environment():
    main = read("infra/main.bicep")
    assert re.search(r"^targetScope = 'subscription'$", main, re.MULTILINE)
    for parameter in ("param environmentName string", "param location string", "param principalId string = ''"):
        assert parameter in main
    assert "var tags = { 'azd-env-name': environmentName }" in main
    group = the_one("Microsoft.Resources/resourceGroups")
    assert group.value("tags") == "tags"
    # everything else is deployed into that group through modules
    assert [r.symbol for r in parse_resources(INFRA / "main.bicep")] == [group.symbol]
    assert len(re.findall(r"^module \w+ '[^']+' = \{\n  name: '\w+'\n  scope: rg$", main, re.MULTILINE)) == \
        len(re.findall(r"^module ", main, re.MULTILINE))


def test_main_template_outputs_what_azd_and_the_readme_use():
    outputs = set(re.findall(r"^output (\w+) string", read("infra/main.bicep"), re.MULTILINE))
    assert {"AZURE_LOCATION", "AZURE_TENANT_ID", "RESOURCE_GROUP", "AZURE_FUNCTION_NAME", "SERVICE_API_NAME",
            "AZURE_KEY_VAULT_NAME", "AZURE_KEY_VAULT_URL", "KEY_VAULT_URL", "AZURE_STORAGE_ACCOUNT_NAME",
            "AZURE_STORAGE_BLOB_ENDPOINT"} <= outputs


def test_parameters_file_takes_its_values_from_the_azd_environment():
    parameters = json.loads(read("infra/main.parameters.json"))["parameters"]
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    main = read("infra/main.bicep")
    for name in parameters:
        assert re.search(rf"^param {name} ", main, re.MULTILINE), f"{name} is not a parameter of main.bicep"


def test_modules_and_abbreviations_named_in_main_exist():
    main = read("infra/main.bicep")
    for module in re.findall(r"^module \w+ '([^']+)'", main, re.MULTILINE):
        assert (INFRA / module).is_file(), module
    abbreviations = json.loads(read("infra/abbreviations.json"))
    for key in re.findall(r"abbrs\.(\w+)", main):
        assert key in abbreviations, key
