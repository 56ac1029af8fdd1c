"""A masked autoencoder (He et al., CVPR 2022) built from timm's ViT blocks, for the A/B harness.

The model follows the reference implementation (facebookresearch/mae, ``models_mae.py``), which
is itself assembled from ``timm.models.vision_transformer.PatchEmbed`` and ``Block``: a ViT
encoder that sees only the visible patches (plus a class token), a light transformer decoder that
sees encoded visible tokens and a shared learned mask token at every masked position, fixed 2-D
sine-cosine position embeddings in both, and a mean-squared-error loss over the *masked* patches
only. timm's blocks are used rather than a separate MAE package because timm is already a
required dependency, maintained, and its ``Block`` / ``PatchEmbed`` are what MAE's own code
imports; only the masking, the decoder wiring and the loss (about 100 lines) are written here.

Masking is MAE's per-sample random shuffle (``argsort`` of uniform noise, keep the first
``(1 - mask_ratio) L`` patches), with the noise drawn from a ``torch.Generator`` that the caller
seeds: the same generator state gives the same masks on any device.

:data:`MAE_SPECS` holds the two model sizes the harness uses: ``digits`` (8x8 digits, 2x2
patches, a 4-block 64-wide encoder) and ``vit_small_patch16`` (ViT-S/16 at 224 px, the size
``--dataset imagefolder:PATH --objective mae`` trains, on a GPU). torch and timm are imported
inside the functions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.ab.tasks import ABTask
from cl_core.validation import check_int


@dataclass(frozen=True)
class MAESpec:
    """Shape of a masked autoencoder.

    Parameters
    ----------
    image_size, patch_size : int
        Square inputs of ``image_size`` pixels cut into ``(image_size / patch_size)^2`` patches.
    in_chans : int
    embed_dim, depth, num_heads : int
        The encoder (a ViT): token width, blocks, attention heads.
    decoder_dim, decoder_depth, decoder_heads : int
        The decoder (light: narrower and shallower than the encoder).
    mlp_ratio : float
    mask_ratio : float in (0, 1)
        Share of patches masked per image (MAE: 0.75).
    norm_pix_loss : bool
        Targets are each patch's pixels standardised within the patch (MAE's default for
        ImageNet). Off for 2x2 patches, where four pixels give no meaningful patch statistics.
    """

    image_size: int
    patch_size: int
    in_chans: int
    embed_dim: int
    depth: int
    num_heads: int
    decoder_dim: int
    decoder_depth: int
    decoder_heads: int
    mlp_ratio: float = 4.0
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "in_chans", "depth", "decoder_depth"):
            check_int(name, getattr(self, name), 1)
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        for width, heads in (("embed_dim", "num_heads"), ("decoder_dim", "decoder_heads")):
            dim, n_heads = getattr(self, width), getattr(self, heads)
            # the 2-D sine-cosine position embedding needs a width divisible by 4
            if dim % 4 or dim % n_heads:
                raise ValueError(f"{width}={dim} must be a multiple of 4 and of {heads}={n_heads}")
        if not 0.0 < float(self.mask_ratio) < 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {self.mask_ratio}; MAE uses 0.75")

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def n_patches(self) -> int:
        return self.grid**2

    @property
    def n_visible(self) -> int:
        """Patches the encoder sees per image (MAE: ``int(L * (1 - mask_ratio))``)."""
        return max(1, int(self.n_patches * (1.0 - self.mask_ratio)))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


MAE_SPECS: dict[str, MAESpec] = {
    # 8x8 digits: 16 patches of 2x2, 4 visible. MAE's ViT-B (768 wide, 12 blocks) with its
    # 512-wide, 8-block decoder, scaled to a 64-wide, 4-block encoder and a decoder of half
    # its width and depth (~0.2M parameters: a few ms per step on a CPU core).
    "digits": MAESpec(
        image_size=8,
        patch_size=2,
        in_chans=1,
        embed_dim=64,
        depth=4,
        num_heads=4,
        decoder_dim=32,
        decoder_depth=2,
        decoder_heads=4,
    ),
    # ViT-S/16 (timm vit_small_patch16_224's encoder: 384 wide, 12 blocks, 6 heads) with a
    # 256-wide, 4-block decoder; normalised-pixel targets as in MAE's ImageNet recipe.
    "vit_small_patch16": MAESpec(
        image_size=224,
        patch_size=16,
        in_chans=3,
        embed_dim=384,
        depth=12,
        num_heads=6,
        decoder_dim=256,
        decoder_depth=4,
        decoder_heads=8,
        norm_pix_loss=True,
    ),
}


def _sincos_table(spec: MAESpec, dim: int) -> Any:
    """Fixed position embeddings ``(1, 1 + L, dim)``: a zero row for the class token, then
    timm's 2-D sine-cosine embedding of the patch grid (row-major, as PatchEmbed flattens)."""
    import torch
    from timm.layers import build_sincos2d_pos_embed

    table = build_sincos2d_pos_embed([spec.grid, spec.grid], dim=dim)
    return torch.cat([torch.zeros(1, dim), table], dim=0).unsqueeze(0)


