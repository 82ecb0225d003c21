"""The vocabulary: a finite set of patch tokens, saved as tensors plus JSON-able metadata."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..io import load_torch, save_torch, sha256_tensor
from ..tokens import MODES, check_finite, patch_dim


@dataclass
class Vocabulary:
    """Tokens (float64; K x d, or C x K x d for ``per_channel_separate``) and how they tile images."""

    tokens: torch.Tensor
    patch_size: int
    mode: str
    channels: int
    image_size: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"token mode must be one of {MODES}, got {self.mode!r}")
        self.tokens = self.tokens.detach().to(torch.float64)
        expected_ndim = 3 if self.mode == "per_channel_separate" else 2
        if self.tokens.ndim != expected_ndim:
            raise ValueError(f"{self.mode} tokens must have {expected_ndim} dimensions, got {tuple(self.tokens.shape)}")
        if self.mode == "per_channel_separate" and self.tokens.shape[0] != self.channels:
            raise ValueError(f"{self.tokens.shape[0]} token tables for {self.channels} channels")
        d = patch_dim(self.mode, self.channels, self.patch_size)
        if self.tokens.shape[-1] != d:
            raise ValueError(
                f"tokens of dimension {self.tokens.shape[-1]}, but {self.mode} {self.patch_size}x{self.patch_size} "
                f"patches of {self.channels} channel(s) have dimension {d}"
            )
        if self.K < 2:
            raise ValueError(f"a vocabulary needs K >= 2 tokens, got {self.K}")
        if self.image_size % self.patch_size:
            raise ValueError(f"patch size {self.patch_size} does not divide the image size {self.image_size}")
        check_finite("tokens", self.tokens)

    @property
    def K(self) -> int:  # noqa: N802 (the method's symbol)
        """Number of tokens (per channel for ``per_channel_separate``)."""
        return int(self.tokens.shape[-2])

    @property
    def dim(self) -> int:
        """Dimension ``d`` of a token."""
        return int(self.tokens.shape[-1])

    @property
    def name(self) -> str:
        """The vocabulary's name in params (``meta["name"]``), or ``"?"``."""
        return str(self.meta.get("name", "?"))

    @property
    def groups(self) -> int:
        """Number of token tables: one per channel for ``per_channel_separate``, else one."""
        return self.channels if self.mode == "per_channel_separate" else 1

    def tables(self, per_channel: bool = False) -> list[torch.Tensor]:
        """The K x d token tables in patch order (float64, on the tokens' device).

        One per token group (:attr:`groups`), or with ``per_channel`` one per channel for the
        per-channel modes (the shared table repeated for ``per_channel``), one for ``joint``:
        the split of a patch sequence by channel that certificates need (each channel has its
        own unit scale).
        """
        if self.mode == "per_channel_separate":
            return list(self.tokens)
        return [self.tokens] * (self.channels if per_channel and self.mode == "per_channel" else 1)

    def group_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """N x P x d patches of this vocabulary's mode as N x G x (P/G) x d, one slice per token table."""
        n, p_count, d = patches.shape
        return patches.reshape(n, self.groups, p_count // self.groups, d)

    def check_compatible(self, channels: int, image_size: int | tuple[int, int]) -> None:
        """Raise ``ValueError`` when these tokens cannot tokenize images of this shape."""
        size = image_size if isinstance(image_size, int) else tuple(image_size)
        if channels != self.channels or size not in (self.image_size, (self.image_size, self.image_size)):
            raise ValueError(
                f"vocabulary '{self.name}' is for {self.channels}x{self.image_size}x{self.image_size} images, "
                f"got {channels} channel(s) of size {size}"
            )

    def sha256(self) -> str:
        """Checksum of the token values (identifies the vocabulary a classifier was trained with)."""
        return sha256_tensor(self.tokens)

    def to_dict(self) -> dict[str, Any]:
        """Tensors plus plain data, loadable with ``weights_only=True``."""
        return {
            "tokens": self.tokens.cpu(),
            "meta": {**self.meta, "patch_size": self.patch_size, "mode": self.mode,
                     "channels": self.channels, "image_size": self.image_size, "K": self.K},
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary atomically."""
        save_torch(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a vocabulary written by :meth:`save` (no unpickling of code)."""
        obj = load_torch(path)
        try:
            meta = dict(obj["meta"])
            return cls(
                tokens=obj["tokens"],
                patch_size=int(meta.pop("patch_size")),
                mode=str(meta.pop("mode")),
                channels=int(meta.pop("channels")),
                image_size=int(meta.pop("image_size")),
                meta={k: v for k, v in meta.items() if k != "K"},
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a vocabulary file ({exc})") from exc
