"""RetinaFace against Pytorch_Retinaface (../shared/oracles/pytorch_retinaface, biubug6 @b984b4b): same weights ->
same loc/conf/landms, same priors, same box and landmark coding, same MultiBox loss parts and gradients.

Tolerances (issue 14): forwards and coding 1e-5 relative (run in float64 where both sides allow it); the loss runs
in float32, because facekit's MultiBoxLoss casts predictions to float32 (deliberate, for autocast), so its values
and gradients are compared at 1e-5 and 1e-4 relative with a float32-sized absolute floor.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

import pytest
import torch
from oracles import assert_same, load_module, stub_module
from torch import nn

from facekit.detection.box_utils import (
    box_iou,
    decode,
    decode_landmarks,
    encode,
    encode_landmarks,
    point_form,
    prior_boxes,
)
from facekit.detection.loss import MultiBoxLoss
from facekit.detection.model import BODIES, RetinaFace

ORACLE = "pytorch_retinaface"
VARIANCES = (0.1, 0.2)


class IntermediateLayerGetter(nn.ModuleDict):
    """Stand-in for torchvision.models._utils.IntermediateLayerGetter (torchvision is not installed): keeps the
    model's children up to the last returned one, runs them in order and returns the named outputs in an
    OrderedDict keyed by return_layers' values, as torchvision does."""

    def __init__(self, model: nn.Module, return_layers: dict) -> None:
        remaining = {str(k) for k in return_layers}
        layers = OrderedDict()
        for name, module in model.named_children():
            layers[name] = module
            remaining.discard(name)
            if not remaining:
                break
        super().__init__(layers)
        self.return_layers = {str(k): v for k, v in return_layers.items()}

    def forward(self, x: torch.Tensor) -> OrderedDict:
        out = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out


def torchvision_stubs() -> dict:
    """The torchvision names the oracle's models/ import: _utils.IntermediateLayerGetter, an empty
    detection.backbone_utils (imported, never used) and models.resnet50, here facekit's own ResNet50 (torchvision's
    layout and parameter names), so the ResNet-50 case checks the oracle's FPN/SSH/heads at width 256, not the body."""
    utils = stub_module("torchvision.models._utils", IntermediateLayerGetter=IntermediateLayerGetter)
    backbone_utils = stub_module("torchvision.models.detection.backbone_utils")
    detection = stub_module("torchvision.models.detection", backbone_utils=backbone_utils)
    models = stub_module(
        "torchvision.models",
        _utils=utils,
        detection=detection,
        resnet50=lambda pretrained=False: BODIES["resnet50"].build(),
    )
    return {
        "torchvision": stub_module("torchvision", models=models),
        "torchvision.models": models,
        "torchvision.models._utils": utils,
        "torchvision.models.detection": detection,
        "torchvision.models.detection.backbone_utils": backbone_utils,
    }


@pytest.fixture(scope="module")
def oracle() -> dict:
    """The oracle's modules, loaded by path: its absolute imports (models.net, utils.box_utils, data) are stubbed
    with the files themselves; data/ has no __init__.py upstream, so `data` is a stub holding config.py's dicts."""
    tv = torchvision_stubs()
    net = load_module(f"{ORACLE}/models/net.py", "oracle_retinaface_net", tv)
    models = {"models": stub_module("models", net=net), "models.net": net}
    retinaface = load_module(f"{ORACLE}/models/retinaface.py", "oracle_retinaface", {**tv, **models})
    config = load_module(f"{ORACLE}/data/config.py", "oracle_retinaface_config")
    box_utils = load_module(f"{ORACLE}/utils/box_utils.py", "oracle_retinaface_box_utils")
    data = stub_module("data", cfg_mnet=config.cfg_mnet, cfg_re50=config.cfg_re50)
    utils = {"utils": stub_module("utils", box_utils=box_utils), "utils.box_utils": box_utils, "data": data}
    loss = load_module(f"{ORACLE}/layers/modules/multibox_loss.py", "oracle_retinaface_loss", utils)
    priors = load_module(f"{ORACLE}/layers/functions/prior_box.py", "oracle_retinaface_prior_box")
    return {
        "retinaface": retinaface,
        "config": config,
        "box_utils": box_utils,
        "loss": loss,
        "priors": priors,
        "torchvision": tv,
    }


def randomise_(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so eval mode exercises them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0, 0.1, generator=generator)
                m.running_mean.normal_(0, 0.1, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)


