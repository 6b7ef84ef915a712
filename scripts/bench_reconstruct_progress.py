#!/usr/bin/python3
"""Cost of Tokenizer.reconstruct(progress=...) (the chunk-by-chunk encode -> decode pipeline) vs the plain call.

  PYTHONPATH=build/python /usr/bin/python3 scripts/bench_reconstruct_progress.py [--frames 129] [--repeat 3]

Random tiny DV4x8x8 / CV4x8x8 tokenizers (channels 4), x [1, 3, frames, 32, 32], chunk_frames=4, one intra-op
thread; prints the best of --repeat CPU seconds (time.process_time) of each call and checks the outputs agree.
"""
import argparse
import time

import torch

import wfm.core as core
import wfm.tokenizer as tk


def best_cpu_seconds(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=129)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    core.init_threads(1)
    for name in ("DV4x8x8", "CV4x8x8"):
        tok = tk.Tokenizer.random(dict(tk.config(name), channels=4, channels_mult=[1, 1, 1], num_res_blocks=1))
        x = torch.rand(1, 3, args.frames, 32, 32) * 2 - 1
        calls = []
        plain = best_cpu_seconds(lambda: tok.reconstruct(x, chunk_frames=4), args.repeat)
        piped = best_cpu_seconds(lambda: tok.reconstruct(x, chunk_frames=4, progress=lambda d, t, i: calls.append(d)),
                                 args.repeat)
        same = torch.equal(tok.reconstruct(x, chunk_frames=4),
                           tok.reconstruct(x, chunk_frames=4, progress=lambda done, total, info: None))
        print(f"{name}: plain {plain:.3f} CPU s, progress= {piped:.3f} CPU s "
              f"({len(calls) // args.repeat} callbacks per call), equal outputs: {same}")


if __name__ == "__main__":
    main()
