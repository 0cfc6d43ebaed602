"""Recognition equals insightface's arcface_torch (../shared/oracles/arcface_torch) number for number: the backbones
with the same state dict, the margin heads on the same cosines, Partial FC on the same batch and centres.

Tolerances (issue 14): forwards 1e-5 relative, gradients 1e-4 relative. Backbones run in float64 (both allow it), so
the bound is far from float32 noise. Margins and Partial FC run in float32 (facekit's margins and the oracle's
gathers are float32 by design); logits cross zero, so they also get an absolute tolerance of 1e-5 of the scale s,
and gradients one of 1e-7.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from oracles import assert_same, load_module, stub_module

from facekit.recognition.backbones import BACKBONES, create_backbone, load_backbone_weights
from facekit.recognition.losses.margins import ArcFace, CombinedMargin, CosFace
from facekit.recognition.partial_fc import PartialFC

FORWARD_RTOL, GRAD_RTOL = 1e-5, 1e-4

# the oracle backbones and Partial FC enter `torch.cuda.amp.autocast(False)`, deprecated in current torch
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated")


# ---- backbones ----------------------------------------------------------------------------------------------


def oracle_backbone(name: str) -> torch.nn.Module:
    if name == "mobilefacenet":
        return load_module("arcface_torch/backbones/mobilefacenet.py", "oracle_mbf").get_mbf(False, 512)
    return getattr(load_module("arcface_torch/backbones/iresnet.py", "oracle_iresnet"), name)(False)


def randomise(model: torch.nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms, so eval mode tests more than identity BNs, and
    scale the convolutions and linears by 1 / sqrt(fan-in) so activations stay near 1 through 50 layers."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / math.sqrt(fan_in))
            if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                if module.weight.requires_grad:  # arcface_torch keeps `features`' scale fixed at 1
                    module.weight.copy_(0.5 + torch.rand(n, generator=generator))
            elif isinstance(module, torch.nn.PReLU):
                module.weight.copy_(0.25 + 0.1 * torch.randn(module.weight.shape, generator=generator))


@pytest.fixture(scope="module")
def one_thread():
    """Backbones run on one thread: on a shared 2-core machine OpenMP's spinning threads made float64 grouped
    convolutions (MobileFaceNet) take up to a minute instead of 0.2 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# the iresnets take 2-8 s each: slow (make test); make check compares mobilefacenet's, and vit_t's below
@pytest.fixture(
    scope="module",
    params=[
        pytest.param("iresnet18", marks=pytest.mark.slow),
        pytest.param("iresnet50", marks=pytest.mark.slow),
        pytest.param("iresnet200", marks=pytest.mark.slow),
        "mobilefacenet",
    ],
)
def backbone_pair(request, tmp_path_factory, one_thread):
    """(facekit's backbone loaded from the oracle's saved backbone.pth, the oracle), both float64."""
    torch.manual_seed(0)
    theirs = oracle_backbone(request.param)
    randomise(theirs)
    path = tmp_path_factory.mktemp("backbone") / "backbone.pth"
    torch.save(theirs.state_dict(), path)
    ours = create_backbone(request.param, embedding_size=512)
    load_backbone_weights(ours, path)  # strict: arcface_torch's parameter names, the way users import them
    return ours.double(), theirs.double()


def test_backbone_forward_equals_arcface_torch(backbone_pair):
    ours, theirs = backbone_pair
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        assert_same("embeddings (eval)", ours.eval()(x), theirs.eval()(x), rtol=FORWARD_RTOL)


@pytest.mark.parametrize(
    "backbone_pair",
    # the iresnets' train steps take 4-8 s: slow; mobilefacenet's (0.1 s) runs in make check
    [pytest.param(name, marks=pytest.mark.slow) for name in ("iresnet18", "iresnet50")] + ["mobilefacenet"],
    indirect=True,
)
def test_backbone_train_step_equals_arcface_torch(backbone_pair):
    """One train-mode forward + backward (on copies): same embeddings, parameter gradients and updated BN running
    statistics."""
    ours, theirs = (copy.deepcopy(model).train() for model in backbone_pair)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 112, 112, generator=generator, dtype=torch.float64)
    probe = torch.randn(2, 512, generator=generator, dtype=torch.float64)
    mine, reference = ours(x), theirs(x)
    assert_same("embeddings (train)", mine, reference, FORWARD_RTOL)
    (mine * probe).sum().backward()
    (reference * probe).sum().backward()
    their_params = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        if parameter.requires_grad:
            assert_same(f"grad {name}", parameter.grad, their_params[name].grad, GRAD_RTOL, 1e-12)
    their_buffers = dict(theirs.named_buffers())
    for name, buffer in ours.named_buffers():
        assert_same(f"buffer {name}", buffer, their_buffers[name], FORWARD_RTOL)


