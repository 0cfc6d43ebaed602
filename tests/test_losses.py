"""Recognition losses (margins worked out by hand, every registered loss trained on real faces) and the PK sampler."""

from __future__ import annotations

import math
import re
from itertools import islice

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from facekit.data.datasets import RecognitionDataset
from facekit.data.recset import open_recognition_set
from facekit.recognition.losses import (
    LOSSES,
    CenterLoss,
    LossSpec,
    TripletLoss,
    angular_psi,
    create_loss,
    register_loss,
)
from facekit.recognition.sampler import PKSampler

EMBEDDING = 64
IDENTITIES = 8
IMAGES_PER_IDENTITY = 8


def margin_logits(name: str, cosine: list[list[float]], labels: list[int], step: int | None = None, **params):
    loss = create_loss(name, embedding_size=EMBEDDING, num_classes=3, **params)
    if step is not None:
        loss.set_step(step)
    return loss(torch.tensor(cosine), torch.tensor(labels))


# --- margins by hand: rows [target cos, two other columns], s = 64 ----------------------------------------------------

COSINES = [[0.5, 0.1, -0.2], [-0.95, 0.3, 0.2], [0.5, 0.5, 0.5]]
LABELS = [0, 0, -1]  # the last row's class is not among the columns: scale only
SCALED = [[32.0, 6.4, -12.8], [-60.8, 19.2, 12.8], [32.0, 32.0, 32.0]]  # 64 cos


def expected(target_row0: float, target_row1: float) -> torch.Tensor:
    rows = torch.tensor(SCALED)
    rows[0, 0], rows[1, 0] = target_row0, target_row1
    return rows


def test_normface_only_scales():
    torch.testing.assert_close(margin_logits("normface", COSINES, LABELS), torch.tensor(SCALED))


def test_cosface_by_hand():
    # 64 (0.5 - 0.4) = 6.4; 64 (-0.95 - 0.4) = -86.4
    torch.testing.assert_close(margin_logits("cosface", COSINES, LABELS), expected(6.4, -86.4))


def test_arcface_by_hand_with_fallback_past_pi():
    # cos = 0.5 -> theta = pi/3; 64 cos(pi/3 + 0.5) = 64 (0.5 cos 0.5 - sin(pi/3) sin 0.5)
    #   = 64 (0.5 * 0.8775826 - 0.8660254 * 0.4794255) = 64 * 0.0235966 = 1.51018
    # cos = -0.95 -> theta = 2.82403, theta + 0.5 = 3.32403 > pi: fallback 64 (cos - m sin m)
    #   = 64 (-0.95 - 0.5 * 0.4794255) = -76.14162
    torch.testing.assert_close(margin_logits("arcface", COSINES, LABELS), expected(1.51018, -76.14162))


def test_arcface_fallback_threshold():
    # the fallback starts exactly where theta + m = pi, i.e. cos = cos(pi - m); both sides stay decreasing in theta
    m = 0.5
    th = math.cos(math.pi - m)
    logits = margin_logits("arcface", [[th + 1e-3], [th - 1e-3]], [0, 0], s=1.0, m=m)[:, 0]
    assert logits[0] == pytest.approx(math.cos(math.acos(th + 1e-3) + m), abs=1e-5)
    assert logits[1] == pytest.approx(th - 1e-3 - m * math.sin(m), abs=1e-5)
    assert logits[1] < logits[0]


def test_combined_margin_by_hand():
    # 64 (cos(pi/3 + 0.3) - 0.2) = 64 (0.2217402 - 0.2) = 1.39137; cos = -0.95: 64 (cos(2.82403 + 0.3) - 0.2)
    #   = 64 (cos(3.12403) - 0.2) = 64 (-0.99985 - 0.2) = -76.7901 (no fallback in the combined margin, as insightface)
    torch.testing.assert_close(margin_logits("combined", COSINES, LABELS), expected(1.39137, -76.79008))


