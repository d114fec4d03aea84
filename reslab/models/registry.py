"""Model registry: build any network of the family by name.

>>> import reslab
>>> model = reslab.create_model("resnet56", num_classes=10)          # CIFAR, option A
>>> twin = reslab.create_model("plain56", num_classes=10)            # same layers, no shortcuts
>>> big = reslab.create_model("resnet50", num_classes=1000)          # torchvision-compatible
>>> reslab.list_models("plain*")

Besides the registered names, generic names build any valid depth: ``cifar_resnet{d}``,
``cifar_plain{d}``, ``cifar_preact_resnet{d}`` and ``wrn_{d}_{k}``.

Families outside the ResNet spec (transformers, recurrent stacks, MLPs, DenseNet, U-Nets) join
with :func:`register_family` from their own modules; this module imports none of them.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from reslab.errors import ModelConfigError
from reslab.store.jsonfiles import natural_key
from reslab.models.blocks import SHORTCUT_OPTIONS
from reslab.models.layers import SHORTCUT_PADS
from reslab.models.family import ModelFamily
from reslab.models.network import NetworkSpec, ResNet, StageSpec
from reslab.models.pretrained import load_pretrained, pretrained_weights

IMAGENET_LAYOUTS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
IMAGENET_DEPTH_RULE = "ImageNet ResNets have depth 18 or 34 (basic blocks) or 50, 101 or 152 (bottlenecks)"
CIFAR_DEPTH_RULE = (
    "CIFAR ResNets have depth 6n+2 with basic blocks (e.g. 20, 32, 44, 56, 110, 1202) "
    "or 9n+2 with bottlenecks (e.g. 164, 1001; pass block='bottleneck')"
)
WRN_DEPTH_RULE = "wide ResNets WRN-d-k have depth d = 6n+4 (e.g. 16, 22, 28, 40) and width k ≥ 1 (e.g. wrn_28_10)"

# Options every model accepts, with their defaults (the family default for ``shortcut``).
MODEL_OPTIONS = ("shortcut", "gated", "attention", "dropout", "drop_path", "zero_init_last", "activation_checkpointing",
                 "shortcut_pad")
#: Options of the convolution layout (Keras' ResNet v1): ``stride_in_1x1`` (bottleneck blocks
#: stride their first 1×1 conv, as in the 2015 paper, instead of the 3×3), ``conv_bias`` (every
#: conv has a bias) and ``bn_eps`` (BatchNorm epsilon; Keras uses 1.001e-5).
LAYOUT_OPTIONS = ("stride_in_1x1", "conv_bias", "bn_eps")


def apply_layout(model: nn.Module, name: str, stride_in_1x1: bool = False, conv_bias: bool = False,
                 bn_eps: float | None = None) -> nn.Module:
    """Set the convolution layout of a built ResNet in place (see :data:`LAYOUT_OPTIONS`)."""
    if not isinstance(model, ResNet):
        raise ModelConfigError(f"{name}: {', '.join(LAYOUT_OPTIONS)} are options of the ResNet family")
    for key, value in (("stride_in_1x1", stride_in_1x1), ("conv_bias", conv_bias)):
        if not isinstance(value, bool):
            raise ModelConfigError(f"{name}: {key} must be True or False, got {value!r}")
    if bn_eps is not None and not (isinstance(bn_eps, (int, float)) and 0 < bn_eps < 1):
        raise ModelConfigError(f"{name}: bn_eps must be a small positive number such as 1.001e-5, got {bn_eps!r}")
    if stride_in_1x1:
        if model.spec.block != "bottleneck":
            raise ModelConfigError(f"{name}: stride_in_1x1 is for bottleneck networks (resnet50/101/152, ResNeXt)")
        for block in model.blocks():
            stride = block.conv2.stride
            block.conv1.stride, block.conv2.stride = stride, (1, 1)
    if conv_bias:
        for module in model.modules():
            if isinstance(module, nn.Conv2d) and module.bias is None:
                module.bias = nn.Parameter(torch.zeros(module.out_channels, device=module.weight.device))
    if bn_eps is not None:
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps = float(bn_eps)
    model.model_options = {**model.model_options, "stride_in_1x1": stride_in_1x1, "conv_bias": conv_bias,
                           **({"bn_eps": float(bn_eps)} if bn_eps is not None else {})}
    return model


@dataclass
class ModelEntry:
    """A registered model: a name, a builder and the options it fixes.

    ``spec_fn(**spec_options)`` builds the spec; ``spec_options`` names the options it takes
    (``("block",)`` for generic CIFAR names, none for registered ones).
    """

    name: str
    # The input the model reads: "cifar" or "imagenet" images for the ResNet spec (which also fixes
    # the default input size and classes); a ModelFamily's own kind ("sequence", "vector", ...) otherwise.
    family: str
    description: str
    spec_fn: Callable[..., NetworkSpec] | None
    defaults: dict = field(default_factory=dict)
    spec_options: tuple[str, ...] = ()
    # Families outside the ResNet spec (see reslab.models.family) build through this instead.
    model_family: ModelFamily | None = None

    @property
    def default_num_classes(self) -> int:
        if self.model_family is not None:
            return self.model_family.default_num_classes
        return 10 if self.family == "cifar" else 1000

    @property
    def default_input_size(self) -> int:
        if self.model_family is not None:
            return self.model_family.default_input_size
        return 32 if self.family == "cifar" else 224


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} registered twice")
    _REGISTRY[entry.name] = entry
    return entry


# -- specs ---------------------------------------------------------------------------------------
def imagenet_spec(depth: int, preact: bool = False, groups: int = 1, width_per_group: int = 64) -> NetworkSpec:
    if depth not in IMAGENET_LAYOUTS:
        raise ModelConfigError(f"depth {depth} is not valid: {IMAGENET_DEPTH_RULE}")
    block, counts = IMAGENET_LAYOUTS[depth]
    stages = tuple(StageSpec(n, planes, stride) for n, planes, stride in zip(counts, (64, 128, 256, 512), (1, 2, 2, 2)))
    return NetworkSpec(block=block, preact=preact, stem="imagenet", stem_width=64, stages=stages, depth=depth,
                       family="imagenet", groups=groups, width_per_group=width_per_group)


def keras_v2_spec(depth: int) -> NetworkSpec:
    """Keras' ``ResNet50V2/101V2/152V2``: pre-activation bottlenecks in the ``"keras_v2"`` layout
    (see :data:`reslab.models.network.LAYOUTS`). Its stages stride at their end: the first three
    halve the resolution in their last block, the fourth keeps it, so the network is /32 as usual."""
    spec = imagenet_spec(depth, preact=True)
    if spec.block != "bottleneck":
        raise ModelConfigError(f"depth {depth} is not valid: Keras' ResNet V2 has depth 50, 101 or 152")
    stages = tuple(replace(stage, stride=stride) for stage, stride in zip(spec.stages, (2, 2, 2, 1)))
    return replace(spec, stages=stages, layout="keras_v2")


def cifar_blocks_per_stage(depth: int, block: str) -> int:
    per_block = {"basic": 6, "bottleneck": 9}.get(block)
    if per_block is None:
        raise ModelConfigError(f"block must be 'basic' or 'bottleneck', got {block!r}")
    if depth < per_block + 2 or (depth - 2) % per_block:
        raise ModelConfigError(f"depth {depth} is not valid with {block} blocks: {CIFAR_DEPTH_RULE}")
    return (depth - 2) // per_block


def cifar_spec(depth: int, block: str = "basic", preact: bool = False, widths=(16, 32, 64)) -> NetworkSpec:
    n = cifar_blocks_per_stage(depth, block)
    stages = tuple(StageSpec(n, planes, stride) for planes, stride in zip(widths, (1, 2, 2)))
    return NetworkSpec(block=block, preact=preact, stem="cifar", stem_width=16, stages=stages, depth=depth,
                       family="cifar")


def wide_spec(depth: int, width: int) -> NetworkSpec:
    if depth < 10 or (depth - 4) % 6 or width < 1:
        raise ModelConfigError(f"WRN-{depth}-{width} is not valid: {WRN_DEPTH_RULE}")
    n = (depth - 4) // 6
    stages = tuple(StageSpec(n, planes * width, stride) for planes, stride in zip((16, 32, 64), (1, 2, 2)))
    return NetworkSpec(block="basic", preact=True, stem="cifar", stem_width=16, stages=stages, depth=depth,
                       family="cifar")


# -- registered names ----------------------------------------------------------------------------
def _register_all() -> None:
    for depth in IMAGENET_LAYOUTS:
        register(ModelEntry(f"resnet{depth}", "imagenet", f"ImageNet ResNet-{depth} (torchvision-compatible)",
                            lambda d=depth: imagenet_spec(d), {"shortcut": "B"}))
        register(ModelEntry(f"plain{depth}", "imagenet", f"plain twin of ImageNet ResNet-{depth} (no shortcuts)",
                            lambda d=depth: imagenet_spec(d), {"shortcut": "none"}))
        register(ModelEntry(f"preact_resnet{depth}", "imagenet", f"pre-activation ImageNet ResNet-{depth}",
                            lambda d=depth: imagenet_spec(d, preact=True), {"shortcut": "B"}))
    for depth in (50, 101, 152):
        register(ModelEntry(f"resnet{depth}v2", "imagenet",
                            f"Keras' ResNet{depth}V2 (pre-activation, a stage strides in its last block; "
                            "reslab.models.convert.from_keras loads its weights)",
                            lambda d=depth: keras_v2_spec(d), {"shortcut": "B"}))
    for depth in (18, 50):
        register(ModelEntry(f"se_resnet{depth}", "imagenet", f"ResNet-{depth} with squeeze-and-excitation",
                            lambda d=depth: imagenet_spec(d), {"shortcut": "B", "attention": "se"}))
        register(ModelEntry(f"cbam_resnet{depth}", "imagenet", f"ResNet-{depth} with CBAM attention",
                            lambda d=depth: imagenet_spec(d), {"shortcut": "B", "attention": "cbam"}))
    register(ModelEntry("wide_resnet50_2", "imagenet", "Wide ResNet-50-2 (torchvision-compatible)",
                        lambda: imagenet_spec(50, width_per_group=128), {"shortcut": "B"}))
    register(ModelEntry("wide_resnet101_2", "imagenet", "Wide ResNet-101-2 (torchvision-compatible)",
                        lambda: imagenet_spec(101, width_per_group=128), {"shortcut": "B"}))
    register(ModelEntry("resnext50_32x4d", "imagenet", "ResNeXt-50 32×4d (torchvision-compatible)",
                        lambda: imagenet_spec(50, groups=32, width_per_group=4), {"shortcut": "B"}))
    register(ModelEntry("resnext101_32x8d", "imagenet", "ResNeXt-101 32×8d (torchvision-compatible)",
                        lambda: imagenet_spec(101, groups=32, width_per_group=8), {"shortcut": "B"}))

    for depth in CIFAR_DEPTHS:
        register(ModelEntry(f"resnet{depth}", "cifar", f"CIFAR ResNet-{depth} (He et al. 2015, option A)",
                            lambda d=depth: cifar_spec(d), {"shortcut": "A"}))
        register(ModelEntry(f"plain{depth}", "cifar", f"plain twin of CIFAR ResNet-{depth} (no shortcuts)",
                            lambda d=depth: cifar_spec(d), {"shortcut": "none"}))
    for depth in (20, 56, 110):
        register(ModelEntry(f"highway{depth}", "cifar", f"CIFAR ResNet-{depth} with gated (highway) shortcuts",
                            lambda d=depth: cifar_spec(d), {"shortcut": "A", "gated": True}))
    register(ModelEntry("preact_resnet110", "cifar", "pre-activation CIFAR ResNet-110 (basic blocks)",
                        lambda: cifar_spec(110, preact=True), {"shortcut": "B"}))
    register(ModelEntry("preact_resnet164", "cifar", "pre-activation CIFAR ResNet-164 (bottlenecks)",
                        lambda: cifar_spec(164, "bottleneck", preact=True), {"shortcut": "B"}))
    register(ModelEntry("preact_resnet1001", "cifar", "pre-activation CIFAR ResNet-1001 (bottlenecks)",
                        lambda: cifar_spec(1001, "bottleneck", preact=True), {"shortcut": "B"}))
    for depth, width in ((16, 4), (16, 8), (28, 10), (40, 4), (22, 8)):
        register(ModelEntry(f"wrn_{depth}_{width}", "cifar", f"wide ResNet WRN-{depth}-{width} (pre-activation)",
                            lambda d=depth, k=width: wide_spec(d, k), {"shortcut": "B"}))


_register_all()


# -- generic names -------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenericName:
    """Names that build any valid depth of a family, e.g. ``cifar_resnet{d}``.

    ``pattern`` captures the name's integers, which ``spec_fn`` takes first (then the
    ``spec_options``, e.g. ``block``); ``defaults`` are the model options the name fixes.
    """

    template: str  # as shown to users: "cifar_resnet{d}"
    pattern: re.Pattern
    family: str
    description: str
    spec_fn: Callable[..., NetworkSpec]
    defaults: dict
    spec_options: tuple[str, ...] = ()

    def resolve(self, name: str) -> ModelEntry | None:
        """The entry ``name`` stands for, or ``None`` if it is not of this form."""
        match = self.pattern.fullmatch(name)
        if match is None:
            return None
        numbers = (int(group) for group in match.groups())
        return ModelEntry(name, self.family, self.description, functools.partial(self.spec_fn, *numbers),
                          dict(self.defaults), self.spec_options)


GENERIC_NAMES = (
    GenericName("cifar_resnet{d}", re.compile(r"cifar_resnet(\d+)"), "cifar",
                "CIFAR ResNet of any depth 6n+2 (or 9n+2 with block='bottleneck')",
                lambda depth, block="basic": cifar_spec(depth, block), {"shortcut": "A"}, ("block",)),
    GenericName("cifar_plain{d}", re.compile(r"cifar_plain(\d+)"), "cifar",
                "plain twin of a CIFAR ResNet of any valid depth",
                lambda depth, block="basic": cifar_spec(depth, block), {"shortcut": "none"}, ("block",)),
    GenericName("cifar_preact_resnet{d}", re.compile(r"cifar_preact_resnet(\d+)"), "cifar",
                "pre-activation CIFAR ResNet of any valid depth",
                lambda depth, block="basic": cifar_spec(depth, block, preact=True), {"shortcut": "B"}, ("block",)),
    GenericName("highway{d}", re.compile(r"highway(\d+)"), "cifar",
                "CIFAR ResNet of any depth 6n+2 with gated (highway) shortcuts",
                lambda depth, block="basic": cifar_spec(depth, block), {"shortcut": "A", "gated": True}, ("block",)),
    GenericName("wrn_{d}_{k}", re.compile(r"wrn_(\d+)_(\d+)"), "cifar", "wide ResNet WRN-d-k",
                wide_spec, {"shortcut": "B"}),
)


_FAMILIES: list[ModelFamily] = []


def register_family(family: ModelFamily) -> ModelFamily:
    """Add ``family`` (names of one form outside the ResNet spec) to the registry; returns it.

    A family's module calls this when it loads (``reslab/models/transformer.py``, ...), and
    :mod:`reslab.models` imports those modules, so every family is registered once the package is.
    The first family whose pattern matches a name builds it.
    """
    if any(f.template == family.template for f in _FAMILIES):
        raise ValueError(f"model family {family.template!r} registered twice")
    _FAMILIES.append(family)
    return family


def model_families() -> tuple[ModelFamily, ...]:
    """The registered families outside the ResNet spec, in the order they registered."""
    return tuple(_FAMILIES)


def _family_entry(name: str) -> ModelEntry | None:
    for family in _FAMILIES:
        if family.numbers(name) is not None:
            return ModelEntry(name, family.family, family.description, None, model_family=family)
    return None


# -- public API ----------------------------------------------------------------------------------
def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the shell-style ``pattern`` (e.g. ``"plain*"``), sorted.

    Generic names (``cifar_resnet{d}``, ``wrn_{d}_{k}``, …) build other depths; they are not listed.
    """
    examples = [name for family in _FAMILIES for name in family.examples]
    names = [name for name in [*_REGISTRY, *examples] if fnmatch.fnmatchcase(name, pattern)]
    return sorted(names, key=natural_key)


