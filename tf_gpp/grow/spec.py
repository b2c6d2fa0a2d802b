"""Declarative description of an Inception network, and the growth steps on it.

A spec is plain data (``to_dict``/``from_dict`` round-trip through JSON); the
Keras model is built from it by :func:`tf_gpp.grow.build_inception`. Growth
steps return new specs and never rename existing modules, so every layer of
the old network keeps its name in the grown one (the basis of warm starting).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field, replace
from typing import Any

from tf_gpp.grow.errors import GrowError

#: Width names of a normal module: 1x1 | 1x1->3x3 | 1x1->3x3->3x3 | pool->1x1.
NORMAL_WIDTHS = ("b1", "b2_reduce", "b2", "b3_reduce", "b3", "b4")
#: Width names of a reduction module: 3x3/2 | 1x1->3x3->3x3/2 | maxpool/2 (pass-through).
REDUCTION_WIDTHS = ("b1", "b2_reduce", "b2")

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class ModuleSpec:
    """One Inception module.

    Attributes:
        name: prefix of the module's layer names (e.g. ``"m3"``).
        widths: filters per conv, in :data:`NORMAL_WIDTHS` order (6 values) or,
            for a reduction module, :data:`REDUCTION_WIDTHS` order (3 values).
        reduction: stride-2 grid reduction module instead of a normal one.
    """

    name: str
    widths: tuple[int, ...]
    reduction: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise GrowError(
                f"Module name {self.name!r} is invalid: start with a letter, then letters, digits, _ "
                "(it prefixes layer names such as 'm3_b2_conv3x3')."
            )
        try:
            widths = tuple(int(w) for w in self.widths)
        except (TypeError, ValueError):
            raise GrowError(f"Module {self.name!r}: widths must be integers, got {self.widths!r}.") from None
        if any(w != float(v) for w, v in zip(widths, self.widths, strict=True)):
            raise GrowError(f"Module {self.name!r}: widths must be integers, got {self.widths!r}.")
        expected = REDUCTION_WIDTHS if self.reduction else NORMAL_WIDTHS
        kind = "reduction" if self.reduction else "normal"
        if len(widths) != len(expected):
            raise GrowError(
                f"Module {self.name!r}: a {kind} module takes {len(expected)} widths "
                f"{expected}, got {len(widths)}: {widths}."
            )
        if min(widths) < 1:
            raise GrowError(
                f"Module {self.name!r}: every width must be >= 1, got {dict(zip(expected, widths, strict=True))}."
            )
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "reduction", bool(self.reduction))

    @property
    def conv_out_channels(self) -> int:
        """Output channels produced by the module's conv branches."""
        w = self.widths
        return w[0] + w[2] if self.reduction else w[0] + w[2] + w[4] + w[5]

    def out_channels(self, in_channels: int) -> int:
        """Channels after the concatenation (a reduction also passes its input through)."""
        return self.conv_out_channels + (in_channels if self.reduction else 0)

    @property
    def depth(self) -> int:
        """Weighted layers on the module's longest branch (3 for both kinds)."""
        return 3

    def widened(self, factor: float) -> ModuleSpec:
        """Every width times ``factor`` (rounded up, at least +1)."""
        if not factor > 1.0:
            raise GrowError(f"widen_factor must be > 1, got {factor!r}.")
        widths = tuple(max(w + 1, math.ceil(w * factor)) for w in self.widths)
        return replace(self, widths=widths)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "widths": list(self.widths), "reduction": self.reduction}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModuleSpec:
        return cls(name=d["name"], widths=tuple(d["widths"]), reduction=d.get("reduction", False))


