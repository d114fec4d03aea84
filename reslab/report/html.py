"""HTML building blocks for the self-contained report: figures embedded as base64 PNG, tables.

Section modules (``reslab/report/sections/*.py``) use these and return HTML fragments, so the
report is one file that opens offline.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Iterable, Sequence


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def png_data_uri(png: bytes | str | Path) -> str:
    """``data:image/png;base64,...`` for PNG bytes or a PNG file."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_to_png(figure, dpi: int = 110) -> bytes:
    """Render a matplotlib figure to PNG bytes (and close it)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 - lazy: pyplot picks a GUI backend when imported; only this needs it

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def figure_html(png: bytes | str | Path, caption: str = "", alt: str = "") -> str:
    """An embedded image with a caption."""
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="{png_data_uri(png)}" alt="{escape(alt or caption)}">'
        f"{caption_html}</figure>"
    )


def table_html(headers: Sequence[str], rows: Iterable[Sequence[object]], caption: str = "") -> str:
    """A table; floats are shown with 4 significant digits."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return escape(f"{value:.4g}")
        return escape(value)

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    caption_html = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{caption_html}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section_html(title: str, body: str, anchor: str | None = None) -> str:
    anchor = anchor or title.lower().replace(" ", "-")
    return f'<section id="{escape(anchor)}"><h2>{escape(title)}</h2>{body}</section>'


def paragraph_html(text: str) -> str:
    """A paragraph of plain text (escaped)."""
    return f"<p>{escape(text)}</p>"


def note_html(text: str, kind: str = "note") -> str:
    """A highlighted note; ``kind`` is ``"note"`` or ``"warning"``."""
    return f'<p class="{escape(kind)}">{escape(text)}</p>'


def details_html(summary: str, body: str, open_: bool = False) -> str:
    """A collapsible block (``<details>``), e.g. for long settings tables."""
    return f"<details{' open' if open_ else ''}><summary>{escape(summary)}</summary>{body}</details>"


def subsection_html(title: str, body: str) -> str:
    return f'<div class="subsection"><h3>{escape(title)}</h3>{body}</div>'


def definition_list_html(items: Iterable[tuple[str, object]]) -> str:
    """``term: value`` pairs as a compact two-column list."""
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    return f'<dl class="meta">{rows}</dl>'


PAGE_CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --rule: #d9dee7; --accent: #1f5fa8; --bg-soft: #f5f7fa; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink);
       margin: 0; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; }
header { border-bottom: 2px solid var(--accent); margin-bottom: 12px; padding-bottom: 8px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--rule); }
h3 { font-size: 16px; margin: 20px 0 6px; color: var(--accent); }
p { margin: 6px 0 10px; max-width: 900px; }
p.note { color: var(--muted); font-size: 14px; }
p.warning { background: #fff4e5; border-left: 4px solid #e65100; padding: 6px 10px; }
nav { background: var(--bg-soft); padding: 8px 12px; border-radius: 6px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 4px; max-width: 900px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13.5px; }
caption { caption-side: top; text-align: left; color: var(--muted); font-size: 13px; padding-bottom: 4px; }
th, td { border: 1px solid var(--rule); padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: var(--bg-soft); font-weight: 600; }
tbody tr:nth-child(even) { background: #fafbfc; }
td { font-variant-numeric: tabular-nums; }
details { margin: 6px 0; }
summary { cursor: pointer; color: var(--accent); }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; margin: 6px 0; font-size: 14px; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; }
.subsection { margin-left: 2px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; border-top: 1px solid var(--rule); padding-top: 8px; }
@media print { nav { display: none; } figure { break-inside: avoid; } }
"""


def page_html(title: str, header: str, sections: Sequence[tuple[str, str, str]], footer: str = "") -> str:
    """A whole HTML document: inline CSS, a table of contents, then the sections.

    sections: ``(anchor, title, html)`` in display order; ``html`` is a :func:`section_html` fragment.
    """
    toc = "".join(f'<a href="#{escape(anchor)}">{escape(name)}</a>' for anchor, name, _ in sections)
    nav = f"<nav>{toc}</nav>" if sections else ""
    body = "\n".join(fragment for _, _, fragment in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{escape(title)}</title>\n<style>{PAGE_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<header><h1>{escape(title)}</h1>{header}</header>\n{nav}\n{body}\n"
        f"<footer>{footer}</footer>\n</main>\n</body>\n</html>\n"
    )
