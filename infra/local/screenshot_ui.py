#!/usr/bin/env python3
"""Screenshot a page of the Dagster UI (by default the global asset graph) with headless Chromium.

1. Dagster home: ``$DAGSTER_HOME`` when it is set and holds a ``dagster.yaml`` (so that instance's
   materialization history shows, e.g. ``DAGSTER_HOME=$(.venv/bin/python -m finai_assets.instance)``
   for the home ``make ui`` uses), else a temporary one holding a copy of ``finai_assets/dagster.yaml``
   (telemetry off). Either way ``<home>/.nux/nux.yaml`` is written if missing: it is what the UI's
   "Skip" on its "Join the Dagster community" dialog writes, and without it that dialog covers the page.
2. ``dagster-webserver -w workspace.yaml -h 127.0.0.1 -p <free port>`` from the repository root, from
   the virtualenv of the interpreter running this script, with ``FINAI_WORKDIR`` set to a temporary
   folder unless it is already set. The script waits until the ``finai`` location has loaded (and
   stops with its error if it failed to).
3. Headless Chromium opens ``--page`` and writes the PNG; it also dumps the page's DOM, which is
   checked. The default page, ``/asset-groups`` ("Global asset lineage"), opens every asset group
   through the page's own ``expanded`` URL parameter (group ids ``global@global:<group>``, the group
   names asked from GraphQL); without it the page shows one collapsed box per group.
   That page zooms the graph to fit its width and draws only what is inside the window, so a graph
   laid out left to right grows tall as others add assets. With the default height ``auto`` the first
   shot measures the laid-out graph (its SVG size and zoom, from the DOM) and a second one is taken
   with a window just tall enough for all of it (up to ``--max-height``). A shot counts when the DOM
   holds the graph with a box per asset and two per group; otherwise (still loading) it is taken again
   with twice the virtual time (``--budget``), twice at most.
4. The PNG is re-saved with a 256-colour palette when Pillow is importable and that makes it smaller
   (UI screenshots lose nothing visible); the webserver's process group is stopped and the temporary
   folders removed, whatever happened. A failed shot is kept next to ``--out`` as ``*.failed.png``.

Loopback traffic only; Chromium runs with background networking, component updates and sync off.

Examples::

    .venv/bin/python infra/local/screenshot_ui.py                        # -> docs/asset_graph.png
    .venv/bin/python infra/local/screenshot_ui.py --page /locations/finai/asset-groups/features --out /tmp/f.png
    .venv/bin/python infra/local/screenshot_ui.py --page /overview/automation --out /tmp/automation.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTANCE_TEMPLATE = REPO_ROOT / "finai_assets" / "dagster.yaml"  # = finai_assets.instance.INSTANCE_TEMPLATE
LOCATION = "finai"
GRAPH_PAGE = "/asset-groups"
DEFAULT_HEIGHT = 1800   # the first shot of an `auto` height, and the height of pages that are no graph
MARGIN = 56             # px kept free above and below a fitted graph (the toolbar floats over its top)

WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
GROUPS_QUERY = "{ assetNodes { groupName } }"

# The graph in the dumped DOM: the SVG holding the layout, inside the viewport div whose child carries the zoom.
_VIEWPORT = 'data-svg-viewport="1"'
_SVG = re.compile(r'<svg class="AssetGraphExplorer_svgContainer[^"]*" width="([\d.]+)" height="([\d.]+)"')
_MATRIX = re.compile(r"transform: matrix\(([-\d.e]+), 0, 0, ([-\d.e]+), ([-\d.e]+), ([-\d.e]+)\)")


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(url, json.dumps({"query": query}).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        doc = json.load(response)
    if doc.get("errors"):
        raise RuntimeError(f"GraphQL errors: {doc['errors']}")
    return doc["data"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dagster_home(temporary: list[Path]) -> Path:
    """$DAGSTER_HOME if it holds a dagster.yaml, else a new temporary home with the telemetry-off one."""
    given = os.environ.get("DAGSTER_HOME")
    if given and (Path(given) / "dagster.yaml").is_file():
        home = Path(given).resolve()
        print(f"Dagster home: {home} (from $DAGSTER_HOME)", file=sys.stderr)
    else:
        if given:
            print(f"$DAGSTER_HOME={given} holds no dagster.yaml: using a temporary home", file=sys.stderr)
        home = Path(tempfile.mkdtemp(prefix="finai-ui-home-"))
        temporary.append(home)
        shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    nux = home / ".nux" / "nux.yaml"
    if not nux.exists():
        nux.parent.mkdir(parents=True, exist_ok=True)
        nux.write_text("seen: 1\n")
    return home


def wait_for_location(url: str, process: subprocess.Popen, log: Path, seconds: float) -> None:
    """Until GraphQL answers and the finai location has loaded; an error if it failed to load."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            workspace = graphql(url, WORKSPACE_QUERY)["workspaceOrError"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            workspace = None
        entries = (workspace or {}).get("locationEntries") or []
        entry = next((e for e in entries if e["name"] == LOCATION), None)
        if entry and entry["loadStatus"] == "LOADED":
            answer = entry["locationOrLoadError"] or {}
            if answer.get("__typename") == "PythonError":
                raise RuntimeError(f"location {LOCATION!r} failed to load:\n{answer['message']}")
            return
        time.sleep(1)
    raise RuntimeError(f"the webserver did not load location {LOCATION!r} within {seconds:.0f} s:\n"
                       f"{log.read_text()[-4000:]}")


