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
    import matplotlib.pyplot as plt

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
