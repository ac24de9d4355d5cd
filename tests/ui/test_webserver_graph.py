"""The real webserver shows what the definitions define.

``dagster-webserver -w workspace.yaml`` runs on a free loopback port, with a fresh Dagster home (the
project's telemetry-off ``dagster.yaml``) and a private ``FINAI_WORKDIR``. What its GraphQL reports for
the ``finai`` location is compared with ``finai_assets.definitions.defs()`` loaded in this process:
every asset (and its group), every asset check (and its blocking flag), every job, schedule and
sensor. Nothing is listed by hand, so what others add to the definitions is covered as it appears;
whatever the definitions hold and the webserver lacks fails the test, by name.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from finai_assets.instance import INSTANCE_TEMPLATE
from finai_models.config import REPO_ROOT

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it

LOCATION = "finai"
REPOSITORY = "__repository__"
READY_SECONDS = 180

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}"""

REPOSITORY_QUERY = """
query Repository($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename
    ... on Repository {
      name
      assetNodes {
        assetKey { path }
        groupName
        assetChecksOrError {
          __typename
          ... on AssetChecks { checks { name blocking } }
          ... on AssetCheckNeedsMigrationError { message }
          ... on AssetCheckNeedsUserCodeUpgrade { message }
          ... on AssetCheckNeedsAgentUpgradeError { message }
        }
      }
      jobs { name }
      schedules { name cronSchedule }
      sensors { name }
    }
    ... on RepositoryNotFoundError { message }
    ... on PythonError { message }
  }
}"""


def graphql(url: str, query: str, **variables) -> dict:
    """POST one GraphQL query; its ``data``, or an AssertionError carrying the server's errors."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        doc = json.load(response)
    assert not doc.get("errors"), f"GraphQL errors: {doc['errors']}"
    return doc["data"]


# --- what a location holds, in a form both sides can be compared in -----------------------------


def _crons(value: str | Iterable[str]) -> tuple[str, ...]:
    """A schedule's cron strings. GraphQL sends ``str(cron_schedule)``: a list arrives as its repr."""
    if isinstance(value, str):
        if value.startswith(("[", "(")):
            return tuple(ast.literal_eval(value))
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class Catalog:
    """A code location's contents: asset key ("a/b") -> group, (asset key, check) -> blocking, and
    the names of its jobs, schedules (-> cron strings) and sensors."""

    assets: dict[str, str | None]
    checks: dict[tuple[str, str], bool]
    jobs: frozenset[str]
    schedules: dict[str, tuple[str, ...]]
    sensors: frozenset[str]

    @classmethod
    def from_definitions(cls, defs: dg.Definitions) -> Catalog:
        """What ``defs`` defines, resolved as the code server resolves it."""
        graph = defs.resolve_asset_graph()
        repository = defs.get_repository_def()
        return cls(
            assets={key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()},
            checks={(key.asset_key.to_user_string(), key.name): graph.get(key).blocking
                    for key in graph.asset_check_keys},
            jobs=frozenset(job.name for job in repository.get_all_jobs()),
            schedules={s.name: _crons(s.cron_schedule) for s in repository.schedule_defs},
            sensors=frozenset(s.name for s in repository.sensor_defs),
        )

    @classmethod
    def from_graphql(cls, repository: dict) -> Catalog:
        """What the webserver reports: ``repositoryOrError`` of ``REPOSITORY_QUERY`` (a Repository)."""
        assets, checks = {}, {}
        for node in repository["assetNodes"]:
            key = dg.AssetKey(node["assetKey"]["path"]).to_user_string()
            assets[key] = node["groupName"]
            answer = node["assetChecksOrError"]
            assert answer["__typename"] == "AssetChecks", f"the checks of {key} did not load: {answer}"
            checks.update({(key, c["name"]): c["blocking"] for c in answer["checks"]})
        return cls(
            assets=assets,
            checks=checks,
            jobs=frozenset(j["name"] for j in repository["jobs"]),
            schedules={s["name"]: _crons(s["cronSchedule"]) for s in repository["schedules"]},
            sensors=frozenset(s["name"] for s in repository["sensors"]),
        )


