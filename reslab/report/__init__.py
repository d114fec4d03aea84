"""Report room: plots and the self-contained HTML report, built from saved result files only.

* :mod:`reslab.report.plots` — every figure, drawn from result dicts (also used by the analysis CLIs).
* :mod:`reslab.report.files` — readers of run, analysis and experiment files.
* :mod:`reslab.report.sections` — one module per report section (``TITLE``, ``ORDER``, ``build``).
* :mod:`reslab.report.builder` — :func:`build_report`: discovers sections, writes one HTML file.
"""

from reslab.report.builder import (
    ReportResult,
    build_report,
    collect_dirs,
    discover_sections,
)

__all__ = ["ReportResult", "build_report", "collect_dirs", "discover_sections"]
