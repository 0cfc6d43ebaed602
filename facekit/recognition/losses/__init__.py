"""The recognition losses facekit trains with, in one registry: `--loss NAME` picks one. Twenty-two of them: fifteen
heads on cosine logits (NormFace, CosFace / AM-Softmax, ArcFace, SphereFace, the combined margin, sub-center
ArcFace, ElasticFace-Arc and -Cos, CircleLoss, AdaFace, MagFace, CurricularFace, MV-Softmax, AdaCos), three
classifiers (softmax, L-Softmax, center loss) and four metric losses (contrastive, triplet, lifted structure,
margin loss).

Three kinds, three contracts:
- "margin" (margins.py, adaptive.py): a margin on cosine logits, no weights of its own (they live in the Partial FC
  layer). `forward(cosine [B, C], labels [B], norms [B]) -> logits [B, C]`, scaled; label -1: no margin, only the
  scale. Optional: `penalty(norms) -> scalar` (added to the loss), `centres_per_class` (sub-centres in Partial FC).
- "classifier" (classifiers.py): owns its weights. `forward(embeddings [B, D], labels [B]) -> scalar loss`.
- "metric" (metric.py): `forward(embeddings [B, D], labels [B]) -> scalar loss` over the pairs of the batch, which
  must hold several images per identity (train with `facekit.recognition.sampler.PKSampler`).

A loss's hyper-parameters and their defaults are its constructor's keyword arguments, written there only; the
registry reads them from the signature. Modules whose margin anneals expose `set_step(step)`; the trainer calls it
every step. Everything runs in float32 with autocast off, whatever the caller's precision.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from facekit.recognition.losses.adaptive import AdaCos, AdaFace, CurricularFace, MagFace, MVSoftmax
from facekit.recognition.losses.classifiers import CenterLoss, LSoftmax, SoftmaxLoss
from facekit.recognition.losses.margins import (
    ArcFace,
    CircleLoss,
    CombinedMargin,
    CosFace,
    ElasticFace,
    NormFace,
    SphereFace,
    SubCenterArcFace,
    am_softmax,
    angular_psi,
    elasticface_arc,
    elasticface_cos,
)
from facekit.recognition.losses.metric import ContrastiveLoss, LiftedStructureLoss, MarginLoss, TripletLoss
from facekit.registry import Registry

ParamValue = float | int | bool | str

_SIZE_ARGS = ("embedding_size", "num_classes")  # passed by create_loss, not hyper-parameters
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: its kind, its builder and a --help line. Its hyper-parameters are the builder's
    keyword arguments with defaults (`defaults`, `types`)."""

    kind: Literal["margin", "classifier", "metric"]
    build: Callable[..., nn.Module]
    needs_pk_sampler: bool = False
    doc: str = ""

    def hyper_parameters(self) -> list[inspect.Parameter]:
        """The builder's arguments other than embedding_size and num_classes."""
        params = inspect.signature(self.build, eval_str=True).parameters.values()
        return [p for p in params if p.name not in _SIZE_ARGS]

    @property
    def defaults(self) -> dict[str, ParamValue]:
        """Each hyper-parameter's default, in the signature's order, e.g. {"s": 64.0, "m": 0.5}."""
        return {p.name: p.default for p in self.hyper_parameters()}

    @property
    def types(self) -> dict[str, type]:
        """Each hyper-parameter's type (bool, int, float or str): its annotation, else its default's type."""
        return {
            p.name: p.annotation if p.annotation in _TYPE_NAMES else type(p.default) for p in self.hyper_parameters()
        }


def _check_spec(name: str, spec: LossSpec) -> None:
    """A loss's `build` takes `embedding_size` and/or `num_classes` when its signature names them, and every other
    argument by keyword with a default of type bool, int, float or str."""
    for p in spec.hyper_parameters():
        if p.kind is not p.KEYWORD_ONLY or p.default is p.empty or type(p.default) not in _TYPE_NAMES:
            raise ValueError(f"loss {name!r}: {p.name} must be keyword-only with a bool, int, float or str default")


LOSSES: Registry[LossSpec] = Registry("loss", check=_check_spec)
register_loss = LOSSES.add  # its earlier name, which tests/test_losses.py imports


def create_loss(name: str, *, embedding_size: int, num_classes: int, **params: ParamValue) -> nn.Module:
    """Build loss `name` with its defaults overridden by `params`."""
    spec = LOSSES[name]
    defaults = spec.defaults
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        valid = ", ".join(defaults) or "none"
        raise ValueError(f"loss {name!r} has no parameter {', '.join(unknown)}; valid: {valid}")
    sizes = {"embedding_size": embedding_size, "num_classes": num_classes}
    accepted = inspect.signature(spec.build).parameters
    return spec.build(**{k: v for k, v in sizes.items() if k in accepted}, **params)


