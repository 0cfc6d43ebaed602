"""The margin heads beyond arcface_torch's against their reference code: FaceX-Zoo's heads (AM-Softmax, AdaCos,
CircleLoss, CurricularFace, MagFace, MV-Softmax) and AdaFace's own head, on the same embeddings, class centres and
labels, through facekit's Partial FC (sample rate 1, one process): logits, cross-entropy loss, gradients with respect
to the embeddings and the centres, and running statistics, over three consecutive steps.

Tolerances, in float32 on both sides: logits 1e-5 relative (+ 1e-6 x the scale absolute, for logits near 0), the loss
1e-5 relative, gradients 1e-4 relative (+ 1e-7 absolute), running statistics 1e-5 relative. A failure names the
tensor and the largest difference (tests/oracles.py: assert_same).

ElasticFace and sub-center ArcFace have no reference file in ../shared/oracles: they are checked against their
published formulas (ElasticFace upstream's draw: torch.normal(m, std, (B, 1)) under the same seed).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from oracles import assert_same, load_module

from facekit.recognition.losses import create_loss
from facekit.recognition.partial_fc import PartialFC

DIM, CLASSES, BATCH, STEPS = 16, 12, 8, 3
FORWARD_RTOL, GRAD_RTOL = 1e-5, 1e-4


def facex(name: str, cls: str, **kwargs):
    return getattr(load_module(f"facex_zoo/head/{name}.py", f"oracle_{name}"), cls)(DIM, CLASSES, **kwargs)


def adaface_oracle(**kwargs):
    return load_module("adaface/head.py", "oracle_adaface").AdaFace(embedding_size=DIM, classnum=CLASSES, **kwargs)


# name: (facekit loss name, its parameters, oracle builder, the oracle's centre parameter and whether it is [D, C],
# running statistics (ours, theirs), scale)
CASES = {
    "am_softmax": (
        "am_softmax", {}, lambda: facex("AM_Softmax", "AM_Softmax", margin=0.35, scale=30), "weight", [], 30,
    ),
    "adacos": ("adacos", {}, lambda: facex("AdaCos", "AdaCos"), "W", [("scale", "scale")], 10),
    "circle": ("circle", {}, lambda: facex("CircleLoss", "CircleLoss", margin=0.25, gamma=256), "weight", [], 256),
    "curricularface": (
        "curricularface", {}, lambda: facex("CurricularFace", "CurricularFace", m=0.5, s=64.0), "kernel",
        [("t", "t")], 64,
    ),
    "magface": (
        "magface", {},
        lambda: facex("MagFace", "MagFace", margin_am=0.0, scale=64, l_a=10, u_a=110, l_margin=0.45, u_margin=0.8,
                      lamda=35),
        "weight", [], 64,
    ),
    "mv_am_softmax": (
        "mv_softmax", {"t": 0.2, "am": True}, lambda: facex("MV_Softmax", "MV_Softmax", is_am=True, margin=0.35,
                                                            mv_weight=1.2, scale=32), "weight", [], 32,
    ),
    "mv_arc_softmax": (
        "mv_softmax", {"t": 0.2, "am": False}, lambda: facex("MV_Softmax", "MV_Softmax", is_am=False, margin=0.35,
                                                             mv_weight=1.2, scale=32), "weight", [], 32,
    ),
    "adaface": (
        "adaface", {"t_alpha": 0.01}, lambda: adaface_oracle(m=0.4, h=0.333, s=64.0, t_alpha=0.01), "kernel",
        [("batch_mean", "batch_mean"), ("batch_std", "batch_std")], 64,
    ),
}  # fmt: skip


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings [B, D] with norms spread over 12-60 (the feature-norm heads read them) and labels [B]."""
    g = torch.Generator().manual_seed(100 + step)
    x = F.normalize(torch.randn(BATCH, DIM, generator=g)) * torch.linspace(12, 60, BATCH).unsqueeze(1)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
    labels[:2] = torch.tensor([3, 3])  # a repeated class
    return x, labels


