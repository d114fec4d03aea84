"""Report sections: one module each, discovered by :func:`reslab.report.builder.discover_sections`.

A section module defines::

    TITLE = "Loss landscape"      # heading
    ORDER = 50                    # position in the report (lower first)
    def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None: ...

``build`` reads the files of the runs and experiments (never recomputes), returns an HTML
fragment made with :mod:`reslab.report.html` (use ``section_html(TITLE, body)``), or ``None``
when its files are absent. ``run_dirs`` already includes the runs inside ``experiment_dirs``.
Modules whose names start with ``_`` are helpers. Orders in use: runs 10, training curves 20,
segmentation 25, degradation 30, beyond CNNs 35, gradients 40, responses 42, lesion 44; landscape and Hessian take 50 and up.
"""