def model_info(name: str) -> ModelEntry:
    """The registry entry of ``name`` (generic names get a synthesised entry)."""
    entry = _REGISTRY.get(name)
    if entry is not None:
        return entry
    for generic in GENERIC_NAMES:
        entry = generic.resolve(name)
        if entry is not None:
            return entry
    entry = _family_entry(name)
    if entry is not None:
        return entry
    raise _unknown_model_error(name)


def create_model(name: str, num_classes: int | None = None, in_chans: int = 3, **options) -> nn.Module:
    """Build the model registered as ``name``.

    Args:
        name: a registered name (see :func:`list_models`) or a generic one
            (``cifar_resnet{d}``, ``cifar_plain{d}``, ``cifar_preact_resnet{d}``, ``wrn_{d}_{k}``).
        num_classes: classifier outputs (default 10 for CIFAR models, 1000 for ImageNet ones).
        in_chans: input channels (3 for RGB, 1 for grayscale).
        **options: ``shortcut`` ("A", "B", "C", "none"), ``gated``, ``attention`` ("se", "cbam"),
            ``dropout``, ``drop_path``, ``zero_init_last``, ``activation_checkpointing``,
            ``shortcut_pad`` ("back" or "both": where option A puts its zero channels), and for
            generic CIFAR names ``block`` ("basic" or "bottleneck"); ``pretrained`` (a tag such as
            ``"cifar10"``, or ``True``) loads weights that ship with reslab (see
            :func:`reslab.models.pretrained.list_pretrained`; never a download) and returns the model
            in eval mode with ``model.pretrained_cfg`` (classes, mean, std, the record of the run).

    Raises:
        ModelConfigError: unknown name (with close matches), invalid depth (with the rule), or
            an invalid option.
    """
    entry = model_info(name)
    if "weights" in options:
        raise ModelConfigError(
            f"{name}: create_model has no option 'weights'; shipped weights load with pretrained=TAG "
            "(see reslab.models.pretrained.list_pretrained()), weights on disk with model.load_state_dict(...)")
    features_only = options.pop("features_only", False)
    out_indices = options.pop("out_indices", None)
    if out_indices is not None and not features_only:
        raise ModelConfigError(f"{name}: out_indices is for features_only=True models")
    if features_only:
        if entry.model_family is not None:
            raise ModelConfigError(f"{name}: features_only is for the ResNet family (CIFAR and ImageNet ResNets, their "
                                   "plain twins, pre-act, wide, ResNeXt, attention); this model is not one")
        # The full model first (with its weights, when pretrained), then drop pooling and head.
        return create_model(name, num_classes=num_classes, in_chans=in_chans, **options).as_features(out_indices)
    pretrained = options.pop("pretrained", None)
    if pretrained not in (None, False):
        # Shipped weights fix the head: refuse another class count before building anything.
        weights = pretrained_weights(name, pretrained)
        expected = weights.metadata.get("num_classes")
        if num_classes not in (None, 0) and expected is not None and num_classes != expected:
            raise ModelConfigError(
                f"{name}: pretrained={weights.tag!r} has {expected} classes, num_classes={num_classes} asked; "
                "load with the default head, then replace model.fc for the new classes")
        model = load_pretrained(create_model(name, in_chans=in_chans, **options), weights)
        if num_classes == 0:
            model.reset_classifier(0)  # a backbone: pooled features out
        return model
    if entry.model_family is not None:
        family = entry.model_family
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ModelConfigError(f"{name}: num_classes must be a positive integer, got {num_classes!r}")
        return family.build(name, *family.numbers(name), num_classes=num_classes or family.default_num_classes,
                            in_chans=in_chans, **options)
    layout = {key: options.pop(key) for key in LAYOUT_OPTIONS if key in options}
    if layout:
        # The 2015 layout (stride on the first 1×1, biased convs, another BN epsilon) of Keras'
        # ResNet50/101/152: the same modules, set differently, so names and shapes stay torchvision's.
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, **options)
        return apply_layout(model, name, **layout)
    block = options.pop("block", None)
    unknown = sorted(set(options) - set(MODEL_OPTIONS))
    if unknown:
        raise ModelConfigError(
            f"{name}: unknown option(s) {', '.join(unknown)}; options are: {', '.join(MODEL_OPTIONS + ('block',))}"
        )
    if block is not None and "block" not in entry.spec_options:
        if name in _REGISTRY:
            raise ModelConfigError(
                f"{name}: option block is only for generic CIFAR names; use e.g. cifar_resnet164 with block='bottleneck'"
            )
        raise ModelConfigError(f"{name}: option block is only for cifar_* names")
    spec = entry.spec_fn(**({"block": block} if block else {}))

    settings = {**entry.defaults, **options}
    _validate(name, spec, settings, num_classes, in_chans)
    num_classes = entry.default_num_classes if num_classes is None else num_classes
    return ResNet(spec, num_classes=num_classes, in_chans=in_chans, **settings, name=name, model_options=settings)


