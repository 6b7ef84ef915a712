#!/usr/bin/python3
"""Side-by-side speed baseline for `bench/ar_benchmark.cc`: the Cosmos-Predict1 AR decode loop in plain PyTorch.

Re-implements what cosmos_predict1/autoregressive runs at inference (networks/transformer.py Transformer with
modules/attention.py Attention, the v2 rotary embedding, utils/sampling.py prefill / decode_one_token /
sample_top_p) without megatron / TransformerEngine, so it runs on this machine's Debian torch 1.13 CPU build:
  - every decode step attends over the WHOLE preallocated cache (max_seq_len keys) with the mask row
    causal_mask[input_pos], as the reference does;
  - top-p sampling sorts the whole 64000-entry distribution.
Same shape as the C++ benchmark: dim 256, 4 layers, 4 heads / 2 KV heads, QK-norm, FFN 768, vocab 64000,
latent grid 4x16x16 (1024 positions), batch 1, float32.

  /usr/bin/python3 scripts/ar_reference_bench.py --threads 2
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps):
    return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * w


def rotate_half_te(x):
    x = x.view(x.shape[:-1] + torch.Size((2, x.shape[-1] // 2)))
    x1, x2 = x.unbind(dim=-2)
    return torch.cat((-x2, x1), dim=-1)


class Model:
    def __init__(self, dim=256, n_layers=4, n_heads=4, n_kv=2, ffn=768, vocab=64000, grid=(4, 16, 16)):
        g = torch.Generator().manual_seed(0)
        r = lambda *s: torch.randn(*s, generator=g) * 0.02
        self.dim, self.h, self.kv, self.hd = dim, n_heads, n_kv, dim // n_heads
        self.max_seq = grid[0] * grid[1] * grid[2]
        self.emb = torch.randn(vocab, dim, generator=g)
        self.layers = []
        for _ in range(n_layers):
            self.layers.append(dict(
                wq=r(n_heads * self.hd, dim), wk=r(n_kv * self.hd, dim), wv=r(n_kv * self.hd, dim),
                wo=r(dim, n_heads * self.hd), w1=r(ffn, dim), w2=r(dim, ffn), w3=r(ffn, dim),
                an=torch.ones(dim), fn=torch.ones(dim), qn=torch.ones(self.hd), kn=torch.ones(self.hd),
                ck=torch.zeros(1, n_kv, self.max_seq, self.hd), cv=torch.zeros(1, n_kv, self.max_seq, self.hd)))
        self.norm = torch.ones(dim)
        self.out = r(vocab, dim)
        # 3D RoPE table, TE layout [1, S, 1, D] (RotaryPositionEmbedding rope_dim "3D", theta 5e5)
        d = self.hd
        dh = d // 6 * 2
        dt = d - 2 * dh
        sp = 1.0 / (500000.0 ** (torch.arange(0, dh, 2)[: dh // 2].float() / dh))
        tp = 1.0 / (500000.0 ** (torch.arange(0, dt, 2)[: dt // 2].float() / dt))
        T, H, W = grid
        seq = torch.arange(max(grid)).float()
        et = torch.outer(seq[:T], tp)[:, None, None, :].expand(T, H, W, -1)
        eh = torch.outer(seq[:H], sp)[None, :, None, :].expand(T, H, W, -1)
        ew = torch.outer(seq[:W], sp)[None, None, :, :].expand(T, H, W, -1)
        emb = torch.cat([et, eh, ew] * 2, dim=-1).reshape(1, T * H * W, 1, d)
        self.cos, self.sin = emb.cos(), emb.sin()
        self.causal = torch.tril(torch.ones(self.max_seq, self.max_seq, dtype=torch.bool))

    def forward(self, tokens, input_pos):
        b, s = tokens.shape
        x = F.embedding(tokens, self.emb)
        mask = self.causal[input_pos][None, None]
        cos, sin = self.cos[:, input_pos], self.sin[:, input_pos]
        for L in self.layers:
            h = rms_norm(x, L["an"], 1e-5)
            q = F.linear(h, L["wq"]).view(b, s, self.h, self.hd)
            k = F.linear(h, L["wk"]).view(b, s, self.kv, self.hd)
            v = F.linear(h, L["wv"]).view(b, s, self.kv, self.hd)
            q, k = rms_norm(q, L["qn"], 1e-5), rms_norm(k, L["kn"], 1e-5)
            q = q * cos + rotate_half_te(q) * sin
            k = k * cos + rotate_half_te(k) * sin
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            L["ck"][:b, :, input_pos] = k
            L["cv"][:b, :, input_pos] = v
            keys = L["ck"][:b].repeat_interleave(self.h // self.kv, dim=1)
            vals = L["cv"][:b].repeat_interleave(self.h // self.kv, dim=1)
            # torch 1.13 has no F.scaled_dot_product_attention: its math, as the reference's fallback would do
            att = (q @ keys.transpose(-2, -1)) / math.sqrt(self.hd)
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            o = (att @ vals).transpose(1, 2).reshape(b, s, -1)
            x = x + F.linear(o, L["wo"])
            h = rms_norm(x, L["fn"], 1e-5)
            x = x + F.linear(F.silu(F.linear(h, L["w1"])) * F.linear(h, L["w3"]), L["w2"])
        return F.linear(rms_norm(x, self.norm, 1e-5), self.out)


def sample_top_p(logits, temperature, top_p):
    probs = torch.softmax(logits[:, -1, :] / temperature, dim=-1)
    probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
    probs_sum = torch.cumsum(probs_sort, dim=-1)
    probs_sort[probs_sum - probs_sort > top_p] = 0.0
    probs_sort.div_(probs_sort.sum(dim=-1, keepdim=True))
    q = torch.empty_like(probs_sort).exponential_(1)
    return torch.gather(probs_idx, -1, torch.argmax(probs_sort / q, dim=-1, keepdim=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--decode", type=int, default=128)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = Model()
    with torch.no_grad():
        prompt = torch.randint(0, 64000, (1, a.prompt))
        t0, c0 = time.time(), time.process_time()
        tok = sample_top_p(m.forward(prompt, torch.arange(a.prompt)), 1.0, 0.9)
        t1, c1 = time.time(), time.process_time()
        pos = a.prompt
        for _ in range(a.decode):
            tok = sample_top_p(m.forward(tok.view(1, 1), torch.tensor([pos])), 1.0, 0.9)
            pos += 1
        t2, c2 = time.time(), time.process_time()
        s, cs = time.time(), time.process_time()
        for i in range(32):  # forward only (no sampling), at context ~pos
            m.forward(tok.view(1, 1), torch.tensor([pos - 1]))
        fwd, cfwd = time.time() - s, time.process_time() - cs
    print(f"threads {a.threads}: prefill {a.prompt / (t1 - t0):.0f} tok/s (cpu {(c1 - c0) / a.prompt * 1e3:.2f} "
          f"ms/token); decode+top-p {a.decode / (t2 - t1):.1f} tok/s (cpu {(c2 - c1) / a.decode * 1e3:.1f} ms/token); "
          f"decode forward only {32 / fwd:.1f} tok/s (cpu {cfwd / 32 * 1e3:.1f} ms/token)")


if __name__ == "__main__":
    main()
