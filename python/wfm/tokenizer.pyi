"""Type stubs of wfm.tokenizer (the native extension). Kept in sync by python/tests/test_stubs.py."""
import os
from typing import Any, Mapping, Optional, Union

import torch

_Path = Union[str, bytes, os.PathLike]
_Config = Union[str, os.PathLike, Mapping[str, Any]]

class ClipGeometry:
    frames: int
    height: int
    width: int
    mode: str
    temporal_window: int
    image_frames: bool
    known: bool
    def __init__(self, *, frames: int = -1, height: int = -1, width: int = -1, mode: str = "streaming",
                 temporal_window: int = 17, image_frames: bool = False) -> None: ...
    def to_metadata(self) -> dict[str, str]: ...
    @staticmethod
    def from_metadata(metadata: Mapping[str, str]) -> "ClipGeometry": ...

class EncodeResult:
    latent: torch.Tensor
    indices: Optional[torch.Tensor]
    geometry: ClipGeometry

class EncodeStream:
    frames_in: int
    state_bytes: int
    def push(self, frames: torch.Tensor) -> EncodeResult: ...
    def finish(self) -> EncodeResult: ...

class DecodeStream:
    frames_out: int
    state_bytes: int
    def push(self, latent: torch.Tensor) -> torch.Tensor: ...
    def set_max_frames(self, frames: int) -> None: ...

class Tokenizer:
    config: dict[str, Any]
    name: str
    is_video: bool
    is_discrete: bool
    temporal_compression: int
    spatial_compression: int
    latent_channels: int
    codebook_size: int
    device: torch.device
    dtype: torch.dtype
    is_torchscript: bool
    training: bool
    @staticmethod
    def from_files(config: _Config, weights: _Path, *, device: str = "cpu", dtype: str = "auto", part: str = "all",
                   ema: bool = False, backend: str = "native") -> "Tokenizer": ...
    @staticmethod
    def from_state_dict(config: _Config, state_dict: Mapping[str, torch.Tensor], *, device: str = "cpu",
                        dtype: str = "auto") -> "Tokenizer": ...
    @staticmethod
    def random(config: _Config, *, seed: int = 0, device: str = "cpu", dtype: str = "auto") -> "Tokenizer": ...
    def describe(self) -> str: ...
    def encode(self, x: torch.Tensor, *, mode: str = "streaming", chunk_frames: int = 16, attention_window: int = 0,
               temporal_window: int = 17, tile: int = 0, tile_overlap: int = -1) -> EncodeResult: ...
    def decode(self, latent: torch.Tensor, geometry: Optional[ClipGeometry] = None, *, mode: str = "streaming",
               chunk_frames: int = 16, attention_window: int = 0, temporal_window: int = 17, tile: int = 0,
               tile_overlap: int = -1) -> torch.Tensor: ...
    def reconstruct(self, x: torch.Tensor, *, mode: str = "streaming", chunk_frames: int = 16,
                    attention_window: int = 0, temporal_window: int = 17, tile: int = 0,
                    tile_overlap: int = -1) -> torch.Tensor: ...
    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor: ...
    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor: ...
    def start_encode(self, *, mode: str = "streaming", chunk_frames: int = 16, attention_window: int = 0,
                     temporal_window: int = 17, tile: int = 0, tile_overlap: int = -1) -> EncodeStream: ...
    def start_decode(self, geometry: Optional[ClipGeometry] = None, *, mode: str = "streaming", chunk_frames: int = 16,
                     attention_window: int = 0, temporal_window: int = 17, tile: int = 0,
                     tile_overlap: int = -1) -> DecodeStream: ...
    def state_dict(self) -> dict[str, torch.Tensor]: ...
    def parameters(self) -> list[torch.Tensor]: ...
    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> str: ...
    def train(self, mode: bool = True) -> "Tokenizer": ...
    def eval(self) -> "Tokenizer": ...
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]: ...
    def save(self, path: _Path) -> None: ...

def preset_names() -> list[str]: ...
def config(config: _Config) -> dict[str, Any]: ...
def reconstruction_loss(x: torch.Tensor, rec: torch.Tensor, *, l1: float = 1.0, ssim: float = 0.2,
                        temporal: float = 0.5, kl: float = 1e-6, mean: Optional[torch.Tensor] = None,
                        logvar: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...
def train(config: _Config, inputs: list[str], output_dir: _Path, *, steps: int = 1000, batch_size: int = 4,
          num_frames: int = 17, width: int = 256, height: int = 256, resize_short_side: int = 0, fps: float = 0.0,
          lr: float = 1e-3, warmup_steps: int = 100, schedule: str = "cosine", ema_decay: float = 0.999,
          init_weights: str = "", val_clips: int = 8, log_every: int = 10, eval_every: int = 250,
          sample_every: int = 250, checkpoint_every: int = 500, max_time_s: float = 0.0, seed: int = 0,
          device: str = "auto", precision: str = "auto", resume: bool = True, quiet: bool = False,
          adversarial: float = 0.0) -> dict[str, Any]: ...