@pytest.mark.parametrize(
    ("body", "cfg_name", "size", "train"),
    [
        ("mobilenet0.25", "cfg_mnet", (160, 160), False),
        ("mobilenet0.25", "cfg_mnet", (96, 136), True),  # non-square, not a multiple of 32; batch statistics
        ("resnet50", "cfg_re50", (64, 64), False),
    ],
)
def test_forward_matches_oracle(oracle, monkeypatch, body, cfg_name, size, train):
    """Same state dict (the oracle's, loaded strictly: facekit keeps Pytorch_Retinaface's parameter names) and the
    same float64 batch of 2 give the same loc, conf (logits: the oracle's phase 'train') and landms; phase 'test'
    conf is the softmax of facekit's logits. ResNet-50: the oracle builds torchvision's resnet50, here stubbed with
    facekit's (torchvision is not installed), so that case checks the FPN, SSH and heads at width 256 (LeakyReLU
    slope 0) and the state-dict names, not the ResNet body itself."""
    for name, module in oracle["torchvision"].items():  # the oracle imports torchvision.models in its constructor
        monkeypatch.setitem(sys.modules, name, module)
    cfg = {**getattr(oracle["config"], cfg_name), "pretrain": False}
    generator = torch.Generator().manual_seed(14)
    torch.manual_seed(14)
    theirs = oracle["retinaface"].RetinaFace(cfg=cfg, phase="train").double()
    randomise_(theirs, generator)
    ours = RetinaFace(body).double()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.train(train)
    ours.train(train)
    x = torch.randn(2, 3, *size, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        expected = theirs(x)
        got = ours(x)
    for name, a, b in zip(("loc", "conf", "landms"), got, expected, strict=True):
        assert_same(f"{body} {name}", a, b, rtol=1e-5, atol=1e-9)
    theirs.phase = "test"
    with torch.no_grad():
        softmax = theirs(x)[1]
    assert_same(f"{body} softmax conf", got[1].softmax(-1), softmax, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("size", [(160, 160), (120, 200), (97, 131)])
def test_priors_match_oracle(oracle, size):
    """Same anchors, same order, for square, non-square and non-multiple-of-32 (height, width) images."""
    cfg = oracle["config"].cfg_mnet
    theirs = oracle["priors"].PriorBox(cfg, image_size=size).forward()
    ours = prior_boxes(size, cfg["min_sizes"], cfg["steps"])
    assert_same(f"priors {size}", ours, theirs, rtol=1e-5)


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, 4] float64 normalised corner boxes with positive sides."""
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 0.7
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 0.3 + 0.02
    return torch.cat([xy, xy + wh], 1)


def test_box_and_landmark_coding_match_oracle(oracle):
    """encode/decode and landmark encode/decode (float64) give the oracle's numbers for the same boxes, priors and
    variances; facekit's landmarks are [N, 5, 2] where the oracle's are [N, 10] (x, y pairs), and facekit's decoders
    also take a batch dimension, checked image by image."""
    box_utils = oracle["box_utils"]
    generator = torch.Generator().manual_seed(3)
    priors = prior_boxes((120, 200), [[16, 32], [64, 128], [256, 512]], [8, 16, 32]).double()
    n = len(priors)
    matched = random_boxes(n, generator)
    assert_same("encode", encode(matched, priors, VARIANCES), box_utils.encode(matched, priors, VARIANCES), rtol=1e-5)
    landmarks = torch.rand(n, 5, 2, generator=generator, dtype=torch.float64)
    assert_same(
        "encode_landmarks",
        encode_landmarks(landmarks, priors, VARIANCES),
        box_utils.encode_landm(landmarks.reshape(n, 10), priors, VARIANCES),
        rtol=1e-5,
    )
    loc = torch.randn(2, n, 4, generator=generator, dtype=torch.float64)
    pre = torch.randn(2, n, 10, generator=generator, dtype=torch.float64)
    boxes, points = decode(loc, priors, VARIANCES), decode_landmarks(pre, priors, VARIANCES)
    for i in range(2):
        assert_same(f"decode[{i}]", boxes[i], box_utils.decode(loc[i], priors, VARIANCES), rtol=1e-5, atol=1e-12)
        assert_same(
            f"decode_landmarks[{i}]",
            points[i].reshape(n, 10),
            box_utils.decode_landm(pre[i], priors, VARIANCES),
            rtol=1e-5,
            atol=1e-12,
        )


class Target:
    """facekit's training target (facekit.detection.augment.Target's fields)."""

    def __init__(self, boxes: torch.Tensor, landmarks: torch.Tensor, landmark_mask: torch.Tensor) -> None:
        self.boxes, self.landmarks, self.landmark_mask = boxes, landmarks, landmark_mask


def face_targets(faces: list[tuple[list[float], bool]], size: int, generator: torch.Generator) -> tuple:
    """Faces (pixel corner box, has landmarks) in a size x size image -> (facekit Target, oracle [F, 15] rows).

    The conversion: facekit keeps landmarks and a bool landmark_mask; the oracle's row is box (4), landmarks (10)
    and a label, 1 for a face with landmarks and -1 for one without, whose landmarks are -1 (its WIDER loader's
    convention); the oracle then leaves label -1 anchors out of the landmark loss only.
    """
    if not faces:
        return Target(torch.zeros(0, 4), torch.zeros(0, 5, 2), torch.zeros(0, dtype=torch.bool)), torch.zeros(0, 15)
    boxes = torch.tensor([box for box, _ in faces], dtype=torch.float32) / size
    mask = torch.tensor([has for _, has in faces])
    inside = torch.rand(len(faces), 5, 2, generator=generator)
    landmarks = boxes[:, None, :2] + inside * (boxes[:, None, 2:] - boxes[:, None, :2])
    landmarks[~mask] = -1.0
    label = torch.where(mask, 1.0, -1.0)[:, None]
    return Target(boxes, landmarks, mask), torch.cat([boxes, landmarks.reshape(-1, 10), label], 1)


SIZE = 160
FACES = {  # pixel corner boxes in a 160 x 160 image, and whether the face has landmarks
    "faces": [
        [
            ([21, 19, 53, 57], True),
            ([91, 37, 149, 111], True),
            ([41, 101, 59, 117], False),
            ([131, 133, 135, 136], True),
        ],
        [([11, 9, 139, 151], False), ([101, 21, 123, 45], True)],
    ],
    "no valid face": [[([77, 5, 81, 9], True)], []],  # a face too small for any prior (IoU < 0.2), no faces
}


def oracle_loss(oracle, monkeypatch) -> nn.Module:
    """The oracle's MultiBoxLoss as its train.py builds it (2 classes, overlap 0.35, 7 negatives per positive).
    It moves its targets to CUDA unconditionally (`torch.tensor(0).cuda()`): Tensor.cuda is a no-op here."""
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)
    return oracle["loss"].MultiBoxLoss(2, 0.35, True, 0, True, 7, 0.35, False)


def predictions(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random float32 (loc, logits, landms) for a batch of 2. The logit gaps are a permutation of values 0.004
    apart, so hard negative mining never ranks near-ties, which float32 rounding could order either way."""
    loc = torch.randn(2, n, 4, generator=generator)
    landm = torch.randn(2, n, 10, generator=generator)
    gaps = torch.stack([torch.randperm(n, generator=generator) for _ in range(2)]).float() * 0.004 - 2.0
    background = torch.randn(2, n, generator=generator)
    logits = torch.stack([background, background + gaps], -1)
    return loc, logits, landm