def build_mae(spec: MAESpec) -> Any:
    """A :class:`MaskedAutoencoder` module with MAE's initialisation (from torch's global RNG,
    so ``torch.manual_seed(seed)`` before the call fixes it)."""
    return _module_class()(spec)


_MODULE: Any = None


def _module_class() -> Any:
    """The nn.Module class, defined on first use so that importing this module needs no torch."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    import torch
    from timm.models.vision_transformer import Block, PatchEmbed
    from torch import nn

    class MaskedAutoencoder(nn.Module):
        """MAE: ViT encoder on visible patches, light decoder, loss on masked patches."""

        pos_embed: torch.Tensor  # fixed sine-cosine tables: buffers, not parameters
        decoder_pos_embed: torch.Tensor

        def __init__(self, spec: MAESpec) -> None:
            super().__init__()
            self.spec = spec
            norm = nn.LayerNorm
            self.patch_embed = PatchEmbed(
                spec.image_size, spec.patch_size, spec.in_chans, spec.embed_dim
            )
            self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.embed_dim))
            # fixed (not learned) position embeddings, as MAE: buffers, so they are in the
            # state dict (and the initial-weights digest) but not in the optimiser
            self.register_buffer("pos_embed", _sincos_table(spec, spec.embed_dim))
            self.blocks = nn.ModuleList(
                Block(spec.embed_dim, spec.num_heads, spec.mlp_ratio, qkv_bias=True)
                for _ in range(spec.depth)
            )
            self.norm = norm(spec.embed_dim, eps=1e-6)
            self.decoder_embed = nn.Linear(spec.embed_dim, spec.decoder_dim)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, spec.decoder_dim))
            self.register_buffer("decoder_pos_embed", _sincos_table(spec, spec.decoder_dim))
            self.decoder_blocks = nn.ModuleList(
                Block(spec.decoder_dim, spec.decoder_heads, spec.mlp_ratio, qkv_bias=True)
                for _ in range(spec.decoder_depth)
            )
            self.decoder_norm = norm(spec.decoder_dim, eps=1e-6)
            patch_pixels = spec.patch_size**2 * spec.in_chans
            self.decoder_pred = nn.Linear(spec.decoder_dim, patch_pixels)
            self._initialise()

        def _initialise(self) -> None:
            # MAE's initialisation: the patch projection like a Linear (xavier on its flattened
            # weight), tokens N(0, 0.02), Linear xavier-uniform with zero bias, LayerNorm 1 / 0.
            weight = self.patch_embed.proj.weight.data
            nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
            nn.init.normal_(self.cls_token, std=0.02)
            nn.init.normal_(self.mask_token, std=0.02)
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)

        def patchify(self, images: torch.Tensor) -> torch.Tensor:
            """(B, C, H, W) -> (B, L, p*p*C), patches row-major, pixels (p, p, C)-ordered."""
            p, g, c = self.spec.patch_size, self.spec.grid, self.spec.in_chans
            x = images.reshape(images.shape[0], c, g, p, g, p)
            return torch.einsum("nchpwq->nhwpqc", x).reshape(images.shape[0], g * g, p * p * c)

        def forward_encoder(self, images: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
            """Encoded tokens ``(B, 1 + K, D)`` (class token first) of the patches ``keep``
            (``(B, K)`` patch indices), or of every patch when ``keep`` is None."""
            x = self.patch_embed(images) + self.pos_embed[:, 1:, :]
            if keep is not None:
                x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
            x = torch.cat([cls, x], dim=1)
            for block in self.blocks:
                x = block(x)
            return self.norm(x)

        def forward_decoder(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
            """Predicted pixels of every patch ``(B, L, p*p*C)`` from the visible tokens."""
            x = self.decoder_embed(latent)
            n_masked = restore.shape[1] + 1 - x.shape[1]
            masks = self.mask_token.expand(x.shape[0], n_masked, -1)
            patches = torch.cat([x[:, 1:, :], masks], dim=1)  # visible first, then masked
            patches = torch.gather(
                patches, 1, restore.unsqueeze(-1).expand(-1, -1, x.shape[-1])
            )  # back to the image's patch order
            x = torch.cat([x[:, :1, :], patches], dim=1) + self.decoder_pos_embed
            for block in self.decoder_blocks:
                x = block(x)
            return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

        def forward(
            self, images: torch.Tensor, generator: torch.Generator | None = None
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """(loss, predictions ``(B, L, p*p*C)``, mask ``(B, L)`` with 1 = masked)."""
            keep, restore, mask = random_masking(
                images.shape[0], self.spec, generator, device=images.device
            )
            latent = self.forward_encoder(images, keep)
            prediction = self.forward_decoder(latent, restore)
            target = self.patchify(images)
            if self.spec.norm_pix_loss:
                mean = target.mean(dim=-1, keepdim=True)
                var = target.var(dim=-1, keepdim=True)
                target = (target - mean) / (var + 1e-6) ** 0.5
            per_patch = ((prediction - target) ** 2).mean(dim=-1)
            loss = (per_patch * mask).sum() / mask.sum()  # masked patches only
            return loss, prediction, mask

        def features(self, images: torch.Tensor) -> torch.Tensor:
            """Frozen-encoder features ``(B, D)``: every patch, no masking, patch tokens
            mean-pooled after the final norm (the class token left out)."""
            return self.forward_encoder(images, None)[:, 1:, :].mean(dim=1)

    _MODULE = MaskedAutoencoder
    return _MODULE


def random_masking(
    batch: int, spec: MAESpec, generator: Any = None, *, device: Any = None
) -> tuple[Any, Any, Any]:
    """MAE's per-sample random masking.

    Parameters
    ----------
    batch : int
    spec : MAESpec
    generator : torch.Generator, optional
        A CPU generator; the noise is drawn on the CPU and moved to ``device``, so the masks
        depend on the generator's state only (not on the device).

    Returns
    -------
    keep : LongTensor (batch, n_visible)
        Indices of the visible patches, in ascending noise order.
    restore : LongTensor (batch, L)
        The permutation that puts ``[visible, masked]`` back in patch order.
    mask : FloatTensor (batch, L)
        1 for a masked patch, 0 for a visible one, in patch order.
    """
    import torch

    noise = torch.rand(batch, spec.n_patches, generator=generator)
    shuffle = torch.argsort(noise, dim=1)
    restore = torch.argsort(shuffle, dim=1)
    keep = shuffle[:, : spec.n_visible]
    mask = torch.ones(batch, spec.n_patches)
    mask[:, : spec.n_visible] = 0
    mask = torch.gather(mask, 1, restore)
    return keep.to(device), restore.to(device), mask.to(device)


def mae_digits_task(device: str = "cpu", spec: MAESpec | None = None) -> ABTask:
    """scikit-learn's digits (8x8, standardised with the dataset's pixel mean and std, row ``i`` =
    ``load_digits()`` row ``i``) and a masked autoencoder of :data:`MAE_SPECS` ``["digits"]`` (or ``spec``)."""
    import torch
    from sklearn.datasets import load_digits

    spec = spec or MAE_SPECS["digits"]
    digits = load_digits()
    pixels = digits.images / 16.0
    # standardised with the dataset's pixel mean and std, as MAE's inputs are ImageNet-normalised
    # (in [0, 1] the reconstruction loss starts on a plateau the short run barely leaves)
    pixels = (pixels - pixels.mean()) / pixels.std()
    images = torch.tensor(pixels, dtype=torch.float32).unsqueeze(1)
    return ABTask(
        name="digits-mae",
        inputs=images,
        labels=digits.target.astype(np.int64),
        build_model=lambda: build_mae(spec),
        identity={
            "task": "digits-mae",
            "n": len(images),
            "inputs": "standardised",
            "mae": spec.to_json(),
        },
        device=device,
        description=f"sklearn digits (1,797 8x8 images), MAE ViT {spec.embed_dim}x{spec.depth}",
        objective="mae",
    )


def mae_image_task(
    folder: str,
    *,
    spec: MAESpec | None = None,
    image_size: int | None = None,
    device: str | None = None,
    num_workers: int = 2,
) -> ABTask:
    """An image folder (the pipeline's ``imagefolder:PATH``, same row order) and a masked
    autoencoder of :data:`MAE_SPECS` ``["vit_small_patch16"]`` (or ``spec``) trained from random
    initialisation, ImageNet-normalised centre crops at ``image_size`` (default the spec's).
    GPU when present."""
    import torch

    from cl_core.embed import resolve_dataset

    spec = spec or MAE_SPECS["vit_small_patch16"]
    if image_size is not None:
        spec = dataclasses.replace(spec, image_size=int(image_size))
    location = folder.removeprefix("imagefolder:")
    dataset_spec = resolve_dataset(f"imagefolder:{location}", image_size=spec.image_size)
    dataset = dataset_spec.dataset
    labels = np.asarray(dataset.targets, dtype=np.int64)
    return ABTask(
        name=f"mae:{spec.embed_dim}x{spec.depth}/{spec.patch_size}",
        inputs=dataset,
        labels=labels,
        build_model=lambda: build_mae(spec),
        identity={
            "task": "image-mae",
            "folder": dataset_spec.description,
            "n": len(labels),
            "mae": spec.to_json(),
        },
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
        num_workers=num_workers,
        description=f"MAE ViT {spec.embed_dim}x{spec.depth}/{spec.patch_size} on "
        f"{dataset_spec.description}",
        objective="mae",
    )