def oracle_forward(case: str, oracle, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, loss) as upstream trains: FaceX-Zoo's cross-entropy (+ MagFace's mean regulariser); AdaFace's head
    takes unit embeddings and their norms [B, 1]."""
    if case == "adaface":
        logits = oracle(F.normalize(x), x.norm(dim=1, keepdim=True), labels)
        return logits, F.cross_entropy(logits, labels)
    if case == "magface":
        logits, loss_g = oracle(x, labels)
        return logits, F.cross_entropy(logits, labels) + loss_g.mean()
    logits = oracle(x, labels)
    return logits, F.cross_entropy(logits, labels)


def centres(oracle, attribute: str) -> torch.nn.Parameter:
    return getattr(oracle, attribute)


def as_rows(weight: torch.Tensor, attribute: str) -> torch.Tensor:
    """The oracle's centres as facekit's [C, D] rows (FaceX-Zoo and AdaFace keep [D, C], AdaCos [C, D])."""
    return weight if attribute == "W" else weight.t()


@pytest.mark.parametrize("case", sorted(CASES))
def test_head_equals_its_reference(case):
    name, params, build, attribute, buffers, scale = CASES[case]
    torch.manual_seed(0)
    oracle = build()
    ours = PartialFC(embedding_size=DIM, num_classes=CLASSES)
    head = create_loss(name, embedding_size=DIM, num_classes=CLASSES, **params)
    with torch.no_grad():
        ours.weight.copy_(as_rows(centres(oracle, attribute), attribute))
    for step in range(STEPS):
        x, labels = batch(step)
        assert labels.max() < CLASSES
        # logits: on copies, since every forward moves the running statistics
        cosine = F.linear(F.normalize(x), F.normalize(ours.weight)).clamp(-1, 1)
        with torch.no_grad():
            logits = copy.deepcopy(head)(cosine, labels, x.norm(dim=1))
            logits_ref, _ = oracle_forward(case, copy.deepcopy(oracle), x, labels)
        assert_same(f"{case} step {step} logits", logits, logits_ref, rtol=FORWARD_RTOL, atol=1e-6 * scale)

        x_ours, x_ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        loss = ours(x_ours, labels, head)
        _, loss_ref = oracle_forward(case, oracle, x_ref, labels)
        assert_same(f"{case} step {step} loss", loss, loss_ref, rtol=FORWARD_RTOL)
        ours.weight.grad = None
        centres(oracle, attribute).grad = None
        loss.backward()
        loss_ref.backward()
        assert_same(f"{case} step {step} grad embeddings", x_ours.grad, x_ref.grad, rtol=GRAD_RTOL, atol=1e-7)
        grad_ref = as_rows(centres(oracle, attribute).grad, attribute)
        assert_same(f"{case} step {step} grad centres", ours.weight.grad, grad_ref, rtol=GRAD_RTOL, atol=1e-7)
        for mine, theirs in buffers:
            value = torch.as_tensor(getattr(oracle, theirs)).reshape(())
            assert_same(f"{case} step {step} {mine}", getattr(head, mine), value, rtol=FORWARD_RTOL)


def test_magface_margin_stays_below_pi_here():
    """FaceX-Zoo's MagFace falls back to cos(theta) past pi, facekit to cos(theta) - m sin(m) (the official MagFace
    and ArcFace's fallback): the comparison above holds only where theta + m(a) < pi, which this checks."""
    torch.manual_seed(0)
    oracle = CASES["magface"][2]()
    weight = as_rows(oracle.weight, "weight")
    for step in range(STEPS):
        x, labels = batch(step)
        cos = (F.normalize(x) * F.normalize(weight[labels])).sum(1)
        assert (torch.acos(cos) + 0.8 < math.pi).all()