@pytest.mark.parametrize("case", list(FACES))
def test_matching_matches_oracle(oracle, case):
    """Per-anchor targets: facekit's labels are the oracle's conf_t != 0, its landmark weights conf_t > 0 (label
    -1 = no landmarks), and the box and landmark targets agree where they are used.

    A known difference, outside these cases: upstream `match` still hands a too-small face (best IoU < 0.2, ignored)
    its best prior, so if that prior is positive for another face it regresses to the ignored face; facekit lets only
    the faces it keeps claim priors. Here the small faces' best priors overlap no other face."""
    generator = torch.Generator().manual_seed(7)
    priors = oracle["priors"].PriorBox(oracle["config"].cfg_mnet, image_size=(SIZE, SIZE)).forward()
    for i, faces in enumerate(FACES[case]):
        target, rows = face_targets(faces, SIZE, generator)
        n = len(priors)
        loc_t, conf_t, landm_t = torch.zeros(1, n, 4), torch.zeros(1, n, dtype=torch.long), torch.zeros(1, n, 10)
        oracle["box_utils"].match(
            0.35, rows[:, :4], priors, VARIANCES, rows[:, 14], rows[:, 4:14], loc_t, conf_t, landm_t, 0
        )
        loc, labels, landm, landm_w = (t[0] for t in MultiBoxLoss().targets([target], priors))
        assert torch.equal(labels.bool(), conf_t[0] != 0), f"image {i}: positive anchors differ"
        assert torch.equal(landm_w, conf_t[0] > 0), f"image {i}: landmark anchors differ"
        pos = labels.bool()
        assert_same(f"image {i} box targets", loc[pos], loc_t[0][pos], rtol=1e-5, atol=1e-6)
        assert_same(f"image {i} landmark targets", landm[landm_w], landm_t[0][landm_w], rtol=1e-5, atol=1e-6)
    if case == "faces":
        assert labels.sum() > 0


