"""Analysis room: model + data → result (a dataclass saved as JSON + NPZ); never draws.

* :mod:`reslab.analysis.gradients` — gradient norms per layer, the classic no-BN case, shattering.
* :mod:`reslab.analysis.responses` — std of each residual function's output (He et al. Fig. 7).
* :mod:`reslab.analysis.lesion` — test error with blocks removed (Veit et al. 2016).
* :mod:`reslab.analysis.landscape` — loss surfaces along filter-normalised, PCA or interpolation planes.
* :mod:`reslab.analysis.hessian` — top eigenvalues, trace, spectral density, convexity ratio.
* :mod:`reslab.analysis.common` — targets (model name or run dir), samples, result files.

Plots of the saved results live in :mod:`reslab.report.plots`.
"""

from reslab.analysis.common import (
    Result,
    Target,
    load_result_file,
    load_target,
    resolve_twin,
    select_samples,
)
from reslab.analysis.gradients import (
    ClassicMLP,
    GradientFlowResult,
    LayerGradients,
    ShatteredGradients,
    analyze_gradients,
    classic_vanishing_gradients,
    layer_gradients,
    shattered_gradients,
)
from reslab.analysis.hessian import HessianOperator, HessianResult, analyze_hessian
from reslab.analysis.landscape import (
    LandscapeEvaluator,
    LandscapeResult,
    analyze_landscape,
    compute_landscape,
    interpolation_line,
    make_plane,
    pca_plane,
    random_plane,
)
from reslab.analysis.lesion import (
    LesionResult,
    LesionSeries,
    analyze_lesion,
    error_rate,
    lesion_study,
)
from reslab.analysis.responses import (
    BlockResponses,
    ResponsesResult,
    analyze_responses,
    block_responses,
)

__all__ = [
    "Result", "Target", "load_result_file", "load_target", "resolve_twin", "select_samples",
    "ClassicMLP", "GradientFlowResult", "LayerGradients", "ShatteredGradients", "analyze_gradients",
    "classic_vanishing_gradients", "layer_gradients", "shattered_gradients",
    "LesionResult", "LesionSeries", "analyze_lesion", "lesion_study", "error_rate",
    "BlockResponses", "ResponsesResult", "analyze_responses", "block_responses",
    "HessianOperator", "HessianResult", "analyze_hessian",
    "LandscapeEvaluator", "LandscapeResult", "analyze_landscape", "compute_landscape", "interpolation_line",
    "make_plane", "pca_plane", "random_plane",
]