def test_curricularface_and_adacos_statistics_move():
    """The running values the comparison checks do change from their initial values (a test that can fail)."""
    for case, attribute, initial in [("curricularface", "t", 0.0), ("adacos", "scale", math.sqrt(2) * math.log(11))]:
        name, params, *_ = CASES[case]
        head = create_loss(name, embedding_size=DIM, num_classes=CLASSES, **params)
        ours = PartialFC(embedding_size=DIM, num_classes=CLASSES)
        ours(*batch(0), head)
        assert abs(float(getattr(head, attribute)) - initial) > 1e-4, case


# ---- no reference file: the published formulas ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "m", "arc"), [("elasticface_arc", 0.5, True), ("elasticface_cos", 0.35, False)])
def test_elasticface_equals_upstream_formula(name, m, arc):
    """ElasticFace upstream: margin = torch.normal(mean=m, std=std, size=(B, 1)); arc: s cos(acos(cos) + margin) on
    the label column (no fallback), cos: s (cos - margin)."""
    x, labels = batch(0)
    weight = torch.randn(CLASSES, DIM, generator=torch.Generator().manual_seed(3))
    cosine = F.linear(F.normalize(x), F.normalize(weight)).clamp(-1, 1)
    head = create_loss(name, embedding_size=DIM, num_classes=CLASSES)
    torch.manual_seed(11)
    logits = head(cosine, labels, x.norm(dim=1))
    torch.manual_seed(11)
    margin = torch.normal(mean=m, std=0.05, size=labels[:, None].size())
    hot = torch.zeros_like(cosine).scatter_(1, labels[:, None], margin)
    expected = 64 * (torch.cos(cosine.acos() + hot) if arc else cosine - hot)
    assert_same(f"{name} logits", logits, expected, rtol=FORWARD_RTOL, atol=64e-6)
    torch.manual_seed(12)
    assert not torch.equal(head(cosine, labels, x.norm(dim=1)), logits)  # a new draw each step


def test_subcenter_arcface_takes_the_closest_subcentre():
    """k = 3: a class's cosine is the largest over its 3 centres, then ArcFace (s 64, m 0.5); k = 1 is ArcFace."""
    x, labels = batch(0)
    torch.manual_seed(0)
    head = create_loss("subcenter_arcface", embedding_size=DIM, num_classes=CLASSES, k=3)
    pfc = PartialFC(embedding_size=DIM, num_classes=CLASSES, centres_per_class=3)
    assert pfc.weight.shape == (CLASSES, 3, DIM)
    w = pfc.weight.detach().clone().requires_grad_(True)
    x_ours, x_ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    loss = pfc(x_ours, labels, head)
    cos = torch.einsum("bd,ckd->bck", F.normalize(x_ref), F.normalize(w, dim=2)).amax(2)
    theta = torch.acos(cos.gather(1, labels[:, None]).clamp(-1 + 1e-7, 1 - 1e-7))
    expected = F.cross_entropy(64 * cos.scatter(1, labels[:, None], torch.cos(theta + 0.5)), labels)
    assert_same("subcenter loss", loss, expected, rtol=FORWARD_RTOL)
    loss.backward()
    expected.backward()
    assert_same("subcenter grad embeddings", x_ours.grad, x_ref.grad, rtol=GRAD_RTOL, atol=1e-7)
    assert_same("subcenter grad centres", pfc.weight.grad, w.grad, rtol=GRAD_RTOL, atol=1e-7)
    assert (w.grad.abs().sum(2) == 0).any()  # only the closest sub-centre of a class learns from a row

    one = PartialFC(embedding_size=DIM, num_classes=CLASSES)
    with torch.no_grad():
        one.weight.copy_(pfc.weight[:, 0])
    single = create_loss("subcenter_arcface", embedding_size=DIM, num_classes=CLASSES, k=1)
    arcface = create_loss("arcface", embedding_size=DIM, num_classes=CLASSES)
    assert_same("k=1 is arcface", one(x, labels, single), one(x, labels, arcface), rtol=0)