@pytest.mark.parametrize("case", list(FACES))
def test_multibox_loss_matches_oracle(oracle, monkeypatch, case):
    """Same predictions, priors and faces (targets converted as face_targets says): the same box, class and
    landmark losses, total (box weight 2 = cfg loc_weight) and gradients w.r.t. loc, logits and landms. float32:
    facekit casts predictions to float32; 1e-5 relative on the losses, 1e-4 on the gradients, with an absolute
    floor of 1e-6 x the largest gradient for entries that are zero up to rounding."""
    generator = torch.Generator().manual_seed(11)
    priors = oracle["priors"].PriorBox(oracle["config"].cfg_mnet, image_size=(SIZE, SIZE)).forward()
    pairs = [face_targets(faces, SIZE, generator) for faces in FACES[case]]
    targets, rows = [t for t, _ in pairs], [r for _, r in pairs]
    preds = predictions(len(priors), generator)
    ours_in = [p.clone().requires_grad_() for p in preds]
    theirs_in = [p.clone().requires_grad_() for p in preds]

    out = MultiBoxLoss()(tuple(ours_in), priors, targets)
    loss_l, loss_c, loss_landm = oracle_loss(oracle, monkeypatch)(tuple(theirs_in), priors, rows)
    total = oracle["config"].cfg_mnet["loc_weight"] * loss_l + loss_c + loss_landm
    for name, a, b in [("box", out["box"], loss_l), ("class", out["class"], loss_c)]:
        assert_same(f"{name} loss", a, b, rtol=1e-5)
    assert_same("landmark loss", out["landmark"], loss_landm, rtol=1e-5, atol=1e-7)
    assert_same("total loss", out["loss"], total, rtol=1e-5)

    out["loss"].backward()
    total.backward()
    for name, a, b in zip(("loc", "logits", "landms"), ours_in, theirs_in, strict=True):
        floor = 1e-6 * b.grad.abs().max().item()
        assert_same(f"d loss / d {name}", a.grad, b.grad, rtol=1e-4, atol=floor)
    if case == "faces":
        assert out["box"] > 0 and out["landmark"] > 0


def test_ignored_small_face_does_not_take_a_positive_prior(oracle):
    """The one deliberate difference from upstream `match`: a face too small to match any prior (best IoU < 0.2) is
    ignored, but upstream still assigns it its best prior, so when that prior is positive for a real face (IoU >=
    0.35) the prior is trained to regress the ignored face. facekit lets only kept faces claim priors; that prior
    keeps the real face's target. Everywhere else the targets are the oracle's."""
    priors = oracle["priors"].PriorBox(oracle["config"].cfg_mnet, image_size=(SIZE, SIZE)).forward()
    n = len(priors)
    # a 24 px face and a 3 px face inside it whose best prior (16 px at (52, 52)) has IoU 0.44 with the 24 px one
    boxes = torch.tensor([[44.0, 44.0, 68.0, 68.0], [51.0, 51.0, 54.0, 54.0]]) / SIZE
    landmarks = torch.rand(2, 5, 2, generator=torch.Generator().manual_seed(5))
    loc_t, conf_t, landm_t = torch.zeros(1, n, 4), torch.zeros(1, n, dtype=torch.long), torch.zeros(1, n, 10)
    labels_in = torch.ones(2)
    oracle["box_utils"].match(
        0.35, boxes, priors, VARIANCES, labels_in, landmarks.reshape(2, 10), loc_t, conf_t, landm_t, 0
    )
    target = Target(boxes, landmarks, torch.ones(2, dtype=torch.bool))
    loc, labels, _, _ = (t[0] for t in MultiBoxLoss().targets([target], priors))
    assert torch.equal(labels.bool(), conf_t[0] != 0)
    contested = int(box_iou(boxes[1:], point_form(priors)).argmax())
    pos = labels.bool()
    differ = torch.nonzero((loc - loc_t[0]).abs().amax(1) > 1e-5 * loc_t[0].abs().amax(1) + 1e-6).squeeze(1)
    assert differ[pos[differ]].tolist() == [contested]
    assert_same(
        "contested prior's target",
        loc[contested],
        encode(boxes[:1], priors[contested : contested + 1], VARIANCES)[0],
        rtol=1e-5,
        atol=1e-6,
    )
