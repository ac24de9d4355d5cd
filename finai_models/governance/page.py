"""Markdown and single-file HTML renderings of the card's sections.

The section bodies are written in a small Markdown subset (paragraphs, ``- `` lists, pipe tables,
``**bold**`` and ``code``), so the HTML renderer converts exactly that subset itself instead of
pulling in a Markdown library. All text is escaped before any markup is added, and plots are
embedded as base64 data URIs so that the one HTML file can be mailed and archived on its own.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finai_models.governance.common import Section

STATUS = (("good", re.compile(r"^(pass|ok|better)\b")), ("bad", re.compile(r"^(FAIL|critical|VIOLATION)\b")),
          ("warn", re.compile(r"^(warning|not better)\b")), ("na", re.compile(r"^(n/a|not available|not judged)")))
CELL_SPLIT = re.compile(r"(?<!\\)\|")

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Noto Sans KR","Apple SD Gothic Neo","Malgun Gothic",sans-serif;
 margin:0;color:#1f2933;background:#f5f7fa;line-height:1.5}
header{background:#1f3a5f;color:#fff;padding:1.2rem 2rem}header h1{margin:0 0 .3rem;font-size:1.6rem}
header p{margin:0;opacity:.9}.wrap{display:flex;gap:1.5rem;padding:1.5rem 2rem;align-items:flex-start}
nav{position:sticky;top:1rem;min-width:16rem;max-width:18rem;background:#fff;border:1px solid #d9e2ec;
 border-radius:6px;padding:.8rem 1rem;font-size:.85rem}nav ol{padding-left:1.2rem;margin:.2rem 0}
nav a{color:#1f3a5f;text-decoration:none}nav a:hover{text-decoration:underline}
main{flex:1;min-width:0}section.top{background:#fff;border:1px solid #d9e2ec;border-radius:6px;
 padding:1rem 1.5rem;margin-bottom:1.2rem}h2{margin-top:0;color:#1f3a5f;border-bottom:2px solid #d9e2ec}
h3{color:#334e68;margin-bottom:.3rem}table{border-collapse:collapse;margin:.6rem 0;font-size:.82rem;
 display:block;overflow-x:auto}th,td{border:1px solid #d9e2ec;padding:.25rem .55rem;text-align:left;
 vertical-align:top}th{background:#f0f4f8}tr:nth-child(even) td{background:#fafbfc}
code{background:#f0f4f8;padding:0 .25rem;border-radius:3px;font-size:.85em;word-break:break-all}
figure{margin:.8rem 0}img{max-width:100%;border:1px solid #d9e2ec;border-radius:4px}
figcaption{font-size:.8rem;color:#52606d}.good{color:#1e7b34;font-weight:600}
td.good{background:#e3f4e8!important}.bad{color:#b42318;font-weight:600}td.bad{background:#fde8e7!important}
.warn{color:#9a6700;font-weight:600}td.warn{background:#fff4d6!important}.na{color:#7b8794;font-style:italic}
"""


def _status(text: str) -> str:
    return next((cls for cls, pattern in STATUS if pattern.match(text.strip())), "")


def _inline(text: str) -> str:
    """Escape, then turn ``code`` and **bold** into tags; bold status words get their colour."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]*)`", text)):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue

        def strong(m: re.Match[str]) -> str:
            cls = _status(html.unescape(m.group(1)))
            return f'<strong class="{cls}">{m.group(1)}</strong>' if cls else f"<strong>{m.group(1)}</strong>"

        out.append(re.sub(r"\*\*(.+?)\*\*", strong, html.escape(part)))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in CELL_SPLIT.split(line.strip().strip("|"))]


def _table(lines: Sequence[str]) -> str:
    head = "".join(f"<th>{_inline(c)}</th>" for c in _cells(lines[0]))
    rows = []
    for line in lines[2:]:
        cells = []
        for c in _cells(line):
            cls = _status(c)
            cells.append(f'<td class="{cls}">{_inline(c)}</td>' if cls else f"<td>{_inline(c)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def markdown_to_html(text: str) -> str:
    """HTML of the Markdown subset the section builders write (blocks separated by blank lines)."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if len(lines) >= 2 and all(line.startswith("|") for line in lines):
            out.append(_table(lines))
        elif lines and all(line.startswith("- ") for line in lines):
            out.append("<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>")
        elif lines:
            out.append("<p>" + "<br>".join(_inline(line) for line in lines) + "</p>")
    return "\n".join(out)


def _numbered(sections: Sequence[Section]) -> list[tuple[str, Section, int]]:
    """(number, section, depth): top-level sections numbered 1..n, subsections 1.1, 1.2, ..."""
    out = []
    for i, section in enumerate(sections, start=1):
        out.append((f"{i}.", section, 0))
        out += [(f"{i}.{j}", sub, 1) for j, sub in enumerate(section.subsections, start=1)]
    return out


def to_markdown(facts: Mapping[str, Any], sections: Sequence[Section]) -> str:
    """The card as Markdown; plots are referenced as ``plots/<name>.png`` next to the file."""
    lines = [f"# {facts['system']} model card — {facts['month']}", "",
             f"Generated {facts['generated_at']}. Champion {(facts['model'] or {}).get('champion_month') or 'n/a'}.",
             "", "## Contents", ""]
    for number, section, depth in _numbered(sections):
        lines.append(f"{'  ' * depth}- [{number} {section.title}](#{section.id})")
    for number, section, depth in _numbered(sections):
        lines += ["", f'<a id="{section.id}"></a>', "", f"{'#' * (depth + 2)} {number} {section.title}", "",
                  section.body.strip()]
        for plot in section.plots:
            lines += ["", f"![{plot.caption}](plots/{plot.name}.png)"]
    return "\n".join(lines) + "\n"


def _figure(caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    caption = html.escape(caption)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _block(number: str, section: Section, level: int, pngs: Mapping[str, Path]) -> str:
    heading = html.escape(f"{number} {section.title}")
    figures = "".join(_figure(p.caption, pngs[p.name].read_bytes()) for p in section.plots)
    return (f'<h{level} id="{html.escape(section.id)}">{heading}</h{level}>'
            f"{markdown_to_html(section.body)}{figures}")


def to_html(facts: Mapping[str, Any], sections: Sequence[Section], pngs: Mapping[str, Path]) -> str:
    """One self-contained page: header, table of contents, sections with tables and embedded plots."""
    title = html.escape(f"{facts['system']} model card — {facts['month']}")
    model = facts["model"] or {}
    meta = html.escape(f"Generated {facts['generated_at']} · champion {model.get('champion_month') or 'n/a'} · "
                       f"decision {model.get('decision') or 'n/a'} · audit seq {model.get('audit_seq') or 'n/a'}")
    toc = "".join(f'<li style="margin-left:{depth}rem"><a href="#{html.escape(section.id)}">'
                  f"{html.escape(f'{number} {section.title}')}</a></li>"
                  for number, section, depth in _numbered(sections))
    main = "".join(
        '<section class="top">' + _block(f"{i}.", section, 2, pngs)
        + "".join(_block(f"{i}.{j}", sub, 3, pngs) for j, sub in enumerate(section.subsections, start=1))
        + "</section>\n" for i, section in enumerate(sections, start=1))
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>\n'
            f"<body><header><h1>{title}</h1><p>{meta}</p></header>\n"
            f'<div class="wrap"><nav><strong>Contents</strong><ol style="list-style:none;padding-left:0">{toc}</ol>'
            f"</nav>\n<main>{main}</main></div></body></html>\n")