def page_url(base: str, page: str, groups: list[str], expand: bool) -> str:
    """The page's URL; the global graph page with every group open unless the page says otherwise."""
    parsed = urllib.parse.urlsplit(page if page.startswith("/") else "/" + page)
    query = urllib.parse.parse_qs(parsed.query)
    if expand and parsed.path.rstrip("/") == GRAPH_PAGE and "expanded" not in query and groups:
        query["expanded"] = [",".join(f"global@global:{g}" for g in groups)]
    encoded = urllib.parse.urlencode(query, doseq=True, safe="@:,/")
    return base + urllib.parse.urlunsplit(("", "", parsed.path, encoded, parsed.fragment))


def is_graph_page(path: str) -> bool:
    return "asset-groups" in path or path.rstrip("/").endswith("/lineage")


@dataclass(frozen=True)
class Graph:
    """The asset graph as the page drew it: layout size (SVG units), zoom, vertical offset (px), boxes."""

    width: float
    height: float
    scale: float
    top: float
    boxes: int

    def fitted_window_height(self, window_height: int) -> int:
        """The window height that shows all of the graph. The page centres the graph vertically
        (top = (viewport - height * scale) / 2), which gives the viewport's height, and so the height of
        the page around it, from one shot."""
        viewport = 2 * self.top + self.height * self.scale
        return math.ceil(window_height - viewport + self.height * self.scale + 2 * MARGIN)


def read_graph(dom: str) -> Graph | None:
    """The drawn graph, or None while the page shows none (loading, or no graph page)."""
    start = dom.find(_VIEWPORT)
    if start < 0:
        return None
    svg, matrix = _SVG.search(dom, start), _MATRIX.search(dom, start)
    if svg is None or matrix is None:
        return None
    return Graph(width=float(svg[1]), height=float(svg[2]), scale=float(matrix[1]), top=float(matrix[4]),
                 boxes=len(re.findall(r"<foreignObject\b", dom[start:])))


def not_rendered(dom: str, graph_page: bool, min_boxes: int) -> str | None:
    """Why the dumped DOM is not a finished page (None when it is)."""
    if "Join the Dagster community" in dom:
        return "the community dialog covers the page"
    if graph_page:
        graph = read_graph(dom)
        if graph is None:
            return "no asset graph yet (still loading, or too large for the page to draw unasked)"
        if graph.boxes < min_boxes:
            return (f"{graph.boxes} of {min_boxes} graph boxes drawn (still loading, or outside the window: "
                    "raise --max-height or the window's height)")
    return None


