#!/usr/bin/python3
"""Independent plain-torch reference of the Hugging Face T5 encoder, for wfm_text_tests and the text benchmark.

Debian has no `transformers`, so this re-derives T5EncoderModel's forward from modeling_t5.py (T5LayerNorm,
T5Attention with _relative_position_bucket / compute_bias, T5DenseActDense / T5DenseGatedActDense with
NewGELUActivation, T5Stack) with the same torch ops, builds a tiny random model and writes, under OUT:
  single/   config.json + model.safetensors            (shared.weight only, as HF saves tied weights)
  sharded/  config.json + model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json
  bin/      config.json + pytorch_model.bin            (torch.save, with decoder.* / lm_head junk + embed_tokens alias)
  binshard/ config.json + pytorch_model-0000{1,2}-of-00002.bin + pytorch_model.bin.index.json
  ref.safetensors: ids int64 [B, L], mask int64 [B, L], hidden float32 [B, L, D] (last_hidden_state, not zeroed)

usage: t5_reference.py OUT FEED_FORWARD_PROJ          (relu | gated-gelu)
       t5_reference.py --bench small|base [BATCH]     (ms per prompt at 512 tokens, random weights, eager torch)
"""
import collections
import json
import math
import os
import struct
import sys
import time

import torch


def random_state_dict(cfg, g):
    D, H, K, F, V = cfg["d_model"], cfg["num_heads"], cfg["d_kv"], cfg["d_ff"], cfg["vocab_size"]
    gated = cfg["feed_forward_proj"].startswith("gated")
    rnd = lambda *shape, s=1.0: torch.randn(*shape, generator=g) * s
    sd = collections.OrderedDict()
    sd["shared.weight"] = rnd(V, D)
    for i in range(cfg["num_layers"]):
        p = f"encoder.block.{i}.layer."
        for n in "qkv":
            sd[p + f"0.SelfAttention.{n}.weight"] = rnd(H * K, D, s=D ** -0.5)
        sd[p + "0.SelfAttention.o.weight"] = rnd(D, H * K, s=(H * K) ** -0.5)
        if i == 0:
            sd[p + "0.SelfAttention.relative_attention_bias.weight"] = rnd(cfg["relative_attention_num_buckets"], H)
        sd[p + "0.layer_norm.weight"] = 1 + rnd(D, s=0.1)
        for n in (["wi_0", "wi_1"] if gated else ["wi"]):
            sd[p + f"1.DenseReluDense.{n}.weight"] = rnd(F, D, s=D ** -0.5)
        sd[p + "1.DenseReluDense.wo.weight"] = rnd(D, F, s=F ** -0.5)
        sd[p + "1.layer_norm.weight"] = 1 + rnd(D, s=0.1)
    sd["encoder.final_layer_norm.weight"] = 1 + rnd(D, s=0.1)
    return sd


