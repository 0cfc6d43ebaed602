"""arcface_torch's face Vision Transformer (vit_t, vit_s, vit_b): 9x9 patches of a 112x112 crop (a 12 x 12 grid,
the last 4 rows and columns unused), pre-norm transformer blocks with a ReLU6 MLP and no class token, then all 144
tokens flattened into a BatchNorm'd linear feature head. Module and parameter names are arcface_torch's
(`patch_embed.proj`, `pos_embed`, `blocks.N.attn.qkv`, `feature.0` ...), so its backbone.pth files load strictly.

Training-time regularisers, as in arcface_torch: `mask_ratio` drops that share of the tokens (a random subset per
sample, drawn with `torch.rand(B, L)`) before the blocks and puts the learnt `mask_token` back in their places after
the final norm; `drop_path` is stochastic depth growing linearly from 0 to `drop_path` over the blocks. Both act in
train mode only; eval mode is deterministic.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class DropPath(nn.Module):
    """Stochastic depth: in train mode zero a sample's residual branch with probability `p` and scale the kept
    ones by 1 / (1 - p); identity in eval mode. [B, ...] -> [B, ...]."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        return x * x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep).div_(keep)


class Mlp(nn.Module):
    """fc1, ReLU6, dropout, fc2, dropout: [B, L, D] -> [B, L, D]."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention with a bias-free qkv projection: [B, L, D] -> [B, L, D]. Like arcface_torch, the
    scores, softmax and weighted sum run in at least float32 even under autocast."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        # [B, L, 3D] -> [3, B, heads, L, D / heads]
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        qkv = qkv.to(torch.promote_types(qkv.dtype, torch.float32))
        with torch.autocast(x.device.type, enabled=False):
            q, k, v = qkv[0], qkv[1], qkv[2]
            weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # [B, heads, L, L]
            out = (weights @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(out))


class Block(nn.Module):
    """Pre-norm transformer block: x + drop_path(attn(norm1(x))), then x + drop_path(mlp(norm2(x))).
    [B, L, D] -> [B, L, D]."""

    def __init__(
        self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, dropout: float = 0.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patch_size x patch_size patches, linearly embedded by one strided conv:
    [B, 3, img_size, img_size] -> [B, (img_size // patch_size) ** 2, D]."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, in_channels: int = 3) -> None:
        super().__init__()
        self.img_size = img_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]  # tensors while tracing for ONNX, where the size is the example's anyway
        if not torch.jit.is_tracing() and (height, width) != (self.img_size, self.img_size):
            raise ValueError(f"expected {self.img_size}x{self.img_size} crops, got {height}x{width}")
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """arcface_torch's face ViT (backbones/vit.py, layer-normed): patch embedding plus a learnt position embedding,
    `depth` blocks, a final LayerNorm, then `feature`: Linear(L * D -> D, no bias), BatchNorm1d, Linear(D ->
    embedding_size, no bias), BatchNorm1d (eps 2e-5). `dropout` is arcface_torch's drop_rate (after the position
    embedding and inside every block); `checkpointing` recomputes each block's activations in the backward pass
    (arcface_torch's using_checkpoint: less memory, same numbers)."""

    def __init__(
        self,
        *,
        embed_dim: int,
        depth: int,
        num_heads: int,
        embedding_size: int = 512,
        img_size: int = 112,
        patch_size: int = 9,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        drop_path: float,
        mask_ratio: float,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.embed_dim, self.mask_ratio, self.checkpointing = embed_dim, mask_ratio, checkpointing
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim)
        self.num_patches = self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        rates = torch.linspace(0, drop_path, depth).tolist()  # stochastic depth grows with depth
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, dropout=dropout, drop_path=rate) for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.feature = nn.Sequential(
            nn.Linear(embed_dim * self.num_patches, embed_dim, bias=False),
            nn.BatchNorm1d(embed_dim, eps=2e-5),
            nn.Linear(embed_dim, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size, eps=2e-5),
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 112, 112] -> [B, embedding_size]."""
        batch = x.shape[0]
        tokens = self.pos_drop(self.patch_embed(x) + self.pos_embed)  # [B, L, D]
        masking = self.training and self.mask_ratio > 0
        if masking:
            tokens, restore = self._drop_tokens(tokens)  # [B, L', D], [B, L]
        for block in self.blocks:
            if self.checkpointing and self.training:
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
        tokens = self.norm(tokens.float() if tokens.dtype in (torch.float16, torch.bfloat16) else tokens)
        if masking:
            filler = self.mask_token.to(tokens.dtype).expand(batch, restore.shape[1] - tokens.shape[1], -1)
            index = restore.unsqueeze(-1).expand(-1, -1, self.embed_dim)
            tokens = torch.gather(torch.cat([tokens, filler], dim=1), 1, index)  # masked places get mask_token
        return self.feature(tokens.reshape(batch, self.num_patches * self.embed_dim))

    def _drop_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep int(L (1 - mask_ratio)) random tokens of each sample (those with the smallest of torch.rand(B, L)),
        in that random order: ([B, L', D] kept tokens, [B, L] the index that puts kept + masked back in place)."""
        batch, length, dim = tokens.shape
        keep = int(length * (1 - self.mask_ratio))
        shuffle = torch.argsort(torch.rand(batch, length, device=tokens.device), dim=1)
        restore = torch.argsort(shuffle, dim=1)
        kept = torch.gather(tokens, 1, shuffle[:, :keep].unsqueeze(-1).expand(-1, -1, dim))
        return kept, restore
