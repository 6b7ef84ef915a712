"""wfm.curation.ShardDataset: a torch IterableDataset over webdataset shards (the native ShardReader), split
across DataLoader workers and distributed ranks. Yields (key, video uint8 [T, H, W, 3] or None, metadata dict)."""
import os
import tempfile

import torch
import torch.utils.data


class ShardDataset(torch.utils.data.IterableDataset):
    """Samples of the shards under ``paths`` as ``(key, video, metadata)``.

    video: KEY.<video_ext> decoded to uint8 [T, H, W, 3] (``width``/``height`` resize; 0 keeps the size), or None
    when the sample has no video or ``decode=False``. metadata: KEY.json as a dict (empty when absent), with the
    caption of KEY.txt under "caption" when present, the tensors of KEY.latent.safetensors (`wfm curate --latents`:
    "latent" [C, t, h, w] or "indices" [t, h, w]) under "latents" when present and ``latents`` is true, and the
    shard path under "__shard__".
    Shards are divided among ``world_size`` ranks (default: torch.distributed when initialised) and, inside a
    rank, among the DataLoader's workers: every sample is read by exactly one worker (a worker with no shard
    yields nothing). ``shuffle_seed`` != 0 shuffles the shard order (per epoch); ``epochs`` <= 0 repeats forever.
    ``transform`` maps each (key, video, metadata) tuple before it is yielded.
    """

    def __init__(self, paths, *, width=0, height=0, decode=True, video_ext="mp4", meta_ext="json", rank=None,
                 world_size=None, shuffle_seed=0, epochs=1, latents=True, transform=None):
        super().__init__()
        self.paths = [paths] if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__") else list(paths)
        self.width, self.height, self.decode = width, height, decode
        self.video_ext, self.meta_ext = video_ext, meta_ext
        self.rank, self.world_size = rank, world_size
        self.shuffle_seed, self.epochs, self.transform = shuffle_seed, epochs, transform
        self.latents = latents

    def _split(self):
        rank, world = self.rank, self.world_size
        if world is None:
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                rank, world = dist.get_rank(), dist.get_world_size()
            else:
                rank, world = 0, 1
        rank = rank or 0
        info = torch.utils.data.get_worker_info()
        if info is not None:
            rank, world = rank * info.num_workers + info.id, world * info.num_workers
        return rank, world

    def __iter__(self):
        from . import _wfm  # noqa: PLC0415

        rank, world = self._split()
        reader = _wfm.curation.ShardReader(self.paths, rank=rank, world_size=world, shuffle_seed=self.shuffle_seed,
                                           epochs=self.epochs)
        for sample in reader:
            video = None
            if self.decode and sample.has(self.video_ext):
                video = sample.decode_video(width=self.width, height=self.height, ext=self.video_ext)
            meta = sample.json(self.meta_ext) if sample.has(self.meta_ext) else {}
            if not isinstance(meta, dict):
                meta = {"json": meta}
            if sample.has("txt"):
                meta.setdefault("caption", sample.text())
            if self.latents and sample.has("latent.safetensors"):
                meta["latents"] = _read_safetensors_bytes(sample.get("latent.safetensors"), sample.key)
            meta["__shard__"] = sample.shard
            item = (sample.key, video, meta)
            yield self.transform(item) if self.transform is not None else item


def _read_safetensors_bytes(data, name):
    """Tensors of a safetensors file held in memory (through a temporary file that the mapping outlives)."""
    from . import _wfm  # noqa: PLC0415

    fd, path = tempfile.mkstemp(prefix=f"wfm_{name}_", suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return _wfm.core.read_safetensors(path)
    finally:
        os.unlink(path)
