"""Partial FC: equals a plain cosine classifier on one process, samples correctly, and two gloo processes with
sharded centres give the single-process loss and gradients."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from facekit.recognition.partial_fc import PartialFC, shard_bounds


class Scale(torch.nn.Module):
    """A margin function that only scales: NormFace."""

    def forward(self, cosine, labels, norms):
        return 16.0 * cosine


def reference_loss(embeddings, labels, weight):
    return F.cross_entropy(16.0 * F.linear(F.normalize(embeddings), F.normalize(weight)), labels)


def test_single_process_equals_cosine_softmax():
    torch.manual_seed(0)
    head = PartialFC(embedding_size=8, num_classes=11)
    x = torch.randn(6, 8, requires_grad=True)
    labels = torch.tensor([0, 3, 3, 10, 7, 1])
    loss = head(x, labels, Scale())
    x_ref = x.detach().clone().requires_grad_(True)
    w_ref = head.weight.detach().clone().requires_grad_(True)
    expected = reference_loss(x_ref, labels, w_ref)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(head.weight.grad, w_ref.grad)


def test_sampling_keeps_positives_and_maps_columns():
    torch.manual_seed(1)
    head = PartialFC(embedding_size=4, num_classes=100, sample_rate=0.2)
    labels = torch.tensor([5, 99, 5, 42, 0])
    torch.manual_seed(2)
    index, columns = head.sample(labels)
    assert len(index) == 20 and torch.equal(index, index.sort().values)
    assert torch.equal(index[columns], labels)
    x = torch.randn(5, 4, requires_grad=True)
    torch.manual_seed(2)  # the same draw inside forward
    head(x, labels, Scale()).backward()
    touched = head.weight.grad.abs().sum(1) > 0
    assert set(touched.nonzero().squeeze(1).tolist()) == set(index.tolist())


def test_more_positives_than_the_rate_allows():
    head = PartialFC(embedding_size=4, num_classes=10, sample_rate=0.1)
    labels = torch.arange(6)
    index, columns = head.sample(labels)
    assert torch.equal(index, torch.arange(6)) and torch.equal(columns, labels)


def test_shard_bounds():
    assert [shard_bounds(10, r, 3) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert shard_bounds(5, 0, 1) == (0, 5)


def _worker(rank, world, init_file, result_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    full = torch.randn(11, 8)
    x = torch.randn(8, 8)
    labels = torch.tensor([0, 3, 3, 10, 7, 1, 5, 9])
    head = PartialFC(embedding_size=8, num_classes=11)
    with torch.no_grad():
        head.weight.copy_(full[head.start : head.end])
    local = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_(True)
    loss = head(local, labels[rank * 4 : (rank + 1) * 4], Scale())
    loss.backward()
    torch.save(
        {
            "loss": loss.detach(),
            "x_grad": local.grad / world,
            "w_grad": head.weight.grad,
            "bounds": (head.start, head.end),
        },
        f"{result_file}.{rank}",
    )
    dist.destroy_process_group()


def test_two_gloo_processes_match_one(tmp_path):
    """x_grad / world: DDP averages backbone gradients over the ranks."""
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2, join=True)
    parts = [torch.load(f"{tmp_path / 'out'}.{r}", weights_only=True) for r in range(2)]
    torch.manual_seed(0)
    full = torch.randn(11, 8, requires_grad=True)
    x = torch.randn(8, 8, requires_grad=True)
    labels = torch.tensor([0, 3, 3, 10, 7, 1, 5, 9])
    expected = reference_loss(x, labels, full)
    expected.backward()
    for rank, part in enumerate(parts):
        torch.testing.assert_close(part["loss"], expected.detach())
        start, end = part["bounds"]
        torch.testing.assert_close(part["w_grad"], full.grad[start:end])
        torch.testing.assert_close(part["x_grad"], x.grad[rank * 4 : (rank + 1) * 4])


@pytest.fixture(autouse=True)
def _no_inherited_torchrun_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    yield
    os.environ.pop("MASTER_ADDR", None)


def test_initial_centres_do_not_depend_on_sharding():
    from facekit.recognition import partial_fc
    from facekit.recognition.partial_fc import initial_centres

    for classes in (10, partial_fc._INIT_CHUNK + 5):
        whole = initial_centres(classes, 4, 0, classes, seed=3)
        parts = [initial_centres(classes, 4, *shard_bounds(classes, r, 3), seed=3) for r in range(3)]
        torch.testing.assert_close(torch.cat(parts), whole)


# every head whose logits read more than its own row and column: the batch statistics, the feature norms, the
# sub-centres, the random margins; two steps, so that running values feed the second
ADAPTIVE_HEADS = (
    "adacos", "adaface", "circle", "curricularface", "elasticface_arc", "magface", "mv_softmax", "subcenter_arcface",
)  # fmt: skip


def _heads_run(names, rank: int, world: int) -> dict:
    """Per head: the losses, this rank's share of the embedding and centre gradients of two steps, and the head's
    buffers after them (rank 0 of 1 gives the single-process values)."""
    from facekit.recognition.losses import create_loss

    results = {}
    for name in names:
        torch.manual_seed(0)
        head = create_loss(name, embedding_size=8, num_classes=11)
        k = getattr(head, "centres_per_class", 1)
        full = torch.randn(11, k, 8).squeeze(1) if k == 1 else torch.randn(11, k, 8)
        pfc = PartialFC(embedding_size=8, num_classes=11, centres_per_class=k)
        with torch.no_grad():
            pfc.weight.copy_(full[pfc.start : pfc.end])
        out = {"loss": [], "x_grad": [], "w_grad": [], "bounds": (pfc.start, pfc.end)}
        for step in range(2):
            g = torch.Generator().manual_seed(step)
            x = torch.randn(8, 8, generator=g) * torch.linspace(12, 40, 8).unsqueeze(1)
            labels = torch.tensor([0, 3, 3, 10, 7, 1, 5, 9])
            share = 8 // world
            local = x[rank * share : (rank + 1) * share].clone().requires_grad_(True)
            pfc.weight.grad = None
            torch.manual_seed(10 + step)  # ElasticFace's draws
            loss = pfc(local, labels[rank * share : (rank + 1) * share], head)
            loss.backward()
            out["loss"].append(loss.detach())
            out["x_grad"].append(local.grad / world)
            out["w_grad"].append(pfc.weight.grad.clone())
        out["buffers"] = {key: value.clone() for key, value in head.state_dict().items()}
        results[name] = out
    return results


def _heads_worker(rank, world, init_file, result_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.save(_heads_run(ADAPTIVE_HEADS, rank, world), f"{result_file}.{rank}")
    dist.destroy_process_group()


def test_adaptive_heads_on_two_gloo_processes_match_one(tmp_path):
    """Batch statistics (AdaCos, AdaFace, CurricularFace, MV-Softmax), MagFace's norm-based margin and regulariser,
    sub-centres and ElasticFace's draws: sharded over two processes, the same losses, gradients and running values
    as one process."""
    import torch.multiprocessing as mp

    mp.spawn(_heads_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2, join=True)
    parts = [torch.load(f"{tmp_path / 'out'}.{r}", weights_only=True) for r in range(2)]
    single = _heads_run(ADAPTIVE_HEADS, 0, 1)
    for name in ADAPTIVE_HEADS:
        expected = single[name]
        for rank, part in enumerate(parts):
            got = part[name]
            start, end = got["bounds"]
            for step in range(2):
                where = f"{name} rank {rank} step {step}"
                torch.testing.assert_close(got["loss"][step], expected["loss"][step], msg=f"{where} loss")
                torch.testing.assert_close(got["w_grad"][step], expected["w_grad"][step][start:end], msg=where)
                rows = slice(rank * 4, (rank + 1) * 4)
                torch.testing.assert_close(got["x_grad"][step], expected["x_grad"][step][rows], msg=where)
            for key, value in expected["buffers"].items():
                torch.testing.assert_close(got["buffers"][key], value, msg=f"{name} rank {rank} {key}")