# ---- margin heads -------------------------------------------------------------------------------------------

S = 64.0  # arcface_torch's scale for every margin
MARGIN_ATOL = 1e-5 * S  # logits cross zero: an absolute floor of 1e-5 of their range [-s, s]
# label-column cosines from -1 to 1, several inside ArcFace's fallback region theta + m > pi (cos < -cos(m))
TARGETS = torch.tensor([-0.999, -0.97, -0.9, -0.88, -0.8, -0.5, -0.1, 0.0, 0.3, 0.7, 0.95, 0.999])


def cosines_and_labels() -> tuple[torch.Tensor, torch.Tensor]:
    """[12, 7] cosines with TARGETS in each row's label column, and labels [12] with row 3 labelled -1 (its class
    lives on another rank: scale only)."""
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 7, (12,), generator=generator)
    cosine = torch.rand(12, 7, generator=generator) * 1.998 - 0.999
    cosine[torch.arange(12), labels] = TARGETS
    labels[3] = -1
    return cosine, labels


def oracle_margin(m1: float, m2: float, m3: float, s: float = S) -> torch.nn.Module:
    return load_module("arcface_torch/losses.py", "oracle_losses").CombinedMarginLoss(s, m1, m2, m3)


def run_oracle(margin: torch.nn.Module, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The oracle edits its input in place and takes labels [N, 1] as partial_fc_v2 passes them."""
    return margin(cosine.clone(), labels.view(-1, 1))


def test_arcface_equals_combined_margin_loss():
    """facekit's ArcFace defaults are arcface_torch's (s 64, margin_list (1.0, 0.5, 0.0)).

    Difference, deliberate: at this commit arcface_torch computes `theta`/`sinmm` (the fallback past pi) but its
    forward never uses them, so where theta + m > pi its target rises again with theta. facekit keeps insightface's
    original fallback cos(theta) - m sin(m); there it must equal s (cos - oracle.sinmm), the oracle's own constants.
    """
    cosine, labels = cosines_and_labels()
    theirs_module = oracle_margin(1.0, 0.5, 0.0)
    ours = ArcFace()(cosine, labels)
    theirs = run_oracle(theirs_module, cosine, labels)
    rows = torch.nonzero(labels >= 0).squeeze(1)
    target = cosine[rows, labels[rows]]
    past_pi = target <= theirs_module.theta
    assert past_pi.sum() >= 3 and (~past_pi).sum() >= 3  # both regions are exercised
    theirs[rows[past_pi], labels[rows[past_pi]]] = S * (target[past_pi] - theirs_module.sinmm)
    assert_same("arcface logits", ours, theirs, rtol=FORWARD_RTOL, atol=MARGIN_ATOL)
    assert theirs_module.sinmm == pytest.approx(0.5 * math.sin(0.5))


def test_cosface_equals_combined_margin_loss():
    """CosFace (s 64, m 0.4 = margin_list (1.0, 0.0, 0.4)): logits and their gradient (both differentiate through)."""
    cosine, labels = cosines_and_labels()
    mine = cosine.clone().requires_grad_(True)
    reference = cosine.clone().requires_grad_(True)
    ours = CosFace()(mine, labels)
    theirs = run_oracle(oracle_margin(1.0, 0.0, 0.4), reference, labels)
    assert_same("cosface logits", ours, theirs, rtol=FORWARD_RTOL, atol=MARGIN_ATOL)
    probe = torch.randn(ours.shape, generator=torch.Generator().manual_seed(4))
    (ours * probe).sum().backward()
    (theirs * probe).sum().backward()
    assert_same("cosface d logits / d cosine", mine.grad, reference.grad, rtol=GRAD_RTOL)


@pytest.mark.parametrize(("m1", "m2", "m3"), [(1.0, 0.5, 0.0), (1.0, 0.0, 0.4), (1.0, 0.3, 0.2)])
def test_combined_margin_equals_combined_margin_loss(m1, m2, m3):
    """s (cos(m1 theta + m2) - m3) on every branch arcface_torch's CombinedMarginLoss has.

    With m3 = 0 it is the oracle's angular branch (no fallback past pi in either). With m3 > 0 the oracle applies
    only m3 and silently drops m2 (its `elif self.m3 > 0` branch); facekit applies both, as the combined margin is
    defined (ArcFace paper, section 3.2). So for (1, 0.3, 0.2), insightface's published combined default, the
    oracle's angular branch with m2 gives cos(theta + m2) and the expected logit subtracts s m3 from it.
    """
    cosine, labels = cosines_and_labels()
    ours = CombinedMargin(m1=m1, m2=m2, m3=m3)(cosine, labels)
    if m2 and m3:
        theirs = run_oracle(oracle_margin(m1, m2, 0.0), cosine, labels)
        rows = torch.nonzero(labels >= 0).squeeze(1)
        theirs[rows, labels[rows]] -= S * m3
    else:
        theirs = run_oracle(oracle_margin(m1, m2, m3), cosine, labels)
    assert_same(f"combined ({m1}, {m2}, {m3}) logits", ours, theirs, rtol=FORWARD_RTOL, atol=MARGIN_ATOL)


def test_combined_default_is_insightfaces():
    head = CombinedMargin()
    assert (head.s, head.m1, head.m2, head.m3) == (64.0, 1.0, 0.3, 0.2)


# ---- Partial FC ---------------------------------------------------------------------------------------------


@pytest.fixture
def one_process_group(tmp_path, monkeypatch):
    """partial_fc_v2 asserts torch.distributed is initialised and moves its tensors with .cuda(): a 1-process gloo
    group, and Tensor.cuda as the identity for this test (the CPU machine has no CUDA)."""
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


CLASSES, DIM, BATCH = 20, 16, 6
# partial_fc_v2 floors each label probability at 1e-30 (a row's loss at most 69.08); facekit's cross-entropy is exact
# log-sum-exp (test_partial_fc_loss_is_exact_past_the_oracles_floor). At s = 64 random centres put rows past that
# floor, so the comparisons run at s = 16, where every row's loss is far below it.
PFC_S = 16.0


def pfc_pair(sample_rate: float):
    """(facekit's PartialFC, the oracle's PartialFC_V2 with CosFace) holding the same centres."""
    oracle = load_module("arcface_torch/partial_fc_v2.py", "oracle_pfc")
    theirs = oracle.PartialFC_V2(oracle_margin(1.0, 0.0, 0.4, PFC_S), DIM, CLASSES, sample_rate)
    ours = PartialFC(embedding_size=DIM, num_classes=CLASSES, sample_rate=sample_rate)
    with torch.no_grad():
        ours.weight.copy_(theirs.weight)
    return ours, theirs


def pfc_step(ours, theirs, labels: torch.Tensor, *, seed: int):
    """One loss + backward in each from the same embeddings; both sample with torch.rand right after seeding."""
    x = torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(5))
    mine, reference = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    loss = ours(mine, labels, CosFace(s=PFC_S))
    torch.manual_seed(seed)
    loss_ref = theirs(reference, labels.clone())
    loss.backward()
    loss_ref.backward()
    return loss, loss_ref, mine.grad, reference.grad


def test_partial_fc_equals_partial_fc_v2(one_process_group):
    ours, theirs = pfc_pair(1.0)
    labels = torch.tensor([0, 3, 3, 19, 7, 11])
    loss, loss_ref, grad, grad_ref = pfc_step(ours, theirs, labels, seed=0)
    assert_same("partial fc loss", loss, loss_ref, rtol=FORWARD_RTOL)
    assert_same("grad embeddings", grad, grad_ref, rtol=GRAD_RTOL, atol=1e-7)
    assert_same("grad weight", ours.weight.grad, theirs.weight.grad, rtol=GRAD_RTOL, atol=1e-7)


def test_partial_fc_arcface_loss_equals_partial_fc_v2(one_process_group):
    """With ArcFace the losses are equal (no label cosine here is past pi, see the ArcFace test for that region).

    Gradients are not compared, by design upstream: the oracle applies the angular margin in place under no_grad,
    so its gradient is that of s cos(theta) (a straight-through margin); facekit differentiates s cos(theta + m).
    """
    oracle = load_module("arcface_torch/partial_fc_v2.py", "oracle_pfc")
    theirs = oracle.PartialFC_V2(oracle_margin(1.0, 0.5, 0.0, PFC_S), DIM, CLASSES, 1.0)
    ours = PartialFC(embedding_size=DIM, num_classes=CLASSES)
    with torch.no_grad():
        ours.weight.copy_(theirs.weight)
    x = torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0, 3, 3, 19, 7, 11])
    label_cosines = (F.normalize(x) * F.normalize(ours.weight[labels])).sum(1)
    assert (label_cosines > math.cos(math.pi - 0.5)).all()
    with torch.no_grad():
        loss = ours(x, labels, ArcFace(s=PFC_S))
        assert_same("partial fc arcface loss", loss, theirs(x, labels.clone()), rtol=FORWARD_RTOL)


def test_partial_fc_loss_is_exact_past_the_oracles_floor(one_process_group):
    """At s = 64 with CosFace some rows' losses pass 69.08 (label probability below 1e-30): partial_fc_v2 floors
    them there, facekit's loss equals torch's exact cross-entropy."""
    ours, theirs = pfc_pair(1.0)
    theirs.margin_softmax = oracle_margin(1.0, 0.0, 0.4, 64.0)
    labels = torch.tensor([0, 3, 3, 19, 7, 11])
    x = torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        loss, floored = ours(x, labels, CosFace(s=64.0)), theirs(x, labels.clone())
        cosine = F.linear(F.normalize(x), F.normalize(ours.weight))
        rows = F.cross_entropy(CosFace(s=64.0)(cosine, labels), labels, reduction="none")
    assert rows.max() > -math.log(1e-30)  # the floor matters here
    assert_same("exact loss", loss, rows.mean(), rtol=FORWARD_RTOL)
    assert_same("floored loss", floored, rows.clamp(max=-math.log(1e-30)).mean(), rtol=FORWARD_RTOL)


@pytest.mark.parametrize(
    ("sample_rate", "labels"),
    [(0.5, [0, 3, 3, 19, 7, 11]), (0.1, [0, 3, 3, 19, 7, 11])],  # 10 of 20 classes; fewer slots than positives
    ids=["rate-0.5", "positives-exceed-rate"],
)
def test_sampled_partial_fc_equals_partial_fc_v2(one_process_group, sample_rate, labels):
    """Below rate 1 both draw torch.rand(num_classes), pin the positives at 2.0 and keep the top k, sorted: seeded
    alike they pick the same centres (checked), and then loss and gradients are equal. (facekit rounds the sample
    count up, the oracle down: rate x classes is an integer here.)"""
    ours, theirs = pfc_pair(sample_rate)
    labels = torch.tensor(labels)
    torch.manual_seed(7)
    index, _ = ours.sample(labels)
    loss, loss_ref, grad, grad_ref = pfc_step(ours, theirs, labels, seed=7)
    assert torch.equal(index, theirs.weight_index), f"sampled {index.tolist()}, oracle {theirs.weight_index.tolist()}"
    assert_same("sampled partial fc loss", loss, loss_ref, rtol=FORWARD_RTOL)
    assert_same("grad embeddings", grad, grad_ref, rtol=GRAD_RTOL, atol=1e-7)
    assert_same("grad weight", ours.weight.grad, theirs.weight.grad, rtol=GRAD_RTOL, atol=1e-7)


# ---- ViT and iresnet200 ---------------------------------------------------------------------------------------

# arcface_torch backbones/__init__.py's get_model arguments for each name (img_size 112, patch_size 9, layer norm)
ORACLE_VITS = {
    "vit_t": {"embed_dim": 256, "depth": 12, "drop_path_rate": 0.1, "mask_ratio": 0.1},
    "vit_s": {"embed_dim": 512, "depth": 12, "drop_path_rate": 0.1, "mask_ratio": 0.1},
    "vit_b": {"embed_dim": 512, "depth": 24, "drop_path_rate": 0.1, "mask_ratio": 0.1, "using_checkpoint": True},
}


class _EvalOnlyDropPath(torch.nn.Module):
    """Stand-in for timm's DropPath: identity in eval mode; the train-mode tests build the oracle with
    drop_path_rate 0 (nn.Identity), so this stub never decides a number there."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise AssertionError("stub DropPath used in train mode")
        return x


def oracle_vit(name: str, **overrides: float) -> torch.nn.Module:
    """arcface_torch's VisionTransformer built as get_model(name) builds it. timm is not installed: the three names
    vit.py imports from timm.models.layers are stubbed (to_2tuple, torch's own trunc_normal_, an eval-only DropPath)."""
    timm_layers = stub_module(
        "timm.models.layers",
        DropPath=_EvalOnlyDropPath,
        to_2tuple=lambda value: (value, value),
        trunc_normal_=torch.nn.init.trunc_normal_,
    )
    stubs = {"timm": stub_module("timm"), "timm.models": stub_module("timm.models"), "timm.models.layers": timm_layers}
    vit = load_module("arcface_torch/backbones/vit.py", "oracle_vit", stubs)
    args = {**ORACLE_VITS[name], **overrides}
    return vit.VisionTransformer(
        img_size=112, patch_size=9, num_classes=512, num_heads=8, norm_layer="ln", **args
    )  # fmt: skip


# the oracle's ViT enters torch.cuda.amp.autocast(True) around its linears: on a machine without CUDA it warns
cpu_autocast_warning = pytest.mark.filterwarnings("ignore:CUDA is not available or torch_xla is imported:UserWarning")


@pytest.fixture
def oracle_keeps_float64(monkeypatch):
    """The oracle's attention and final norm call `.float()` (float32 attention under fp16 autocast); for these
    float64 comparisons Tensor.float leaves float64 tensors as they are, so both models compute in float64."""
    to_float = torch.Tensor.float
    monkeypatch.setattr(
        torch.Tensor, "float", lambda self, *a, **k: self if self.dtype == torch.float64 else to_float(self, *a, **k)
    )


def randomise_vit(model: torch.nn.Module) -> None:
    """On top of randomise: random LayerNorm affines and linear biases, and MLP inputs scaled so that a good share
    of the hidden units exceed 6 (ReLU6's clamp is then exercised, not just its ReLU part)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
            if isinstance(module, torch.nn.LayerNorm | torch.nn.Linear) and module.bias is not None:
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
            if name.endswith("mlp.fc1"):
                module.weight.mul_(6.0)
        model.mask_token.copy_(torch.randn(model.mask_token.shape, generator=generator))


def vit_pair(name: str, tmp_path, **overrides: float) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(facekit's ViT loaded strictly from the oracle's saved backbone.pth, the oracle), both float64, with
    non-trivial BatchNorm statistics in the feature head."""
    torch.manual_seed(0)
    theirs = oracle_vit(name, **overrides)
    randomise(theirs)
    randomise_vit(theirs)
    path = tmp_path / "backbone.pth"
    torch.save(theirs.state_dict(), path)
    ours = BACKBONES[name](**({"drop_path": overrides["drop_path_rate"]} if "drop_path_rate" in overrides else {}))
    load_backbone_weights(ours, path)
    return ours.double(), theirs.double()


@cpu_autocast_warning
@pytest.mark.parametrize(
    "name", ["vit_t", pytest.param("vit_s", marks=pytest.mark.slow), pytest.param("vit_b", marks=pytest.mark.slow)]
)
def test_vit_forward_equals_arcface_torch(name, tmp_path, one_thread, oracle_keeps_float64):
    """Eval mode (no masking, no stochastic depth): same embeddings from arcface_torch's parameters."""
    ours, theirs = vit_pair(name, tmp_path)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        assert_same(f"{name} embeddings (eval)", ours.eval()(x), theirs.eval()(x), rtol=FORWARD_RTOL)


@pytest.mark.slow  # ~3 s; quick: the vit_t eval forward here and mobilefacenet's train step
@cpu_autocast_warning
def test_vit_train_step_with_masking_equals_arcface_torch(tmp_path, one_thread, oracle_keeps_float64):
    """vit_t in train mode with its token masking (mask_ratio 0.1): both draw the mask with torch.rand(B, L) first
    thing after the position embedding, so seeded alike they drop the same tokens. Stochastic depth is off in both
    (drop_path_rate 0): it draws per block, and the oracle's DropPath is timm's, which is not installed. Same
    embeddings, parameter gradients (mask_token included) and BatchNorm running statistics."""
    ours, theirs = vit_pair("vit_t", tmp_path, drop_path_rate=0.0)
    ours.train(), theirs.train()
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 112, 112, generator=generator, dtype=torch.float64)
    probe = torch.randn(2, 512, generator=generator, dtype=torch.float64)
    torch.manual_seed(3)
    mine = ours(x)
    torch.manual_seed(3)
    reference = theirs(x)
    assert_same("vit_t embeddings (train, masked)", mine, reference, FORWARD_RTOL)
    (mine * probe).sum().backward()
    (reference * probe).sum().backward()
    their_params = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        assert_same(f"grad {name}", parameter.grad, their_params[name].grad, GRAD_RTOL, 1e-12)
    assert ours.mask_token.grad.abs().sum() > 0  # the masked places were filled, as in the oracle
    their_buffers = dict(theirs.named_buffers())
    for name, buffer in ours.named_buffers():
        assert_same(f"buffer {name}", buffer, their_buffers[name], FORWARD_RTOL)
