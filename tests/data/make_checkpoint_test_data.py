#!/usr/bin/python3
"""Generates the small checkpoint files that tests/core/tensor_file_test.cc and checkpoint_test.cc read.

Run with Debian's python3-torch (torch 1.13):  /usr/bin/python3 tests/data/make_checkpoint_test_data.py
Writes tests/data/checkpoint/*. Every `X.pt` / `X.jit` comes with `X.ref.safetensors`: the tensors that
torch.load / named_parameters()+named_buffers() give in Python, under the flattened names the C++ reader must
produce, written by the tiny independent safetensors writer below (so C++ compares against Python, not itself).
Deterministic (fixed seeds); re-running gives identical tensors.
"""
import collections
import json
import os
import struct

import torch
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint")
DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int8: "I8", torch.uint8: "U8", torch.int16: "I16", torch.int32: "I32", torch.int64: "I64",
          torch.bool: "BOOL"}


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def flatten(obj, prefix=""):
    """The names the C++ reader gives: dict keys / list indices joined by dots; non-tensors skipped."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.GroupNorm(1, 4)
        self.register_buffer("scale", torch.linspace(0.5, 2.0, 4))

    def forward(self, x):
        return self.norm(self.conv(x)) * self.scale.view(1, -1, 1, 1)


class Net(nn.Module):
    """The layout the C++ tests rebuild with torch::nn (names and shapes must agree)."""

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = nn.Sequential(nn.Linear(4, 5), nn.SiLU(), nn.Linear(5, 2))

    def forward(self, x):
        return self.decoder(self.encoder(x).mean(dim=(2, 3)))


class CosmosLikeModel(nn.Module):
    """Mimics cosmos_predict1 TokenizerModel.state_dict(): `network.*` weights plus EMAModelTracker buffers
    `ema.network-<name with '-' for '.'>` (cosmos_predict1/utils/ema.py)."""

    def __init__(self):
        super().__init__()
        self.network = Net()
        self.ema = nn.Module()
        for name, p in self.network.named_parameters():
            self.ema.register_buffer(("network." + name).replace(".", "-"), p.detach() * 0.5 + 1.0)


def save(name, obj, ref=None, **kw):
    torch.save(obj, os.path.join(OUT, name), **kw)
    if ref is not None:
        write_safetensors(os.path.join(OUT, name.rsplit(".", 1)[0] + ".ref.safetensors"), ref)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    net = Net().eval()

    # 1. a plain state dict (OrderedDict with _metadata), and the same saved as a whole module
    sd = net.state_dict()
    save("state_dict.pt", sd, ref=dict(sd))
    save("module.pt", net)  # torch.save(model): names come from _parameters/_buffers/_modules

    # 2. nesting, views, shared storage, every dtype, non-tensor leaves
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    nested = {
        "model": {"layer": {"weight": torch.randn(2, 3), "bias": torch.zeros(2)}},
        "optimizer": {"state": {0: {"exp_avg": torch.ones(2, 3), "step": 7}},
                      "param_groups": [{"lr": 0.1, "params": [0]}]},
        "iteration": 1000, "config": "cosmos", "ratio": 0.5, "flag": True, "nothing": None,
        "mean_std": (torch.full((16,), 0.25), torch.full((16,), 2.0)),
        "views": {"base": base, "row": base[1], "col": base[:, 1], "t": base.t(), "slice": base[1:, 2:]},
        "param": nn.Parameter(torch.tensor([1.5, -2.5])),
        "dtypes": {"f64": torch.randn(3, dtype=torch.float64), "f16": torch.randn(3).half(),
                   "bf16": torch.randn(3).bfloat16(), "i8": torch.tensor([-3, 4], dtype=torch.int8),
                   "u8": torch.tensor([200, 7], dtype=torch.uint8), "i16": torch.tensor([-300], dtype=torch.int16),
                   "i32": torch.tensor([1 << 20, -5], dtype=torch.int32),
                   "i64": torch.tensor([1 << 40], dtype=torch.int64), "bool": torch.tensor([True, False])},
        "empty": torch.zeros(0, 3), "scalar": torch.tensor(3.5),
    }
    save("nested.pt", nested, ref=flatten(nested))
    # complex values are not storable in safetensors: c64 = arange(4) - 1j * arange(4), checked by formula.
    save("complex.pt", {"c64": torch.complex(torch.arange(4.0), -torch.arange(4.0))})

    # protocol 4 (FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE), as large-checkpoint writers use
    p4 = {"model": nested["model"], "views": nested["views"], "dtypes": nested["dtypes"], "note": "p4"}
    save("protocol4.pt", p4, ref=flatten(p4), pickle_protocol=4)

    # 3. the legacy (pre-1.6) format
    legacy = {"w": torch.randn(3, 2), "bf16": torch.randn(4).bfloat16(), "view": base[2], "n": 3}
    save("legacy.pt", legacy, ref=flatten(legacy), _use_new_zipfile_serialization=False)

    # 4. a Cosmos-style model.pt (network. prefix + EMA buffers)
    cosmos = CosmosLikeModel()
    save("cosmos_model.pt", cosmos.state_dict())
    write_safetensors(os.path.join(OUT, "cosmos_model.raw.ref.safetensors"), cosmos.network.state_dict())
    write_safetensors(os.path.join(OUT, "cosmos_model.ema.ref.safetensors"),
                      {**cosmos.network.state_dict(),
                       **{n: p.detach() * 0.5 + 1.0 for n, p in cosmos.network.named_parameters()}})

    # 5. TorchScript: traced bf16 (like the published encoder.jit / decoder.jit) and scripted f32
    x = torch.randn(1, 3, 6, 6)
    traced = torch.jit.trace(Net().eval().to(torch.bfloat16), x.to(torch.bfloat16))
    traced.save(os.path.join(OUT, "traced_bf16.jit"))
    write_safetensors(os.path.join(OUT, "traced_bf16.ref.safetensors"),
                      {**dict(traced.named_parameters()), **dict(traced.named_buffers())})
    scripted = torch.jit.script(Net().eval())
    scripted.save(os.path.join(OUT, "scripted.jit"))
    write_safetensors(os.path.join(OUT, "scripted.ref.safetensors"),
                      {**dict(scripted.named_parameters()), **dict(scripted.named_buffers())})

    # 6. Hugging Face sharded checkpoints (safetensors shards and .bin shards)
    sd = Net().state_dict()
    names = list(sd)
    half = {n: sd[n] for n in names[: len(names) // 2]}, {n: sd[n] for n in names[len(names) // 2:]}
    for kind, ext, writer in (("st", "safetensors", write_safetensors),
                              ("bin", "bin", lambda p, t: torch.save(collections.OrderedDict(t), p))):
        d = os.path.join(OUT, f"sharded_{kind}")
        os.makedirs(d, exist_ok=True)
        stem = "model" if kind == "st" else "pytorch_model"
        weight_map = {}
        for i, part in enumerate(half):
            shard = f"{stem}-{i + 1:05d}-of-00002.{ext}"
            writer(os.path.join(d, shard), part)
            weight_map.update({n: shard for n in part})
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in sd.values())},
                 "weight_map": weight_map}
        with open(os.path.join(d, f"{stem}.{ext}.index.json"), "w") as f:
            json.dump(index, f, indent=2)
    write_safetensors(os.path.join(OUT, "sharded.ref.safetensors"), sd)


if __name__ == "__main__":
    main()