def _validate(name: str, spec: NetworkSpec, settings: dict, num_classes, in_chans) -> None:
    if num_classes is not None and (not isinstance(num_classes, int) or isinstance(num_classes, bool)
                                    or num_classes < 0):
        raise ModelConfigError(f"{name}: num_classes must be an integer >= 0 (0: no classifier, the model returns "
                               f"pooled features), got {num_classes!r}")
    if not isinstance(in_chans, int) or in_chans < 1:
        raise ModelConfigError(f"{name}: in_chans must be a positive integer, got {in_chans!r}")
    shortcut = settings.get("shortcut")
    if shortcut not in SHORTCUT_OPTIONS:
        raise ModelConfigError(f"{name}: shortcut must be one of {', '.join(SHORTCUT_OPTIONS)}, got {shortcut!r}")
    attention = settings.get("attention")
    if attention not in (None, "none", "se", "cbam"):
        raise ModelConfigError(f"{name}: attention must be 'se', 'cbam' or None, got {attention!r}")
    for key in ("gated", "zero_init_last", "activation_checkpointing"):
        # A string such as "false" from a config file would otherwise silently mean True.
        if not isinstance(settings.get(key, False), bool):
            raise ModelConfigError(f"{name}: {key} must be True or False, got {settings[key]!r}")
    for key in ("dropout", "drop_path"):
        value = settings.get(key, 0.0)
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ModelConfigError(f"{name}: {key} must be a probability in [0, 1), got {value!r}")
    pad = settings.get("shortcut_pad", "back")
    if pad not in SHORTCUT_PADS:
        raise ModelConfigError(f"{name}: shortcut_pad must be one of {', '.join(SHORTCUT_PADS)} (where option A puts "
                               f"its zero channels), got {pad!r}")
    if pad != "back" and shortcut != "A":
        raise ModelConfigError(f"{name}: shortcut_pad={pad!r} places option A's zero channels, but this model's "
                               f"shortcut is {shortcut!r}; use it with shortcut='A' (resnet20 ... resnet1202)")
    if shortcut == "none" and settings.get("drop_path", 0.0) > 0:
        raise ModelConfigError(f"{name}: drop_path (stochastic depth) needs shortcuts; a plain net would lose whole layers")
    if shortcut == "none" and settings.get("gated"):
        raise ModelConfigError(f"{name}: gated (highway) merging needs a shortcut; it cannot be used with shortcut='none'")


