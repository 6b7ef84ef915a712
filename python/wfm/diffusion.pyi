"""Type stubs of wfm.diffusion (the native extension). Kept in sync by python/tests/test_stubs.py."""
import os
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch

from .tokenizer import Tokenizer

_Path = Union[str, bytes, os.PathLike]
_Config = Union[str, os.PathLike, Mapping[str, Any]]
_StepCallback = Optional[Callable[[int, int, float, float], Any]]

def preset_names() -> list[str]: ...
def config(config: _Config) -> dict[str, Any]: ...
def latent_frames_for(pixel_frames: int, temporal_compression: int) -> int: ...
def pixel_frames_for(latent_frames: int, temporal_compression: int) -> int: ...

class DiffusionModel:
    config: dict[str, Any]
    latent_channels: int
    video_conditioned: bool
    parametrization: str
    sigma_data: float
    device: torch.device
    training: bool
    def __init__(self, config: _Config, weights: Optional[_Path] = None, *, seed: int = 0, device: str = "cpu",
                 dtype: str = "float32", ema: bool = False) -> None: ...
    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, crossattn_emb: torch.Tensor, *, fps: float = 24.0,
                padding_mask: Optional[torch.Tensor] = None,
                condition_video_input_mask: Optional[torch.Tensor] = None,
                condition_video_augment_sigma: Optional[torch.Tensor] = None) -> torch.Tensor: ...
    def generate(self, latent_shape: Sequence[int], *, crossattn_emb: Optional[torch.Tensor] = None,
                 negative_crossattn_emb: Optional[torch.Tensor] = None, condition_latent: Optional[torch.Tensor] = None,
                 num_condition_frames: int = 0, num_steps: int = 35, sampler: str = "res", guidance: float = 7.0,
                 seed: int = 0, num_samples: int = 1, fps: float = 24.0, s_churn: float = 0.0,
                 callback: _StepCallback = None) -> torch.Tensor: ...
    def generate_long(self, total_frames: int, clip_frames: int, overlap: int, latent_chw: Sequence[int], *,
                      crossattn_emb: Optional[torch.Tensor] = None,
                      negative_crossattn_emb: Optional[torch.Tensor] = None,
                      condition_latent: Optional[torch.Tensor] = None, num_condition_frames: int = 0,
                      num_steps: int = 35, sampler: str = "res", guidance: float = 7.0, seed: int = 0,
                      num_samples: int = 1, fps: float = 24.0, s_churn: float = 0.0,
                      callback: _StepCallback = None) -> torch.Tensor: ...
    def loss(self, x0: torch.Tensor, crossattn_emb: torch.Tensor, *, fps: float = 24.0, seed: int = 0,
             text_dropout: float = 0.2, condition_dropout: float = 0.3, min_condition_frames: int = 1,
             max_condition_frames: int = 2) -> dict[str, Any]: ...
    def evaluation_loss(self, x0: torch.Tensor, crossattn_emb: torch.Tensor, *, fps: float = 24.0, seed: int = 0,
                        levels: int = 8) -> float: ...
    def save(self, path: _Path) -> None: ...
    def state_dict(self) -> dict[str, torch.Tensor]: ...
    def parameters(self) -> list[torch.Tensor]: ...
    def train(self, mode: bool = True) -> "DiffusionModel": ...
    def eval(self) -> "DiffusionModel": ...

def synthetic_batch(first_index: int, batch_size: int, seed: int = 0, *, channels: int = 16, frames: int = 4,
                    height: int = 8, width: int = 8, text_tokens: int = 4, text_dim: int = 32,
                    sigma_data: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]: ...

class LatentFolder:
    latent_shape: list[int]
    def __init__(self, dir: _Path) -> None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @staticmethod
    def write(path: _Path, latent: torch.Tensor, crossattn_emb: Optional[torch.Tensor] = None,
              caption: str = "") -> None: ...

def video2world(model: DiffusionModel, tokenizer: Tokenizer, frames: Optional[torch.Tensor] = None, *,
                num_input_frames: int = 9, num_frames: int = 121, height: int = 0, width: int = 0,
                crossattn_emb: Optional[torch.Tensor] = None, negative_crossattn_emb: Optional[torch.Tensor] = None,
                latent_stats: Optional[_Path] = None, clip_frames: int = 0, overlap_frames: int = 9,
                num_steps: int = 35, sampler: str = "res", guidance: float = 7.0, seed: int = 0,
                num_samples: int = 1, fps: float = 24.0, s_churn: float = 0.0,
                callback: _StepCallback = None) -> torch.Tensor: ...

# progress(done, total, info): info = {"label", "unit", "status", "finished"}; raising stops training (checkpointed).
def train(*, progress: Optional[Callable[[int, int, dict[str, Any]], Any]] = None, **options: Any) -> dict[str, Any]:
    """`wfm diffusion train` in process; options = the CLI flags with '_' for '-' (config, output, synthetic, ...)."""
