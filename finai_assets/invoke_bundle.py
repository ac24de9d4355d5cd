#!/usr/bin/env python3
"""Run a FinAI Lambda bundle on this machine the way Lambda would, before anything is deployed.

A bundle that works in the dev virtualenv can still fail on Lambda: there the task root (the
unzipped bundle) and the runtime layer are all that is importable, so a handler that reaches for
dagster, torch or yaml breaks only after deployment. This script reproduces those conditions and
the bundle's integrity checks:

1. ``unpack``: extract into an empty folder, refusing entry names that are absolute or contain
   ``..`` (they would write outside it), then ``verify`` every file against the SHA-256 digests of
   ``model/manifest.json`` and refuse any file the manifest does not list.
2. ``build_deps``: the layer's stand-in, a folder of symlinks to the manifest's runtime packages and
   everything they require (recursively), resolved in this interpreter with importlib.metadata.
3. ``run_handler``: a clean ``python -B -S -E -s`` subprocess (no bytecode written, as on Lambda's
   read-only task root; no site-packages, no PYTHON* variables, a minimal environment without
   credentials) whose sys.path is the task root, the deps folder and the standard library; it
   imports ``finai_serving.handler``, calls ``handler(event, None)`` and measures the cold start
   (import + first call) itself, so interpreter start-up is not counted.

Command line: the handler's JSON response goes to stdout; the included packages, the handler's own
output (Lambda's log stream) and the cold start go to stderr. Exit 0 when the handler returned a
dict, 1 with a one-line reason otherwise (a refused bundle runs nothing).

It ships in the finai_assets package (``python -m finai_assets.invoke_bundle``), so an installed
wheel can check its bundles; it imports only the standard library, and tests import it to call
``unpack``, ``invoke`` or ``invoke_timed``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

MANIFEST = "model/manifest.json"
FORMAT = 2

# Runs inside the clean interpreter. Everything the handler writes, Python prints and native
# libraries' writes to file descriptor 1 alike (LightGBM logs there), goes to stderr: Lambda sends it to
# the log stream, not the response. The saved descriptor carries one JSON document for the parent.
_RUNNER = """
import json, os, sys, time
task_root, deps = sys.argv[1], sys.argv[2]
sys.path[:] = [task_root, deps] + [p for p in sys.path if p]
event = json.loads(sys.stdin.read())
result_out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
t0 = time.perf_counter()
from finai_serving.handler import handler
t1 = time.perf_counter()
response = handler(event, None)
t2 = time.perf_counter()
result_out.write(json.dumps({"response": response, "import_s": t1 - t0, "call_s": t2 - t1}))
result_out.close()
"""


class BundleRefused(RuntimeError):
    """The bundle failed a check before anything in it ran."""


class HandlerFailed(RuntimeError):
    """The handler's import or call raised, timed out, or broke the response contract."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Invocation:
    """One cold call: the response, the timings measured in the subprocess, and its stderr."""

    response: dict[str, Any]
    import_s: float
    call_s: float
    log: str
    packages: list[str]

    @property
    def cold_start_s(self) -> float:
        return self.import_s + self.call_s


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check_entry_names(names: Iterable[str]) -> None:
    """Path traversal guard: every entry must land inside the destination folder."""
    for name in names:
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
            raise BundleRefused(f"zip entry {name!r} would be written outside the task root; nothing extracted")


def verify(task_root: Path) -> dict[str, Any]:
    """The manifest, once every file under ``task_root`` matches it (digest, nothing missing or extra)."""
    task_root = Path(task_root)
    manifest_path = task_root / MANIFEST
    if not manifest_path.is_file():
        raise BundleRefused(f"no {MANIFEST} in the bundle")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise BundleRefused(f"{MANIFEST} is not JSON: {e}") from None
    if manifest.get("format") != FORMAT:
        raise BundleRefused(f"{MANIFEST} has format {manifest.get('format')!r}; this invoker reads format {FORMAT}")
    listed, packages = manifest.get("files"), (manifest.get("runtime") or {}).get("packages")
    if not isinstance(listed, dict) or not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        raise BundleRefused(f"{MANIFEST} needs a 'files' object and a 'runtime.packages' list of names")
    present = {p.relative_to(task_root).as_posix() for p in task_root.rglob("*") if not p.is_dir()} - {MANIFEST}
    unlisted, missing = sorted(present - listed.keys()), sorted(listed.keys() - present)
    if unlisted:
        raise BundleRefused(f"files not in the manifest: {unlisted}")
    if missing:
        raise BundleRefused(f"files in the manifest but not in the bundle: {missing}")
    for name in sorted(listed):
        if _sha256(task_root / name) != listed[name]:
            raise BundleRefused(f"{name}: SHA-256 differs from the manifest; the bundle was changed after it was built")
    return manifest