def _name_candidates(name: str) -> list[str]:
    """Names to suggest for the unknown ``name``: the registered ones, the families' examples, and
    every generic template filled with ``name``'s own numbers (``tranformer4`` -> ``transformer4``),
    since a pattern-named family has no list of names to compare with."""
    numbers = re.findall(r"\d+", name)
    filled = []
    for template in [g.template for g in GENERIC_NAMES] + [f.template for f in _FAMILIES]:
        fields = re.findall(r"\{(\w+)\}", template)
        if fields and len(fields) == len(numbers):
            values = iter(numbers)
            filled.append(re.sub(r"\{\w+\}", lambda _: next(values), template))
    return list(dict.fromkeys([*_REGISTRY, *list_models(), *filled]))


def _unknown_model_error(name: str) -> ModelConfigError:
    match = re.fullmatch(r"(resnet|plain|preact_resnet|highway)(\d+)", name)
    if match:
        depth = int(match[2])
        kind = {"resnet": "cifar_resnet", "plain": "cifar_plain", "preact_resnet": "cifar_preact_resnet"}.get(match[1])
        # Point to the generic name only when it would build: CIFAR depths are 6n+2 or 9n+2.
        cifar_valid = depth >= 8 and ((depth - 2) % 6 == 0 or (depth - 2) % 9 == 0)
        hint = f"; for another CIFAR depth use {kind}{depth}" if kind and cifar_valid else ""
        registered = ", ".join(n for n in list_models(f"{match[1]}*") if re.fullmatch(rf"{match[1]}\d+", n))
        return ModelConfigError(
            f"unknown model {name!r}: {IMAGENET_DEPTH_RULE}; {CIFAR_DEPTH_RULE}. "
            f"Registered: {registered}{hint}"
        )
    close = difflib.get_close_matches(name, _name_candidates(name), n=5, cutoff=0.6)
    suggestion = f"; did you mean {', '.join(close)}?" if close else ""
    return ModelConfigError(
        f"unknown model {name!r}{suggestion} (reslab.list_models() lists all names; "
        f"generic names: {', '.join([g.template for g in GENERIC_NAMES] + [f.template for f in _FAMILIES])})"
    )