def compare(defined: Catalog, reported: Catalog) -> list[str]:
    """What the definitions hold and the webserver does not show (or shows otherwise), one line each.

    Extra things on the webserver's side are not problems (Dagster may add its own, e.g. the default
    automation-condition sensor); they are named only to help read a failure.
    """
    problems: list[str] = []

    def missing(what: str, names: Iterable[str]) -> None:
        names = sorted(names)
        if names:
            problems.append(f"{len(names)} {what} missing from the webserver: {', '.join(names)}")

    def check_name(key: tuple[str, str]) -> str:
        return f"{key[0]}:{key[1]}"

    missing("asset(s)", defined.assets.keys() - reported.assets.keys())
    problems += [f"asset {key}: group {group!r} in the definitions, {reported.assets[key]!r} on the webserver"
                 for key, group in sorted(defined.assets.items())
                 if key in reported.assets and reported.assets[key] != group]
    missing("asset check(s)", map(check_name, defined.checks.keys() - reported.checks.keys()))
    problems += [f"asset check {check_name(key)}: blocking={blocking} in the definitions, "
                 f"blocking={reported.checks[key]} on the webserver"
                 for key, blocking in sorted(defined.checks.items())
                 if key in reported.checks and reported.checks[key] != blocking]
    missing("job(s)", defined.jobs - reported.jobs)
    missing("schedule(s)", defined.schedules.keys() - reported.schedules.keys())
    problems += [f"schedule {name}: cron {crons} in the definitions, {reported.schedules[name]} on the webserver"
                 for name, crons in sorted(defined.schedules.items())
                 if name in reported.schedules and reported.schedules[name] != crons]
    missing("sensor(s)", defined.sensors - reported.sensors)
    if problems:
        extras = {
            "assets": sorted(reported.assets.keys() - defined.assets.keys()),
            "checks": sorted(map(check_name, reported.checks.keys() - defined.checks.keys())),
            "jobs": sorted(reported.jobs - defined.jobs),
            "schedules": sorted(reported.schedules.keys() - defined.schedules.keys()),
            "sensors": sorted(reported.sensors - defined.sensors),
        }
        extras = {kind: names for kind, names in extras.items() if names}
        if extras:
            problems.append(f"(only on the webserver: {extras})")
    return problems


# --- the webserver --------------------------------------------------------------------------------


@dataclass
class Webserver:
    url: str
    log: Path
    process: subprocess.Popen

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def location_entry(self) -> dict | None:
        workspace = graphql(self.url, WORKSPACE_QUERY)["workspaceOrError"]
        assert workspace["__typename"] == "Workspace", f"the workspace did not load: {workspace}"
        return next((e for e in workspace["locationEntries"] if e["name"] == LOCATION), None)