def unpack(bundle: Path, dest: Path) -> dict[str, Any]:
    """Extract ``bundle`` into the empty folder ``dest`` (created if absent) and verify it; the manifest."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise BundleRefused(f"{dest} is not empty; a stale file there would run as part of the bundle")
    try:
        with zipfile.ZipFile(bundle) as z:
            _check_entry_names(z.namelist())
            z.extractall(dest)
    except zipfile.BadZipFile as e:
        raise BundleRefused(f"{bundle}: {e}") from None
    return verify(dest)


def _link_distribution(dist: importlib.metadata.Distribution, dest: Path) -> None:
    """Symlink the distribution's top-level entries (import packages, modules, ``*.libs``, dist-info).

    The dist-info travels too because a ``pip install --target`` layer has it, and libraries read
    their own and each other's versions through importlib.metadata. Entries under ``..`` (scripts,
    headers) lie outside site-packages and are not importable anyway.
    """
    if dist.files is None:
        raise BundleRefused(f"{dist.metadata['Name']} has no RECORD; its files cannot be told apart")
    for top in sorted({f.parts[0] for f in dist.files} - {"..", "__pycache__"}):
        source, link = Path(str(dist.locate_file(top))), dest / top
        if not source.exists() or (link.is_symlink() and link.resolve() == source.resolve()):
            continue
        link.symlink_to(source, target_is_directory=source.is_dir())


def build_deps(packages: Iterable[str], dest: Path) -> list[str]:
    """Link the runtime ``packages`` and their requirements into ``dest``; "name version" of each, sorted.

    A requirement counts when its marker holds here (for the extras asked for); a version pinned in the
    manifest must match the installed one, or the run would not show what the layer does.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    included: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [Requirement(p) for p in packages]
    while queue:
        req = queue.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            raise BundleRefused(f"runtime package {req.name!r} is not installed in {sys.executable}") from None
        if not req.specifier.contains(dist.version, prereleases=True):
            raise BundleRefused(f"runtime package {req} is required but {dist.version} is installed")
        _link_distribution(dist, dest)
        included[key[0]] = f"{dist.metadata['Name']} {dist.version}"
        extras = {""} | set(req.extras)
        for spec in dist.requires or []:
            dep = Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras):
                queue.append(dep)
    return sorted(included.values())


def run_handler(task_root: Path, deps: Path, event: Any, *, env: Mapping[str, str] | None = None,
                timeout: float = 60.0) -> tuple[dict[str, Any], float, float, str]:
    """Call the handler once in a clean interpreter; (response, import_s, call_s, stderr)."""
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": "UTC",
                 "LAMBDA_TASK_ROOT": str(task_root), **(env or {})}
    try:
        done = subprocess.run([sys.executable, "-B", "-S", "-E", "-s", "-c", _RUNNER, str(task_root), str(deps)],
                              input=json.dumps(event), capture_output=True, text=True, cwd=task_root,
                              env=clean_env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise HandlerFailed(f"no response within {timeout:g} s", e.stderr or "") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise HandlerFailed(f"the handler failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}",
                            done.stderr)
    result = json.loads(done.stdout)
    if not isinstance(result["response"], dict):
        raise HandlerFailed(f"the handler returned {type(result['response']).__name__}, not a dict", done.stderr)
    return result["response"], result["import_s"], result["call_s"], done.stderr


def invoke_timed(task_root: Path, event: Any, *, env: Mapping[str, str] | None = None,
                 timeout: float = 60.0) -> Invocation:
    """Verify ``task_root`` again (it may have changed since ``unpack``), link its deps, call the handler."""
    manifest = verify(task_root)
    with tempfile.TemporaryDirectory(prefix="finai-deps-") as tmp:
        packages = build_deps(manifest["runtime"]["packages"], Path(tmp) / "deps")
        response, import_s, call_s, log = run_handler(Path(task_root).resolve(), Path(tmp) / "deps", event,
                                                      env=env, timeout=timeout)
    return Invocation(response, import_s, call_s, log, packages)


def invoke(task_root: Path, event: Any, *, env: Mapping[str, str] | None = None, timeout: float = 60.0
           ) -> dict[str, Any]:
    """The handler's response to ``event`` (see ``invoke_timed``)."""
    return invoke_timed(task_root, event, env=env, timeout=timeout).response


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="the bundle zip")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--event", help="the event as JSON text")
    source.add_argument("--event-file", type=Path, help="a file holding the event as JSON")
    parser.add_argument("--env", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for the handler (repeatable), e.g. FINAI_L2A=off")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before the call is abandoned")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        event = json.loads(args.event if args.event is not None else args.event_file.read_text())
    except json.JSONDecodeError as e:
        print(f"the event is not JSON: {e}", file=sys.stderr)
        return 2
    env = dict(args.env)
    with tempfile.TemporaryDirectory(prefix="finai-task-") as tmp:
        try:
            manifest = unpack(args.bundle, Path(tmp) / "task")
            wanted, here = manifest["runtime"].get("python"), f"{sys.version_info[0]}.{sys.version_info[1]}"
            if wanted != here:
                print(f"note: the bundle targets Python {wanted}; this run uses {here}", file=sys.stderr)
            call = invoke_timed(Path(tmp) / "task", event, env=env, timeout=args.timeout)
        except BundleRefused as e:
            print(f"bundle refused: {e}", file=sys.stderr)
            return 1
        except HandlerFailed as e:
            print(f"{e.log}\n{e}", file=sys.stderr)
            return 1
    print(f"deps: {', '.join(call.packages)}", file=sys.stderr)
    print(call.log, end="", file=sys.stderr)
    print(f"cold start: {call.cold_start_s:.3f} s (import {call.import_s:.3f} s, first call {call.call_s:.3f} s)",
          file=sys.stderr)
    print(json.dumps(call.response))
    return 0


if __name__ == "__main__":
    sys.exit(main())
