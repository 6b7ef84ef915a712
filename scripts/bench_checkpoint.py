#!/usr/bin/python3
"""Side-by-side checkpoint read/load timings: wfm (C++ reader via the Python bindings) vs Python torch.

  PYTHONPATH=build/python /usr/bin/python3 scripts/bench_checkpoint.py [--mb 420] [--dir /tmp] [--repeat 3]

Builds a state dict shaped like a full Cosmos CV8x8x8 tokenizer (conv weights, ~105M float32 values = 420 MB by
default), saves it as torch.save (.pt), safetensors and a bf16 TorchScript-style torch.save, then times (median of
--repeat, page cache warm after the first run):
  list      names/dtypes/shapes only (wfm.core.list_tensor_file)                 vs  torch.load(mmap not in 1.13)
  read      all tensors as CPU tensors + touch every byte (sum)                  vs  torch.load + the same sum
  load      into a preallocated float32 state dict, strict, bf16 converted       vs  module.load_state_dict
"""
import argparse
import os
import statistics
import time

import torch

import wfm.core as core


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def make_state_dict(total_mb):
    torch.manual_seed(0)
    sd, n, i = {}, 0, 0
    target = total_mb * 1e6 / 4
    shapes = [(512, 512, 3, 3, 3), (256, 256, 3, 3, 3), (512, 256, 1, 1, 1), (512,), (512,)]
    while n < target:
        for s in shapes:
            t = torch.randn(s)
            sd[f"encoder.down.{i}.block.{len(sd) % 7}.conv{len(sd)}.weight"] = t
            n += t.numel()
        i += 1
    return sd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=420)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    core.init_threads(2)
    sd = make_state_dict(args.mb)
    nbytes = sum(t.numel() * t.element_size() for t in sd.values())
    paths = {k: os.path.join(args.dir, f"wfm_bench_ckpt{k}") for k in (".pt", ".safetensors", ".bf16.pt")}
    torch.save(sd, paths[".pt"])
    core.write_safetensors(paths[".safetensors"], sd)
    torch.save({"network." + k: v.bfloat16() for k, v in sd.items()}, paths[".bf16.pt"])
    target = {k: torch.empty_like(v) for k, v in sd.items()}
    module = torch.nn.Module()
    for k, v in target.items():  # a flat module holding the same names (dots -> '_') for load_state_dict
        module.register_buffer(k.replace(".", "_"), torch.empty_like(v))
    renamed = lambda d: {k.replace(".", "_"): v for k, v in d.items()}  # noqa: E731

    print(f"{len(sd)} tensors, {nbytes / 1e6:.0f} MB float32; median of {args.repeat}; torch {torch.__version__}")
    rows = []
    for ext in (".pt", ".safetensors"):
        p = paths[ext]
        rows.append((f"list {ext}", timed(lambda: core.list_tensor_file(p), args.repeat), None))
        rows.append((f"read+sum {ext}", timed(lambda: [t.sum() for t in core.read_tensor_file(p).values()], args.repeat),
                     timed(lambda: [t.sum() for t in torch.load(p).values()], args.repeat) if ext == ".pt" else None))
        rows.append((f"load {ext} (strict)", timed(lambda: core.load_checkpoint(target, p), args.repeat),
                     timed(lambda: module.load_state_dict(renamed(torch.load(p))), args.repeat) if ext == ".pt" else None))
    p = paths[".bf16.pt"]
    rows.append(("load bf16 .pt -> f32 (network. stripped)", timed(lambda: core.load_checkpoint(target, p), args.repeat),
                 timed(lambda: module.load_state_dict({k[8:].replace(".", "_"): v for k, v in torch.load(p).items()}),
                       args.repeat)))
    print(f"{'operation':44s} {'wfm s':>8s} {'GB/s':>6s} {'torch s':>8s}")
    for name, ours, theirs in rows:
        print(f"{name:44s} {ours:8.3f} {nbytes / ours / 1e9:6.2f} {'' if theirs is None else f'{theirs:8.3f}'}")
    for p in paths.values():
        os.remove(p)


if __name__ == "__main__":
    main()