def normal_widths(width: int) -> tuple[int, ...]:
    """Default normal-module widths from one base width ``w``: outputs w, w, w/2, w/2."""
    half, quarter = max(1, width // 2), max(1, width // 4)
    return (width, max(1, (3 * width) // 4), width, quarter, half, half)


def reduction_widths(width: int) -> tuple[int, ...]:
    """Default reduction-module widths from one base width ``w``."""
    return (width, max(1, width // 2), width)


@dataclass(frozen=True)
class InceptionSpec:
    """An Inception classifier: stem conv-BN-ReLU, modules, global pooling, dense head.

    Attributes:
        input_shape: ``(H, W, C)``.
        num_classes: classes of the dense head (>= 2).
        stem_filters, stem_kernel, stem_strides: the stem convolution.
        modules: the Inception modules, in order.
        dropout: dropout rate before the head (0 disables the layer).
        classifier_activation: ``None`` (the default) outputs logits - train with
            ``from_logits=True``; ``"softmax"`` outputs probabilities.
        bn_momentum: BatchNormalization momentum (0.9 suits short training runs).
        name: model name; ``None`` gives ``"Inception-<depth>"``.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    stem_filters: int = 32
    modules: tuple[ModuleSpec, ...] = field(default_factory=tuple)
    stem_kernel: int = 3
    stem_strides: int = 1
    dropout: float = 0.0
    classifier_activation: str | None = None
    bn_momentum: float = 0.9
    name: str | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape) if self.input_shape is not None else ()
        if len(shape) != 3 or any(not _is_int(d) or d < 1 for d in shape):
            raise GrowError(
                f"input_shape must be (height, width, channels) with positive integers, "
                f"got {self.input_shape!r}."
            )
        object.__setattr__(self, "input_shape", tuple(int(d) for d in shape))
        shape = self.input_shape
        if not _is_int(self.num_classes) or self.num_classes < 2:
            raise GrowError(
                f"num_classes={self.num_classes!r}: a classifier needs num_classes >= 2."
            )
        object.__setattr__(self, "num_classes", int(self.num_classes))
        for arg in ("stem_filters", "stem_kernel", "stem_strides"):
            value = getattr(self, arg)
            if not _is_int(value) or value < 1:
                raise GrowError(f"{arg} must be a positive integer, got {value!r}.")
            object.__setattr__(self, arg, int(value))
        if not 0.0 <= self.dropout < 1.0:
            raise GrowError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        if self.classifier_activation not in (None, "softmax"):
            raise GrowError(
                f"classifier_activation must be None (logits) or 'softmax', "
                f"got {self.classifier_activation!r}."
            )
        modules = tuple(
            m if isinstance(m, ModuleSpec) else ModuleSpec.from_dict(m) for m in self.modules
        )
        object.__setattr__(self, "modules", modules)
        names = [m.name for m in modules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise GrowError(f"Module names must be unique; repeated: {dupes}.")
        if "stem" in names:
            raise GrowError("'stem' is reserved for the stem convolution; rename that module.")
        need = self.min_input_size
        if min(shape[:2]) < need:
            raise GrowError(
                f"input_shape {shape} is too small for {self.num_reductions} reduction module(s) "
                f"with stem_strides={self.stem_strides}: each halves the feature map, so height "
                f"and width must be >= {need}. Use fewer reduction modules or resize the inputs."
            )

    # -- derived quantities -------------------------------------------------------------

    @property
    def num_reductions(self) -> int:
        return sum(m.reduction for m in self.modules)

    @property
    def min_input_size(self) -> int:
        """Smallest height/width that keeps every reduction meaningful (input >= 2x2)."""
        return self.stem_strides * 2**self.num_reductions

    @property
    def depth(self) -> int:
        """Weighted (conv/dense) layers on the longest input-to-output path.

        Stem (1) + 3 per module + the dense head (1): the count GoogLeNet uses
        for its "22 layers", and the ``N`` of the model name ``Inception-N``.
        """
        return 1 + sum(m.depth for m in self.modules) + 1

    @property
    def model_name(self) -> str:
        return self.name or f"Inception-{self.depth}"

    def feature_channels(self) -> int:
        """Channels of the last module's output (= the feature layer width)."""
        channels = self.stem_filters
        for m in self.modules:
            channels = m.out_channels(channels)
        return channels

    def module(self, name: str) -> ModuleSpec:
        for m in self.modules:
            if m.name == name:
                return m
        raise GrowError(f"No module named {name!r}; modules are {[m.name for m in self.modules]}.")

    # -- growth steps -------------------------------------------------------------------

    def next_module_name(self) -> str:
        """``"m<k>"`` with ``k`` one past the largest number used so far."""
        used = [int(m.name[1:]) for m in self.modules if re.fullmatch(r"m\d+", m.name)]
        return f"m{max(used, default=0) + 1}"

    def with_module(
        self, widths: tuple[int, ...] | None = None, reduction: bool = False, name: str | None = None
    ) -> InceptionSpec:
        """A new spec with one module appended before the head.

        Default widths copy the last module of the same kind (or derive from
        ``stem_filters`` when there is none). ``name`` defaults to
        :meth:`next_module_name`; growth never renames existing modules.
        """
        if widths is None:
            same = [m for m in self.modules if m.reduction == reduction]
            if same:
                widths = same[-1].widths
            else:
                make = reduction_widths if reduction else normal_widths
                widths = make(self.stem_filters)
        module = ModuleSpec(name or self.next_module_name(), tuple(widths), reduction)
        return replace(self, modules=(*self.modules, module))

    def with_module_widened(self, name: str, factor: float = 1.5) -> InceptionSpec:
        """A new spec where module ``name`` has every width multiplied by ``factor``."""
        target = self.module(name)
        modules = tuple(m.widened(factor) if m is target else m for m in self.modules)
        return replace(self, modules=modules)

    def narrowest_module(self) -> ModuleSpec:
        """The module with the fewest conv output channels (the first one on ties)."""
        if not self.modules:
            raise GrowError("This spec has no modules to widen.")
        return min(self.modules, key=lambda m: m.conv_out_channels)

    # -- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "stem_filters": self.stem_filters,
            "stem_kernel": self.stem_kernel,
            "stem_strides": self.stem_strides,
            "modules": [m.to_dict() for m in self.modules],
            "dropout": self.dropout,
            "classifier_activation": self.classifier_activation,
            "bn_momentum": self.bn_momentum,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InceptionSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise GrowError(f"InceptionSpec.from_dict: unknown keys {sorted(unknown)}.")
        kwargs = dict(d)
        kwargs["input_shape"] = tuple(d["input_shape"])
        kwargs["modules"] = tuple(ModuleSpec.from_dict(m) for m in d.get("modules", ()))
        return cls(**kwargs)


def default_start_spec(
    input_shape: tuple[int, int, int],
    num_classes: int,
    width: int = 16,
    modules: int = 2,
    reduction: bool | None = None,
    **kwargs: Any,
) -> InceptionSpec:
    """The small starting net for growing: stem + ``modules`` normal modules of base
    ``width``, with one reduction module after the first when ``reduction`` (default:
    when the input is at least 8x8)."""
    if not isinstance(modules, int) or modules < 1:
        raise GrowError(f"modules must be a positive integer, got {modules!r}.")
    if not isinstance(width, int) or width < 1:
        raise GrowError(f"width must be a positive integer, got {width!r}.")
    shape = tuple(input_shape)
    if reduction is None:
        reduction = len(shape) == 3 and min(shape[:2]) >= 8
    mods = [ModuleSpec("m1", normal_widths(width))]
    k = 2
    if reduction:
        mods.append(ModuleSpec(f"m{k}", reduction_widths(width), reduction=True))
        k += 1
    for _ in range(modules - 1):
        mods.append(ModuleSpec(f"m{k}", normal_widths(2 * width if reduction else width)))
        k += 1
    return InceptionSpec(
        input_shape=shape, num_classes=num_classes, stem_filters=width, modules=tuple(mods), **kwargs
    )
