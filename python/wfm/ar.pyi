"""Type stubs of wfm.ar (the native extension). Kept in sync by python/tests/test_stubs.py."""
import os
from typing import Any, Callable, Mapping, Optional, Union

import torch

_Path = Union[str, bytes, os.PathLike]
_Config = Union[str, os.PathLike, Mapping[str, Any]]

def preset_names() -> list[str]: ...
def config(config: _Config) -> dict[str, Any]: ...

class ArModel:
    config: dict[str, Any]
    num_parameters: int
    vocab_size: int
    latent_shape: list[int]
    has_cross_attention: bool
    training: bool
    def __init__(self, config: _Config, weights: Optional[_Path] = None, *, seed: int = 0, device: str = "cpu",
                 dtype: str = "float32", allow_missing: bool = False, allow_unexpected: bool = False) -> None: ...
    def forward(self, tokens: torch.Tensor, start: int = 0, *, context: Optional[torch.Tensor] = None,
                context_mask: Optional[torch.Tensor] = None, last_only: bool = False) -> torch.Tensor: ...
    def loss(self, tokens: torch.Tensor, *, context: Optional[torch.Tensor] = None,
             context_mask: Optional[torch.Tensor] = None, condition_frames: int = 1, z_loss: float = 1e-4,
             text_dropout: float = 0.0, seed: int = 0) -> dict[str, Any]: ...
    def generate_tokens(self, prompt: torch.Tensor, total_frames: int, *, context: Optional[torch.Tensor] = None,
                        context_mask: Optional[torch.Tensor] = None, seed: int = 0, num_samples: int = 1,
                        temperature: float = 1.0, top_k: int = 0, top_p: float = 0.8, guidance: float = 1.0,
                        window_context_frames: int = 0,
                        on_frame: Optional[Callable[[int, torch.Tensor], Any]] = None,
                        progress: bool = False) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, torch.Tensor]: ...
    def parameters(self) -> list[torch.Tensor]: ...
    def train(self, mode: bool = True) -> "ArModel": ...
    def eval(self) -> "ArModel": ...
    def save(self, path: _Path) -> None: ...

class TokenCodec:
    vocab_size: int
    temporal_compression: int
    spatial_compression: int
    def encode(self, video: torch.Tensor) -> torch.Tensor: ...
    def decode(self, indices: torch.Tensor) -> torch.Tensor: ...

def load_tokenizer_codec(config: Union[str, os.PathLike], weights: Optional[_Path] = None, *,
                         device: str = "cpu") -> TokenCodec: ...
def generate(model: ArModel, codec: TokenCodec, frames: Optional[torch.Tensor] = None, *, num_input_frames: int = 9,
             num_frames: int = 33, context: Optional[torch.Tensor] = None, context_mask: Optional[torch.Tensor] = None,
             seed: int = 0, num_samples: int = 1, temperature: float = 1.0, top_k: int = 0, top_p: float = 0.8,
             guidance: float = 1.0, window_context_frames: int = 0,
             on_frames: Optional[Callable[[torch.Tensor], Any]] = None, progress: bool = False) -> dict[str, Any]: ...
def tokenize_video(codec: TokenCodec, path: _Path, *, clip_frames: int = 33, height: int = 640, width: int = 1024,
                   fps: float = 0.0, max_clips: int = 0) -> list[torch.Tensor]: ...
def moving_bar_tokens(batch: int, frames: int, height: int, width: int, vocab: int, seed: int = 0) -> torch.Tensor: ...

# progress(done, total, info): info = {"label", "unit", "status", "finished"}; raising stops training (checkpointed).
def train(*, progress: Optional[Callable[[int, int, dict[str, Any]], Any]] = None, **options: Any) -> dict[str, Any]:
    """`wfm ar train` in process; options = the CLI flags with '_' for '-' (config, output, one data source of
    synthetic / tokens / videos / shards, steps, ...). shards: curated webdataset shards (*.tar or folders; a path
    or a list), extracted once to output/shard_videos and tokenized on the fly."""