def parse_loss_params(name: str, texts: dict[str, str]) -> dict[str, ParamValue]:
    """`texts` ({"mining": "semi_hard", "m": "4"}) converted to the types of loss `name`'s parameters. Raises
    ValueError naming the key, the value and the type expected, or the valid keys."""
    types = LOSSES[name].types
    params: dict[str, ParamValue] = {}
    for key, text in texts.items():
        if key not in types:
            raise ValueError(f"loss {name!r} has no parameter {key}; valid: {', '.join(types) or 'none'}")
        value = _convert(text, types[key])
        if value is None:
            raise ValueError(f"{key}={text}: {name}'s {key} takes {_TYPE_NAMES[types[key]]}, not {text!r}")
        params[key] = value
    return params


def _convert(text: str, kind: type) -> ParamValue | None:
    """`text` as a `kind` value, None when it is not one; an int may be written as a whole float ("4.0")."""
    if kind is str:
        return text
    if kind is bool:
        word = text.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else None
    try:
        number = float(text)
    except ValueError:
        return None
    if kind is int:
        return int(number) if number.is_integer() else None
    return number


LOSSES.add("normface", LossSpec("margin", NormFace, doc="NormFace: s cos(theta), no margin"))
LOSSES.add("cosface", LossSpec("margin", CosFace, doc="CosFace / AM-Softmax: s (cos(theta) - m)"))
LOSSES.add("arcface", LossSpec("margin", ArcFace, doc="ArcFace: s cos(theta + m), additive angle"))
LOSSES.add(
    "sphereface", LossSpec("margin", SphereFace, doc="SphereFace: s psi(m theta), multiplicative angle, annealed")
)
LOSSES.add("combined", LossSpec("margin", CombinedMargin, doc="combined margin: s (cos(m1 theta + m2) - m3)"))
LOSSES.add("am_softmax", LossSpec("margin", am_softmax, doc="AM-Softmax: CosFace with s=30 m=0.35"))
LOSSES.add(
    "subcenter_arcface",
    LossSpec("margin", SubCenterArcFace, doc="sub-center ArcFace: k centres per class, the closest one counts"),
)
LOSSES.add(
    "elasticface_arc", LossSpec("margin", elasticface_arc, doc="ElasticFace-Arc: s cos(theta + m_i), m_i ~ N(m, std)")
)
LOSSES.add(
    "elasticface_cos", LossSpec("margin", elasticface_cos, doc="ElasticFace-Cos: s (cos(theta) - m_i), m_i ~ N(m, std)")
)
LOSSES.add("circle", LossSpec("margin", CircleLoss, doc="CircleLoss, class-level: self-paced weights on each logit"))
LOSSES.add("adaface", LossSpec("margin", AdaFace, doc="AdaFace: margin adapts to the feature norm (image quality)"))
LOSSES.add("magface", LossSpec("margin", MagFace, doc="MagFace: margin grows with the feature norm, + regulariser"))
LOSSES.add(
    "curricularface", LossSpec("margin", CurricularFace, doc="CurricularFace: ArcFace + hard negatives weighted by t")
)
LOSSES.add("mv_softmax", LossSpec("margin", MVSoftmax, doc="MV-Softmax: misclassified columns emphasised"))
LOSSES.add("adacos", LossSpec("margin", AdaCos, doc="AdaCos: no margin, adaptive scale"))
LOSSES.add("softmax", LossSpec("classifier", SoftmaxLoss, doc="softmax: linear layer + cross-entropy"))
LOSSES.add("lsoftmax", LossSpec("classifier", LSoftmax, doc="L-Softmax: ||W|| ||x|| psi(m theta), annealed"))
LOSSES.add("center", LossSpec("classifier", CenterLoss, doc="softmax + center loss (centres kept by rule)"))
LOSSES.add(
    "contrastive",
    LossSpec("metric", ContrastiveLoss, needs_pk_sampler=True, doc="contrastive: all pairs, hinge on distance"),
)
LOSSES.add(
    "triplet",
    LossSpec(
        "metric",
        TripletLoss,
        needs_pk_sampler=True,
        doc="triplet (FaceNet): batch_hard or semi_hard mining, optional soft margin",
    ),
)
LOSSES.add(
    "lifted", LossSpec("metric", LiftedStructureLoss, needs_pk_sampler=True, doc="lifted structured loss (smooth)")
)
LOSSES.add(
    "margin_loss",
    LossSpec(
        "metric", MarginLoss, needs_pk_sampler=True, doc="margin loss with distance-weighted sampling (learnt beta)"
    ),
)

__all__ = [
    "LOSSES",
    "AdaCos",
    "AdaFace",
    "ArcFace",
    "CircleLoss",
    "CurricularFace",
    "ElasticFace",
    "MVSoftmax",
    "MagFace",
    "SubCenterArcFace",
    "CenterLoss",
    "CombinedMargin",
    "ContrastiveLoss",
    "CosFace",
    "LSoftmax",
    "LiftedStructureLoss",
    "LossSpec",
    "MarginLoss",
    "NormFace",
    "ParamValue",
    "SoftmaxLoss",
    "SphereFace",
    "TripletLoss",
    "angular_psi",
    "create_loss",
    "parse_loss_params",
    "register_loss",
]