def bucket(rel, num_buckets, max_distance):  # bidirectional _relative_position_bucket
    num_buckets //= 2
    out = (rel > 0).long() * num_buckets
    n = rel.abs()
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(n.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return out + torch.where(n < max_exact, n, large)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def encoder(sd, cfg, ids, mask):
    """T5EncoderModel(input_ids=ids, attention_mask=mask).last_hidden_state"""
    H, K, eps = cfg["num_heads"], cfg["d_kv"], cfg["layer_norm_epsilon"]
    norm = lambda x, w: w * (x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps))
    B, L = ids.shape
    x = sd["shared.weight"][ids]
    pos = torch.arange(L)
    b = bucket(pos[None, :] - pos[:, None], cfg["relative_attention_num_buckets"],
               cfg["relative_attention_max_distance"])
    bias = sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][b].permute(2, 0, 1)[None]
    bias = bias + (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    for i in range(cfg["num_layers"]):
        w = lambda n: sd[f"encoder.block.{i}.layer.{n}.weight"]
        h = norm(x, w("0.layer_norm"))
        q, k, v = [(h @ w(f"0.SelfAttention.{n}").T).view(B, L, H, K).transpose(1, 2) for n in "qkv"]
        att = torch.softmax((q @ k.transpose(3, 2) + bias).float(), dim=-1)
        x = x + (att @ v).transpose(1, 2).reshape(B, L, H * K) @ w("0.SelfAttention.o").T
        h = norm(x, w("1.layer_norm"))
        if cfg["feed_forward_proj"].startswith("gated"):
            h = gelu_new(h @ w("1.DenseReluDense.wi_0").T) * (h @ w("1.DenseReluDense.wi_1").T)
        else:
            h = torch.relu(h @ w("1.DenseReluDense.wi").T)
        x = x + h @ w("1.DenseReluDense.wo").T
    return norm(x, sd["encoder.final_layer_norm.weight"])


def write_safetensors(tensors, path):  # argument order of torch.save
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    for name, t in tensors.items():
        data = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def generate(out_dir, ffn):
    cfg = dict(model_type="t5", vocab_size=260, d_model=32, d_kv=8, d_ff=48, num_layers=3, num_heads=4,
               relative_attention_num_buckets=32, relative_attention_max_distance=20, layer_norm_epsilon=1e-6,
               dropout_rate=0.1, feed_forward_proj=ffn, pad_token_id=0, eos_token_id=1, is_encoder_decoder=True)
    g = torch.Generator().manual_seed(1234 if ffn.startswith("gated") else 4321)
    sd = random_state_dict(cfg, g)

    def model_dir(name):
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        return d

    write_safetensors(sd, os.path.join(model_dir("single"), "model.safetensors"))
    names = list(sd)
    halves = [collections.OrderedDict((n, sd[n]) for n in names[:len(names) // 2]),
              collections.OrderedDict((n, sd[n]) for n in names[len(names) // 2:])]
    for ext, writer, subdir in [("safetensors", write_safetensors, "sharded"), ("bin", torch.save, "binshard")]:
        d = model_dir(subdir)
        stem = "model" if ext == "safetensors" else "pytorch_model"
        weight_map = {}
        for j, part in enumerate(halves):
            fname = f"{stem}-0000{j + 1}-of-00002.{ext}"
            writer(part, os.path.join(d, fname))
            weight_map.update({n: fname for n in part})
        with open(os.path.join(d, f"{stem}.{ext}.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
    full = collections.OrderedDict(sd)
    full["encoder.embed_tokens.weight"] = sd["shared.weight"]
    full["decoder.block.0.layer.0.SelfAttention.q.weight"] = torch.randn(8, 8, generator=g)
    full["lm_head.weight"] = torch.randn(8, 8, generator=g)
    torch.save(full, os.path.join(model_dir("bin"), "pytorch_model.bin"))

    B, L = 3, 40  # L > 2 * max_distance: exercises the log buckets and their clamp
    ids = torch.randint(2, cfg["vocab_size"], (B, L), generator=g)
    mask = torch.zeros(B, L, dtype=torch.int64)
    for b, n in enumerate([L, 17, 1]):
        mask[b, :n] = 1
        ids[b, n - 1] = cfg["eos_token_id"]
        ids[b, n:] = cfg["pad_token_id"]
    with torch.no_grad():
        hidden = encoder(sd, cfg, ids, mask)
    write_safetensors({"ids": ids, "mask": mask, "hidden": hidden}, os.path.join(out_dir, "ref.safetensors"))
    print("wrote", out_dir)


def bench(preset, batch):
    dims = {"small": (512, 64, 2048, 6, 8), "base": (768, 64, 3072, 12, 12)}[preset]
    cfg = dict(vocab_size=32128, d_model=dims[0], d_kv=dims[1], d_ff=dims[2], num_layers=dims[3], num_heads=dims[4],
               relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
               feed_forward_proj="relu")
    sd = random_state_dict(cfg, torch.Generator().manual_seed(0))
    ids = torch.randint(2, 32000, (batch, 512))
    mask = torch.ones(batch, 512, dtype=torch.int64)
    wall, cpu = [], []
    with torch.no_grad():
        for _ in range(6):
            t, c = time.perf_counter(), time.process_time()
            encoder(sd, cfg, ids, mask)
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    med = lambda v: sorted(v[1:])[len(v[1:]) // 2] * 1000 / batch  # first run is warm-up
    print(f"t5-{preset} python eager torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}, "
          f"512 tokens: median {med(wall):.1f} ms/prompt wall, {med(cpu):.1f} ms/prompt CPU (all threads)")


if __name__ == "__main__":
    if sys.argv[1] == "--bench":
        bench(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    else:
        generate(sys.argv[1], sys.argv[2])