def screenshot(chromium: str, url: str, out: Path, width: int, height: int, budget_ms: int) -> str:
    """One headless shot of ``url`` into ``out``; returns the DOM Chromium dumped at the same moment."""
    profile = tempfile.mkdtemp(prefix="finai-ui-chromium-")
    try:
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={width},{height}",
                   f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", "--dump-dom", url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180 + budget_ms / 1000)
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError(f"chromium failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return done.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def shrink(png: Path) -> None:
    """Re-save with a 256-colour palette if Pillow is importable and the file gets smaller."""
    try:
        from PIL import Image
    except ImportError:
        return
    smaller = png.with_name(png.stem + ".palette.png")
    with Image.open(png) as image:
        image.convert("RGB").quantize(colors=256).save(smaller, optimize=True)
    if smaller.stat().st_size < png.stat().st_size:
        smaller.replace(png)
    else:
        smaller.unlink()


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the webserver's process group (it and its code server), SIGKILL after 30 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def shoot_page(chromium: str, url: str, shot: Path, width: int, height: int | None, budget: int,
               max_height: int, min_boxes: int) -> tuple[int, Graph | None]:
    """Shoot until the page is rendered (fitting the height first when ``height`` is None); the height
    used and the graph drawn. RuntimeError when three shots, each with twice the time, find it unfinished."""
    path = urllib.parse.urlsplit(url).path
    graph_page = is_graph_page(path)
    fit = height is None and graph_page
    height = height or DEFAULT_HEIGHT
    failures = 0
    while True:
        dom = screenshot(chromium, url, shot, width, height, budget)
        graph = read_graph(dom) if graph_page else None
        if fit and graph is not None:
            fit = False
            fitted = max(600, min(max_height, graph.fitted_window_height(height)))
            if abs(fitted - height) > 4:
                print(f"graph {graph.width:.0f}x{graph.height:.0f} at zoom {graph.scale:.3f}: "
                      f"window height {height} -> {fitted}", file=sys.stderr)
                height = fitted
                continue
        problem = not_rendered(dom, graph_page, min_boxes)
        if problem is None:
            return height, graph
        failures += 1
        print(f"shot {failures}: {problem} after {budget} ms of virtual time", file=sys.stderr)
        if failures == 3:
            raise RuntimeError(f"{url} did not render: {problem}; try a larger --budget")
        budget *= 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring for the steps.")
    parser.add_argument("--page", default=GRAPH_PAGE,
                        help="UI path to shoot (default %(default)s, the global asset graph; e.g. "
                             "/locations/finai/asset-groups/features or /overview/automation)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "asset_graph.png",
                        help="PNG to write (default docs/asset_graph.png)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium binary (default %(default)s)")
    parser.add_argument("--window-size", default="2000,auto",
                        help="browser window W,H in px; H=auto fits a graph page's height to its graph "
                             f"(other pages get {DEFAULT_HEIGHT}) (default %(default)s)")
    parser.add_argument("--max-height", type=int, default=6000, help="largest auto height (default %(default)s)")
    parser.add_argument("--budget", type=int, default=10000,
                        help="Chromium --virtual-time-budget in ms for the page to render (default %(default)s)")
    parser.add_argument("--collapsed", action="store_true", help="leave the asset groups of the graph page collapsed")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the code location to load")
    args = parser.parse_args(argv)

    size = re.fullmatch(r"(\d+),(\d+|auto)", args.window_size)
    if size is None:
        parser.error("--window-size takes W,H or W,auto, e.g. 2000,auto or 2400,1400")
    width, height = int(size[1]), None if size[2] == "auto" else int(size[2])
    chromium = shutil.which(args.chromium)
    if chromium is None:
        print(f"Chromium not found at {args.chromium}: install it with `apt-get install chromium` "
              "(Debian; as root or with sudo), or pass --chromium PATH", file=sys.stderr)
        return 2
    webserver = Path(sys.executable).with_name("dagster-webserver")
    if not webserver.exists():
        print(f"{webserver} not found: install the dev extra (pip install -e '.[dev]')", file=sys.stderr)
        return 2

    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary: list[Path] = []
    process = None
    try:
        env = {**os.environ, "DAGSTER_HOME": str(dagster_home(temporary))}
        if not env.get("FINAI_WORKDIR"):
            env["FINAI_WORKDIR"] = tempfile.mkdtemp(prefix="finai-ui-work-")
            temporary.append(Path(env["FINAI_WORKDIR"]))
        scratch = Path(tempfile.mkdtemp(prefix="finai-ui-"))
        temporary.append(scratch)
        port, log, shot = free_port(), scratch / "webserver.log", scratch / "shot.png"
        with log.open("w") as sink:
            process = subprocess.Popen([str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                                       cwd=REPO_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        wait_for_location(f"{base}/graphql", process, log, args.timeout)

        nodes = graphql(f"{base}/graphql", GROUPS_QUERY)["assetNodes"]
        groups = sorted({n["groupName"] for n in nodes if n["groupName"]})
        url = page_url(base, args.page, groups, expand=not args.collapsed)
        expanded = urllib.parse.urlsplit(url).path.rstrip("/") == GRAPH_PAGE and "expanded=" in url
        # Expanded, the global graph draws a box per asset and, per group, its outline and its title.
        min_boxes = len(nodes) + 2 * len(groups) if expanded else 0
        try:
            height, graph = shoot_page(chromium, url, shot, width, height, args.budget, args.max_height, min_boxes)
        except RuntimeError:
            if shot.is_file():
                failed = out.with_name(out.stem + ".failed.png")
                shutil.copyfile(shot, failed)
                print(f"the last shot: {failed}", file=sys.stderr)
            raise
        shrink(shot)
        shutil.copyfile(shot, out)
        what = f"; {len(nodes)} assets in {len(groups)} groups, graph zoom {graph.scale:.3f}" if graph else ""
        print(f"{url} -> {out} ({width}x{height}, {out.stat().st_size // 1024} KiB{what})", file=sys.stderr)
        print(out)
        return 0
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        if process is not None:
            stop(process)
        for path in temporary:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