def test_combined_margin_reduces_to_arcface_and_cosface():
    cos = [[0.5, 0.1], [0.2, -0.3]]
    labels = [0, 1]
    arc = margin_logits("combined", cos, labels, m1=1.0, m2=0.5, m3=0.0)
    torch.testing.assert_close(arc, margin_logits("arcface", cos, labels, m=0.5))
    cosface = margin_logits("combined", cos, labels, m1=1.0, m2=0.0, m3=0.4)
    torch.testing.assert_close(cosface, margin_logits("cosface", cos, labels, m=0.4))


def test_sphereface_psi_by_hand():
    # m = 4: cos 0.5 -> theta = pi/3, 4 theta = 4pi/3 in [pi, 2pi): k = 1, psi = -cos(4pi/3) - 2 = -1.5
    # cos -0.5 -> theta = 2pi/3, 4 theta = 8pi/3 in [2pi, 3pi): k = 2, psi = cos(8pi/3) - 4 = -4.5
    # psi runs from 1 at theta = 0 to 1 - 2m = -7 at theta = pi
    psi = angular_psi(torch.tensor([0.5, -0.5, 1.0, -1.0]), 4)
    torch.testing.assert_close(psi, torch.tensor([-1.5, -4.5, 1.0, -7.0]), atol=1e-4, rtol=0)


def test_sphereface_annealing_by_hand():
    # lambda = max(5, 1000 (1 + 0.12 step)^-1); target = 64 (lambda cos + psi) / (1 + lambda), cos 0.5 -> psi -1.5
    # step 0: lambda = 1000, 64 (500 - 1.5) / 1001 = 31.87213
    # step 100: lambda = 1000 / 13 = 76.92308, 64 (38.46154 - 1.5) / 77.92308 = 30.35735
    # step 10^6: lambda = max(5, 0.0083) = 5, 64 (2.5 - 1.5) / 6 = 10.66667
    loss = create_loss("sphereface", embedding_size=EMBEDDING, num_classes=3)
    for step, lam, target in [(0, 1000.0, 31.87213), (100, 1000 / 13, 30.35735), (10**6, 5.0, 10.66667)]:
        loss.set_step(step)
        assert loss.lam == pytest.approx(lam)
        logits = loss(torch.tensor([COSINES[0], COSINES[2]]), torch.tensor([0, -1]))
        torch.testing.assert_close(logits, torch.tensor([[target, 6.4, -12.8], SCALED[2]]))


def test_margins_leave_unlabelled_rows_and_inputs_alone():
    cosine = torch.tensor(COSINES)
    for name, spec in LOSSES.items():
        if spec.kind == "margin":
            logits = create_loss(name, embedding_size=EMBEDDING, num_classes=3)(cosine, torch.tensor(LABELS))
            torch.testing.assert_close(logits[2], torch.tensor(SCALED[2]))
            torch.testing.assert_close(logits[:, 1:], torch.tensor(SCALED)[:, 1:])
    torch.testing.assert_close(cosine, torch.tensor(COSINES))


# --- margins on fixed embeddings and weights, expectations in numpy: the target logit moves as the formula says ----

MARGIN_FORMULAS = {  # name: (parameters, target(cos, theta) before the scale s = 64)
    "normface": ({}, lambda cos, theta: cos),
    "cosface": ({"m": 0.35}, lambda cos, theta: cos - 0.35),
    "arcface": ({"m": 0.5}, lambda cos, theta: np.cos(theta + 0.5)),
    "combined": ({"m1": 1.2, "m2": 0.3, "m3": 0.2}, lambda cos, theta: np.cos(1.2 * theta + 0.3) - 0.2),
}


def sphereface_target(cos: np.ndarray, theta: np.ndarray, m: int = 4, lam: float = 5.0) -> np.ndarray:
    """(lambda cos + psi) / (1 + lambda), psi = (-1)^k cos(m theta) - 2k on [k pi / m, (k + 1) pi / m]."""
    k = np.minimum(np.floor(theta * m / np.pi), m - 1)
    return (lam * cos + (-1) ** k * np.cos(m * theta) - 2 * k) / (1 + lam)


