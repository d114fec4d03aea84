"""Loss landscapes (Li et al. 2018): filter-normalised planes, interpolations, PCA of trajectories.

* :mod:`.directions` — states, filter-normalised random directions, :class:`Plane`, interpolation.
* :mod:`.trajectory` — the plane of a training trajectory's top PCA directions.
* :mod:`.evaluate` — :class:`LandscapeEvaluator`: many grid points, data resident on the device.
* :mod:`.surface` — grids, resumable evaluation, :class:`LandscapeResult` (one ``.npz``),
  :func:`analyze_landscape` (the CLI's function).

Curvature (Hessian spectra) lives in :mod:`reslab.analysis.hessian`.
"""

from reslab.analysis.landscape.directions import (
    Plane,
    filter_norms,
    interpolation_line,
    load_plane_axes,
    model_state,
    normalize_direction,
    random_direction,
    random_plane,
    save_plane,
)
from reslab.analysis.landscape.evaluate import LandscapeEvaluator
from reslab.analysis.landscape.surface import (
    EvaluationSettings,
    LandscapeResult,
    LandscapeSettings,
    analyze_landscape,
    compute_landscape,
    evaluate_grid,
    make_plane,
    parse_grid,
)
from reslab.analysis.landscape.trajectory import pca_directions, pca_plane

__all__ = [
    "Plane", "filter_norms", "interpolation_line", "load_plane_axes", "model_state", "normalize_direction",
    "random_direction", "random_plane", "save_plane",
    "LandscapeEvaluator",
    "EvaluationSettings", "LandscapeResult", "LandscapeSettings", "analyze_landscape", "compute_landscape", "evaluate_grid", "make_plane", "parse_grid",
    "pca_directions", "pca_plane",
]
