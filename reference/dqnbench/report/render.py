"""Writing the sections out: `report.md` and `index.html`, both beside the figure files they show."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from dqnbench.report.prose import NumberedFigure, Section, Table

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_STYLE = """
body { font-family: Georgia, 'DejaVu Serif', serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }
h1, h2, h3 { font-family: 'DejaVu Sans', Arial, sans-serif; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2.2rem; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; display: block; box-sizing: border-box; }
#summary { background: #f7f7f2; border: 1px solid #ddd; padding: .4rem 1rem .6rem; }
#summary h2 { margin-top: .4rem; }
#summary li { margin: .15rem 0; }
.wide { overflow-x: auto; }
figcaption, caption { font-size: .92rem; color: #444; text-align: left; margin: .3rem 0; }
table { border-collapse: collapse; font-size: .9rem; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
td { white-space: pre-wrap; }
td:first-child, td.value { white-space: nowrap; }
th { background: #f4f4f4; }
code { font-size: .9em; background: #f4f4f4; padding: 0 .2em; }
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _caption_label(table: Table) -> str:
    return f"Table {table.number}." if table.number else "Machines."


def markdown_table(table: Table) -> str:
    lines = [
        f"*{_caption_label(table)}* {table.caption}",
        "",
        "| " + " | ".join(table.header) + " |",
        "|" + "---|" * len(table.header),
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def markdown_figure(figure: NumberedFigure) -> str:
    stem = figure.figure.stem
    return (
        f"![Figure {figure.number}: {figure.figure.alt}]({stem}.png)\n\n"
        f"*Figure {figure.number}.* {figure.caption} ([SVG]({stem}.svg))"
    )


def _headed(sections: Sequence[Section]) -> list[tuple[str | None, Section]]:
    """Each section with the "Results" heading to open before it, if it is the first results section."""
    out: list[tuple[str | None, Section]] = []
    opened = False
    for section in sections:
        out.append(("Results" if section.results and not opened else None, section))
        opened = opened or section.results
    return out


def to_markdown(title: str, sections: Sequence[Section]) -> str:
    blocks = [f"# {title}"]
    for heading, section in _headed(sections):
        if heading:
            blocks.append(f"## {heading}")
        blocks.append(f"{'###' if section.results else '##'} {section.title}")
        if section.lines and section.anchor == "summary":
            blocks.append("\n".join(f"- {text} ([details](#{anchor}))" for text, anchor in section.lines))
        blocks += section.paragraphs
        blocks += [markdown_figure(f) for f in section.figures]
        blocks += [markdown_table(t) for t in section.tables]
    return "\n\n".join(blocks) + "\n"


def _inline(text: str) -> str:
    return _BOLD.sub(r"<b>\1</b>", _CODE.sub(r"<code>\1</code>", html.escape(text)))


def _cell(text: str) -> str:
    # A short cell ("332 µs", "1.16 (1.15–1.17)") is one value: keep it on one line.
    return f'<td class="value">{html.escape(text)}</td>' if len(text) <= 18 else f"<td>{html.escape(text)}</td>"


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in table.rows)
    ident = f"table-{table.number}" if table.number else "machines"
    return (
        f'<div class="wide"><table id="{ident}"><caption><b>{_caption_label(table)}</b> {_inline(table.caption)}'
        f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def html_figure(figure: NumberedFigure) -> str:
    # Linked, not inlined: the page stays small and loads its figures as it scrolls.
    return (
        f'<figure id="figure-{figure.number}"><img src="{figure.figure.stem}.png" '
        f'alt="{html.escape(figure.figure.alt)}"><figcaption><b>Figure {figure.number}.</b> '
        f'{_inline(figure.caption)} (<a href="{figure.figure.stem}.svg">SVG</a>, '
        f'<a href="{figure.figure.stem}.png">PNG</a>)</figcaption></figure>'
    )


def to_html(title: str, sections: Sequence[Section]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, section in _headed(sections):
        if heading:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        level = "h3" if section.results else "h2"
        parts.append(f'<section id="{section.anchor}"><{level}>{html.escape(section.title)}</{level}>')
        if section.lines and section.anchor == "summary":
            items = "".join(
                f'<li>{_inline(text)} (<a href="#{anchor}">details</a>)</li>' for text, anchor in section.lines
            )
            parts.append(f"<ul>{items}</ul>")
        parts += [f"<p>{_inline(p)}</p>" for p in section.paragraphs]
        parts += [html_figure(f) for f in section.figures]
        parts += [html_table(t) for t in section.tables]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