@pytest.mark.parametrize("name", [*MARGIN_FORMULAS, "sphereface"])
def test_margin_lowers_the_target_logit_as_its_formula_says(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8))  # embeddings [B, D]
    w = rng.normal(size=(5, 8))  # class weights [C, D]
    labels = np.array([0, 1, 2, 3, 4, 0])
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    rows = np.arange(len(labels))
    cos_t = cos[rows, labels]
    theta = np.arccos(cos_t)
    assert (theta + 0.5 < math.pi).all()  # no row reaches ArcFace's fallback: the plain formula holds
    if name == "sphereface":
        params, target = {}, sphereface_target(cos_t, theta)
    else:
        params, formula = MARGIN_FORMULAS[name]
        target = formula(cos_t, theta)
    expected = 64 * cos
    expected[rows, labels] = 64 * target

    loss = create_loss(name, embedding_size=8, num_classes=5, **params)
    if name == "sphereface":
        loss.set_step(10**6)  # lambda = max(5, 1000 / (1 + 0.12e6)) = 5
    cosine = F.linear(F.normalize(torch.tensor(x)), F.normalize(torch.tensor(w))).float()
    logits = loss(cosine, torch.tensor(labels)).double().numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    if name != "normface":  # a margin makes the target harder: its logit falls below s cos(theta)
        assert (logits[rows, labels] < 64 * cos_t - 1).all()


# unit square corners: class 0 = (1, 0), (0, 1); class 1 = (-1, 0), (0, -1). Distances: sqrt 2 to the two
# neighbours, 2 across; so each point has one positive at sqrt 2 and negatives at sqrt 2 and 2.
SQUARE = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
SQUARE_LABELS = torch.tensor([0, 0, 1, 1])


def test_triplet_by_hand():
    # squared distances: hardest positive 2, hardest negative 2 -> max(0, 2 - 2 + 0.2) = 0.2 for every anchor;
    # soft margin: softplus(0) = ln 2. Semi-hard: the only negative farther than 2 is the opposite corner (4):
    # max(0, 2 - 4 + 0.2) = 0
    assert TripletLoss()(SQUARE, SQUARE_LABELS).item() == pytest.approx(0.2)
    assert TripletLoss(soft_margin=True)(SQUARE, SQUARE_LABELS).item() == pytest.approx(math.log(2))
    assert TripletLoss(mining="semi_hard")(SQUARE, SQUARE_LABELS).item() == pytest.approx(0.0)


def test_contrastive_and_lifted_by_hand():
    # contrastive, 12 ordered pairs: 4 positive ones give d^2 / 2 = 1, the 8 negative ones are past the margin
    # 0.5 and give 0 -> 4 / 12
    contrastive = create_loss("contrastive", embedding_size=2, num_classes=2)
    assert contrastive(SQUARE, SQUARE_LABELS).item() == pytest.approx(1 / 3)
    # lifted, margin 1: every point's negatives give log(e^(1 - 2) + e^(1 - sqrt 2)) = log(1.02875) = 0.028334;
    # J = log(2 * 1.02875) + sqrt 2 = 2.135695 for every positive pair; L = J^2 / 2 = 2.280596
    lifted = create_loss("lifted", embedding_size=2, num_classes=2)
    assert lifted(SQUARE, SQUARE_LABELS).item() == pytest.approx(2.280596, rel=1e-5)


def test_center_update_by_hand():
    # centres start at 0; class 0 gets x = (1, 0) and (3, 0): delta = ((0 - 1) + (0 - 3)) / (1 + 2) = -4/3,
    # c_0 = 0 - 0.5 * (-4/3) = (2/3, 0); class 1 gets nothing and stays at 0
    loss = CenterLoss(embedding_size=2, num_classes=2)
    loss.update_centers(torch.tensor([[1.0, 0.0], [3.0, 0.0]]), torch.tensor([0, 0]))
    torch.testing.assert_close(loss.centers, torch.tensor([[2 / 3, 0.0], [0.0, 0.0]]))