def _screenshot_script():
    """``infra/local/screenshot_ui.py`` (not a package): its webserver start, wait and stop are reused here."""
    spec = importlib.util.spec_from_file_location("screenshot_ui", REPO_ROOT / "infra" / "local" / "screenshot_ui.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


UI = _screenshot_script()


@pytest.fixture(scope="module")
def webserver(tmp_path_factory) -> Webserver:
    """``dagster-webserver -w workspace.yaml`` from the repository root, on a free loopback port, with a
    fresh telemetry-off Dagster home and a private work directory; its process group is stopped after."""
    tmp = tmp_path_factory.mktemp("webserver")
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "FINAI_WORKDIR": str(tmp / "work")}
    port, log = UI.free_port(), tmp / "webserver.log"
    command = [str(Path(sys.executable).with_name("dagster-webserver")), "-w", "workspace.yaml",
               "-h", "127.0.0.1", "-p", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Webserver(f"http://127.0.0.1:{port}/graphql", log, process)
    try:
        UI.wait_for_location(server.url, process, log, READY_SECONDS)
        yield server
    finally:
        UI.stop(process)


@pytest.fixture(scope="module")
def defined() -> Catalog:
    """The definitions as this process loads them (the same module the workspace names)."""
    from finai_assets.definitions import defs

    catalog = Catalog.from_definitions(defs())
    assert catalog.assets, "finai_assets.definitions.defs() defines no assets: nothing to compare"
    return catalog


def _location_error(entry: dict | None) -> str | None:
    if entry is None:
        return f"the workspace has no location named {LOCATION!r}"
    answer = entry["locationOrLoadError"]
    if answer is None or answer["__typename"] == "PythonError":
        detail = "" if answer is None else f"{answer['message']}\n{''.join(answer.get('stack') or [])[-3000:]}"
        return f"location {LOCATION!r} failed to load: {detail}"
    return None


def test_location_loads(webserver: Webserver):
    error = _location_error(webserver.location_entry())
    assert error is None, error


def test_webserver_shows_every_definition(webserver: Webserver, defined: Catalog):
    error = _location_error(webserver.location_entry())
    assert error is None, error
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    answer = graphql(webserver.url, REPOSITORY_QUERY, selector=selector)["repositoryOrError"]
    assert answer["__typename"] == "Repository", f"repository {REPOSITORY} of {LOCATION}: {answer}"
    problems = compare(defined, Catalog.from_graphql(answer))
    assert not problems, "the webserver does not show what the definitions define:\n" + "\n".join(problems)


# --- the comparison can fail: a webserver answer with one thing left out or changed ---------------


def _small_definitions() -> dg.Definitions:
    @dg.asset(group_name="sources")
    def a() -> None: ...

    @dg.asset(group_name="derived", deps=[a])
    def b() -> None: ...

    @dg.asset_check(asset=a, blocking=True)
    def a_ok() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    both = dg.define_asset_job("both", selection=[a, b])

    @dg.sensor(job=both)
    def watcher():
        return None

    nightly = dg.ScheduleDefinition(name="nightly", job=both, cron_schedule="0 3 * * *")
    return dg.Definitions(assets=[a, b], asset_checks=[a_ok], jobs=[both], schedules=[nightly], sensors=[watcher])


def _answer() -> dict:
    """What the webserver would answer for ``_small_definitions`` (the shape ``REPOSITORY_QUERY`` asks for)."""
    checks = {"__typename": "AssetChecks", "checks": [{"name": "a_ok", "blocking": True}]}
    return {
        "__typename": "Repository",
        "name": REPOSITORY,
        "assetNodes": [
            {"assetKey": {"path": ["a"]}, "groupName": "sources", "assetChecksOrError": checks},
            {"assetKey": {"path": ["b"]}, "groupName": "derived",
             "assetChecksOrError": {"__typename": "AssetChecks", "checks": []}},
        ],
        "jobs": [{"name": "__ASSET_JOB"}, {"name": "both"}],
        "schedules": [{"name": "nightly", "cronSchedule": "0 3 * * *"}],
        "sensors": [{"name": "watcher"}],
    }


def _drop(items: list, name: str) -> None:
    items[:] = [i for i in items if i.get("name") != name]


def _checks_of_a(answer: dict) -> list[dict]:
    return answer["assetNodes"][0]["assetChecksOrError"]["checks"]


# name -> (how the answer is damaged, texts the one reported problem must contain)
BREAKAGES = {
    "asset": (lambda r: r["assetNodes"].pop(1), ["1 asset(s) missing from the webserver: b"]),
    "group": (lambda r: r["assetNodes"][0].update(groupName="elsewhere"), ["asset a: group 'sources'", "elsewhere"]),
    "check": (lambda r: _checks_of_a(r).clear(), ["1 asset check(s) missing from the webserver: a:a_ok"]),
    "blocking": (lambda r: _checks_of_a(r)[0].update(blocking=False), ["asset check a:a_ok: blocking=True"]),
    "job": (lambda r: _drop(r["jobs"], "both"), ["1 job(s) missing from the webserver: both"]),
    "schedule": (lambda r: _drop(r["schedules"], "nightly"), ["1 schedule(s) missing from the webserver: nightly"]),
    "cron": (lambda r: r["schedules"][0].update(cronSchedule="0 4 * * *"), ["schedule nightly: cron", "0 4 * * *"]),
    "sensor": (lambda r: _drop(r["sensors"], "watcher"), ["1 sensor(s) missing from the webserver: watcher"]),
}


def test_comparison_passes_a_complete_answer():
    defined = Catalog.from_definitions(_small_definitions())
    assert compare(defined, Catalog.from_graphql(_answer())) == []


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_comparison_names_what_the_webserver_lacks(breakage: str):
    defined = Catalog.from_definitions(_small_definitions())
    answer = _answer()
    damage, expected = BREAKAGES[breakage]
    damage(answer)
    problems = compare(defined, Catalog.from_graphql(answer))
    assert len([p for p in problems if not p.startswith("(")]) == 1, problems
    assert all(text in problems[0] for text in expected), problems