def test_losses_compute_in_float32_under_autocast():
    embeddings = torch.randn(8, EMBEDDING)
    labels = torch.arange(4).repeat_interleave(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for name in ("arcface", "lsoftmax", "triplet"):
            loss = create_loss(name, embedding_size=EMBEDDING, num_classes=4)
            x = F.normalize(embeddings) @ F.normalize(torch.randn(4, EMBEDDING)).T if name == "arcface" else embeddings
            assert loss(x.bfloat16(), labels).dtype == torch.float32


# --- registry -----------------------------------------------------------------------------------------------------


def test_registry_entries_are_documented():
    for name, spec in LOSSES.items():
        assert spec.doc and spec.kind in ("margin", "classifier", "metric"), name
        assert spec.needs_pk_sampler == (spec.kind == "metric"), name
        module = create_loss(name, embedding_size=EMBEDDING, num_classes=4)
        assert re.search(r"\b(19|20)\d\d\b", type(module).__doc__), name  # cites its paper: (..., 2016)


def test_registry_reads_defaults_from_the_constructor():
    assert LOSSES["sphereface"].defaults == {
        "s": 64.0, "m": 4, "base": 1000.0, "gamma": 0.12, "power": 1.0, "lambda_min": 5.0,
    }  # fmt: skip
    assert LOSSES["triplet"].types == {"margin": float, "mining": str, "soft_margin": bool}

    class NoDefault(nn.Module):
        def __init__(self, *, num_classes: int, m: float) -> None:
            super().__init__()

    with pytest.raises(ValueError, match="m must be keyword-only with a bool, int, float or str default"):
        register_loss("no_default", LossSpec("margin", NoDefault))
    assert "no_default" not in LOSSES


def test_unknown_loss_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown loss 'nope'; known: arcface, center, combined"):
        create_loss("nope", embedding_size=EMBEDDING, num_classes=4)


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(ValueError, match="loss 'arcface' has no parameter margin; valid: s, m"):
        create_loss("arcface", embedding_size=EMBEDDING, num_classes=4, margin=0.5)
    with pytest.raises(ValueError, match="valid: none"):
        create_loss("softmax", embedding_size=EMBEDDING, num_classes=4, s=1.0)
    with pytest.raises(ValueError, match="valid: batch_hard, semi_hard"):
        create_loss("triplet", embedding_size=EMBEDDING, num_classes=4, mining="hardest")
    with pytest.raises(ValueError, match="positive integer"):
        create_loss("sphereface", embedding_size=EMBEDDING, num_classes=4, m=1.5)


# --- every registered loss: gradients, then training on real faces --------------------------------------------------


class CosineClassifier(nn.Module):
    """The smallest Partial FC stand-in: cosine [B, C] = normalize(x) @ normalize(W).T."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_size) * 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x), F.normalize(self.weight))


def loss_of(name: str, loss: nn.Module, head: nn.Module, embeddings, labels) -> torch.Tensor:
    """Margin losses turn the head's cosines into logits for cross-entropy; the others give the loss."""
    if LOSSES[name].kind == "margin":
        return F.cross_entropy(loss(head(embeddings), labels), labels)
    return loss(embeddings, labels)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_finite_and_nonzero(name):
    torch.manual_seed(0)
    embeddings = torch.randn(16, EMBEDDING, requires_grad=True)
    labels = torch.arange(4).repeat_interleave(4)
    loss = create_loss(name, embedding_size=EMBEDDING, num_classes=4)
    head = CosineClassifier(EMBEDDING, 4)
    value = loss_of(name, loss, head, embeddings, labels)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    grads = [embeddings.grad] + [p.grad for p in [*loss.parameters(), *head.parameters()] if p.grad is not None]
    for grad in grads:
        assert torch.isfinite(grad).all()
    assert embeddings.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def faces(shared_data) -> tuple[torch.Tensor, torch.Tensor]:
    """64 real aligned faces from cele.rec: 8 ORL people x 8 photos, [64, 3, 112, 112] and classes [64]."""
    with open_recognition_set(shared_data / "layouts/recognition_train_data") as rset:
        items = [
            rset.read(key)
            for ident in range(IDENTITIES)
            for key in range(rset.identity_ranges[ident][0], rset.identity_ranges[ident][0] + IMAGES_PER_IDENTITY)
        ]
    dataset = RecognitionDataset(items, name="cele.rec")
    images, labels = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    assert sorted(set(labels)) == list(range(IDENTITIES))
    return torch.stack(images), torch.tensor(labels)


def tiny_backbone() -> nn.Module:
    """[B, 3, 112, 112] -> [B, 64]: pool to 28 x 28, three strided convs, global pool, linear."""
    layers: list[nn.Module] = [nn.AvgPool2d(4)]
    for c_in, c_out in [(3, 16), (16, 32), (32, 64)]:
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, EMBEDDING))


def batch_indices(name: str, labels: torch.Tensor, steps: int, size: int = 16) -> list[list[int]]:
    """`steps` batches: P x K = 4 x 4 from PKSampler for metric losses, else shuffled epochs."""
    flat: list[int] = []
    if LOSSES[name].needs_pk_sampler:
        sampler = PKSampler(labels.tolist(), 4, size // 4, seed=0)
        while len(flat) < steps * size:
            flat += sampler  # a full pass moves the sampler on to the next epoch
    else:
        generator = torch.Generator().manual_seed(0)
        while len(flat) < steps * size:
            flat += torch.randperm(len(labels), generator=generator).tolist()
    return [flat[b * size : (b + 1) * size] for b in range(steps)]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_trains_on_real_faces(name, faces):
    images, labels = faces
    steps = 30
    torch.manual_seed(0)
    spec = LOSSES[name]
    backbone = tiny_backbone()
    scale = {"s": 16.0} if "s" in spec.defaults else {}  # 64 needs more steps than a test can afford
    loss = create_loss(name, embedding_size=EMBEDDING, num_classes=IDENTITIES, **scale)
    head = CosineClassifier(EMBEDDING, IDENTITIES) if spec.kind == "margin" else nn.Identity()
    optimiser = torch.optim.Adam([*backbone.parameters(), *loss.parameters(), *head.parameters()], lr=3e-3)
    history = []
    for step, batch in enumerate(batch_indices(name, labels, steps)):
        if hasattr(loss, "set_step"):
            loss.set_step(step)
        value = loss_of(name, loss, head, backbone(images[batch]), labels[batch])
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        history.append(value.item())
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert last < first, f"{name}: loss {first:.4f} -> {last:.4f}: {history}"


# --- PK sampler ---------------------------------------------------------------------------------------------------

# 7 identities of 1 to 12 images, ids not 0..C-1 and not grouped
SAMPLER_LABELS = [5] * 10 + [9] * 7 + [2] + [7] * 3 + [11] * 12 + [3] * 5 + [4] * 4
SAMPLER_LABELS = SAMPLER_LABELS[::2] + SAMPLER_LABELS[1::2]


def batches_of(sampler: PKSampler) -> list[list[int]]:
    flat = list(sampler)
    return [flat[i : i + sampler.batch_size] for i in range(0, len(flat), sampler.batch_size)]


def test_pk_batches_hold_p_identities_of_k_images():
    p, k = 4, 4
    sampler = PKSampler(SAMPLER_LABELS, p, k, seed=0)
    assert sampler.num_batches == len(SAMPLER_LABELS) // 16 and len(sampler) == sampler.num_batches * 16
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in batches_of(sampler):
            rows = [batch[i * k : (i + 1) * k] for i in range(p)]
            identities = [{SAMPLER_LABELS[i] for i in row} for row in rows]
            assert all(len(ids) == 1 for ids in identities)
            assert len(set.union(*identities)) == p
            for row in rows:  # distinct images unless the identity has fewer than K
                assert len(set(row)) == min(k, SAMPLER_LABELS.count(SAMPLER_LABELS[row[0]]))


def test_pk_identity_with_one_image_is_repeated():
    sampler = PKSampler([0, 1, 1, 1, 2, 2], 3, 4, seed=1)
    (batch,) = batches_of(sampler)
    assert batch.count(0) == 4


def test_pk_identities_come_up_equally_often():
    labels = list(range(10)) * 8
    sampler = PKSampler(labels, 4, 2, seed=0)  # 10 batches of 4 identities: each identity 4 times
    counts = torch.bincount(torch.tensor([labels[i] for i in list(sampler)[::2]]), minlength=10)
    assert counts.tolist() == [4] * 10


def test_pk_rank_shares_are_disjoint_and_make_the_global_batch():
    single = batches_of(PKSampler(SAMPLER_LABELS, 4, 2, seed=3))
    shares = [batches_of(PKSampler(SAMPLER_LABELS, 4, 2, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == len(single)
    for whole, first, second in zip(single, *shares, strict=True):
        assert len(first) == len(second) == 4 and first + second == whole
        assert not {SAMPLER_LABELS[i] for i in first} & {SAMPLER_LABELS[i] for i in second}


def test_pk_deterministic_per_seed_and_epoch():
    def epoch_of(seed: int, epoch: int) -> list[int]:
        sampler = PKSampler(SAMPLER_LABELS, 4, 4, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_of(0, 2) == epoch_of(0, 2)
    assert epoch_of(0, 2) != epoch_of(0, 3)
    assert epoch_of(0, 2) != epoch_of(1, 2)


def test_pk_resume_mid_epoch_gives_the_remaining_batches():
    sampler = PKSampler(SAMPLER_LABELS, 2, 4, seed=0, rank=1, world_size=2)
    sampler.set_epoch(3)
    full = batches_of(sampler)
    assert sampler.state_dict() == {"epoch": 4, "position": 0}  # ran to the end: next epoch

    sampler.set_epoch(3)
    taken = list(islice(iter(sampler), 2 * sampler.batch_size))
    state = sampler.state_dict()
    assert state == {"epoch": 3, "position": 2}
    resumed = PKSampler(SAMPLER_LABELS, 2, 4, seed=0, rank=1, world_size=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # the trainer's loop sets the epoch again: the position is kept
    assert len(resumed) == (len(full) - 2) * resumed.batch_size
    assert [taken[:4], taken[4:]] + batches_of(resumed) == full

    skipped = PKSampler(SAMPLER_LABELS, 2, 4, seed=0, rank=1, world_size=2)
    skipped.set_epoch(3)
    skipped.skip(2)
    assert batches_of(skipped) == full[2:]
    with pytest.raises(ValueError, match="cannot skip"):
        skipped.skip(len(full) + 1)


def test_pk_with_a_dataloader():
    sampler = PKSampler(SAMPLER_LABELS, 4, 2, seed=0, rank=0, world_size=2)
    dataset = TensorDataset(torch.tensor(SAMPLER_LABELS))
    loader = DataLoader(dataset, batch_size=sampler.batch_size, sampler=sampler, drop_last=True)
    batches = [labels for (labels,) in loader]
    assert len(batches) == len(loader) == sampler.num_batches
    for labels in batches:
        pairs = labels.view(2, 2)
        assert (pairs[:, 0] == pairs[:, 1]).all() and pairs[0, 0] != pairs[1, 0]


def test_pk_rejects_bad_settings():
    with pytest.raises(ValueError, match="P = 8 identities per batch, but the labels hold 7"):
        PKSampler(SAMPLER_LABELS, 8, 4, seed=0)
    with pytest.raises(ValueError, match="do not split evenly over 3 ranks"):
        PKSampler(SAMPLER_LABELS, 4, 4, seed=0, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank 2 is not in"):
        PKSampler(SAMPLER_LABELS, 4, 4, seed=0, rank=2, world_size=2)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=2, max_size=12),
    p=st.integers(1, 6),
    k=st.integers(1, 5),
    world_size=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_pk_properties(sizes, p, k, world_size, seed):
    labels = [ident for ident, n in enumerate(sizes) for _ in range(n)]
    p = min(p, len(sizes)) // world_size * world_size or world_size
    if p > len(sizes):
        return
    shares = [batches_of(PKSampler(labels, p, k, seed=seed, rank=r, world_size=world_size)) for r in range(world_size)]
    for parts in zip(*shares, strict=True):
        whole = [i for part in parts for i in part]
        assert len(whole) == p * k
        rows = [whole[i * k : (i + 1) * k] for i in range(p)]
        assert len({labels[row[0]] for row in rows}) == p
        assert all(len({labels[i] for i in row}) == 1 for row in rows)
