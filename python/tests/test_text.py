"""wfm.text through Python: the built-in encoder (create / save / load / train), a Hugging Face ByT5 directory
built from the same weights gives the same embeddings, an independent plain-torch T5 encoder agrees, the CLI
agrees, the embedding cache, tokenisers, errors."""
import json
import math
import os
import pathlib
import subprocess

import pytest
import torch

import wfm

if "text" not in wfm.__all__:
    pytest.skip("this build has no text bindings", allow_module_level=True)
import wfm.core as core
import wfm.text as text

TINY = dict(d_model=32, num_layers=2, num_heads=2, d_kv=16, d_ff=48, max_length=24, seed=5)
PROMPTS = ["a red ball bounces", "", "a blue box slides left and stops against the wall"]


@pytest.fixture()
def builtin(tmp_path):
    enc = text.create_builtin_encoder(**TINY)
    enc.eval()  # no dropout
    path = tmp_path / "builtin.safetensors"
    enc.save(path)
    return enc, path


def t5_reference(sd, cfg, ids, mask):
    """Plain-torch T5 encoder (Hugging Face T5EncoderModel semantics): RMS norms, relative position buckets in
    layer 0, gated-gelu or relu FFN, no scaling of scores, final norm; padded rows zeroed."""
    d, h, dk = cfg["d_model"], cfg["num_heads"], cfg["d_kv"]
    nb, md = cfg["relative_attention_num_buckets"], cfg.get("relative_attention_max_distance", 128)
    eps = cfg["layer_norm_epsilon"]

    def norm(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    L = ids.shape[1]
    rel = torch.arange(L)[None, :] - torch.arange(L)[:, None]  # memory - query
    half = nb // 2
    bucket = (rel > 0).long() * half
    n = rel.abs()
    exact = half // 2
    large = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(md / exact) * (half - exact)).long()
    bucket = bucket + torch.where(n < exact, n, large.clamp(max=half - 1))
    bias = sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][bucket].permute(2, 0, 1)
    bias = bias[None] + (~mask[:, None, None, :]).float() * torch.finfo(torch.float32).min
    x = sd["shared.weight"][ids]
    for i in range(cfg["num_layers"]):
        p = f"encoder.block.{i}.layer."
        y = norm(x, sd[p + "0.layer_norm.weight"])
        q, k, v = (torch.nn.functional.linear(y, sd[p + f"0.SelfAttention.{n}.weight"]).view(*y.shape[:2], h, dk).transpose(1, 2)
                   for n in "qkv")
        a = torch.softmax(q @ k.transpose(-1, -2) + bias, -1) @ v
        x = x + torch.nn.functional.linear(a.transpose(1, 2).reshape(*y.shape[:2], h * dk), sd[p + "0.SelfAttention.o.weight"])
        y = norm(x, sd[p + "1.layer_norm.weight"])
        proj = cfg.get("feed_forward_proj", "relu")
        if proj.startswith("gated"):
            act = cfg.get("dense_act_fn") or ("gelu_new" if proj == "gated-gelu" else proj[len("gated-"):])
            approx = "tanh" if act in ("gelu_new", "gelu_pytorch_tanh") else "none"
            hmid = torch.nn.functional.gelu(torch.nn.functional.linear(y, sd[p + "1.DenseReluDense.wi_0.weight"]), approximate=approx)
            hmid = hmid * torch.nn.functional.linear(y, sd[p + "1.DenseReluDense.wi_1.weight"])
        else:
            hmid = torch.relu(torch.nn.functional.linear(y, sd[p + "1.DenseReluDense.wi.weight"]))
        x = x + torch.nn.functional.linear(hmid, sd[p + "1.DenseReluDense.wo.weight"])
    x = norm(x, sd["encoder.final_layer_norm.weight"])
    return x * mask[..., None]


def test_builtin_matches_plain_torch_t5(builtin):
    enc, path = builtin
    emb, mask = enc.encode(PROMPTS)
    assert emb.shape == (3, TINY["max_length"], TINY["d_model"]) and emb.dtype == torch.float32
    assert mask.dtype == torch.bool and mask.sum(1).tolist()[1] == 1  # "" is EOS only
    assert torch.all(emb[~mask] == 0)
    ids, mask2 = enc.tokenize(PROMPTS)
    assert torch.equal(mask, mask2)
    assert ids[0, :3].tolist() == [ord("a") + 3, ord(" ") + 3, ord("r") + 3]  # ByT5 bytes
    cfg = json.loads(core.SafetensorsFile(path).metadata["wfm.config"])
    with torch.no_grad():
        ref = t5_reference({k: v.detach() for k, v in enc.state_dict().items()}, cfg, ids, mask)
    diff = (emb.detach() - ref).abs().max().item()
    assert diff <= 1e-5 * max(1.0, ref.abs().max().item()), f"max diff {diff}"
    # encode_tokens = encode
    assert torch.allclose(enc.encode_tokens(ids, mask)[0], emb, atol=1e-6)


def test_save_load_and_hf_directory_agree(builtin, tmp_path):
    enc, path = builtin
    emb, _ = enc.encode(PROMPTS)
    again = text.load_builtin_encoder(path, trainable=False)
    assert again.max_length == TINY["max_length"] and again.dim == TINY["d_model"]
    assert torch.allclose(again.encode(PROMPTS)[0], emb, atol=1e-6)
    # The same weights as a Hugging Face ByT5 directory -> the T5 loader
    hf = tmp_path / "byt5"
    hf.mkdir()
    cfg = json.loads(core.SafetensorsFile(path).metadata["wfm.config"])
    (hf / "config.json").write_text(json.dumps(cfg))
    (hf / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ByT5Tokenizer"}))
    core.write_safetensors(hf / "model.safetensors", {k: v.detach() for k, v in enc.state_dict().items()})
    t5 = text.load_text_encoder(hf, max_length=TINY["max_length"])
    assert torch.allclose(t5.encode(PROMPTS)[0], emb, atol=1e-5)
    assert t5.config["d_model"] == TINY["d_model"]


BUILD = os.environ.get("WFM_BINARY_DIR")


@pytest.mark.skipif(not BUILD or not pathlib.Path(BUILD, "bin", "wfm").exists(), reason="needs the wfm tool")
def test_equals_the_cli(builtin, tmp_path):
    enc, path = builtin
    out = tmp_path / "e.safetensors"
    cmd = [str(pathlib.Path(BUILD, "bin", "wfm")), "text", "encode", "--builtin", str(path), "--output", str(out)]
    for p in PROMPTS[:2]:
        cmd += ["--prompt", p]
    subprocess.run(cmd, check=True, capture_output=True)
    cli = core.read_safetensors(out)
    emb, mask = text.load_builtin_encoder(path, trainable=False).encode(PROMPTS[:2])
    key = next(k for k in cli if cli[k].dim() == 3)
    assert torch.allclose(cli[key], emb, atol=1e-6)


def test_trains_from_python(builtin):
    enc, _ = builtin
    params = enc.parameters()
    assert params and all(p.requires_grad for p in params)
    sd = enc.state_dict()
    name = "shared.weight"
    assert enc.state_dict()[name].data_ptr() == sd[name].data_ptr()
    enc.train()
    emb, mask = enc.encode(PROMPTS)
    assert emb.requires_grad
    emb.pow(2).mean().backward()
    assert sd[name].grad is not None and sd[name].grad.abs().sum() > 0
    before = sd[name].clone()
    torch.optim.SGD(params, lr=0.1).step()
    assert not torch.equal(before, enc.state_dict()[name])
    enc.eval()
    with torch.no_grad():
        assert not enc.encode(PROMPTS)[0].requires_grad


def test_embedding_cache(builtin, tmp_path):
    enc, path = builtin
    frozen = text.load_builtin_encoder(path, trainable=False)
    cached = text.CachedTextEncoder(frozen, tmp_path / "cache")
    first, m1 = cached.encode(PROMPTS)
    assert (cached.hits, cached.misses) == (0, 3)
    again, m2 = cached.encode(PROMPTS[::-1])
    assert (cached.hits, cached.misses) == (3, 3)
    assert torch.allclose(again.flip(0), first, atol=1e-6) and torch.equal(m2.flip(0), m1)
    cache = text.EmbeddingCache(tmp_path / "cache")
    e = cache.get(frozen.model_id, PROMPTS[0])
    assert e.shape == (int(m1[0].sum()), TINY["d_model"])
    assert cache.get(frozen.model_id, "never seen") is None
    cache.put("other-model", "x", torch.ones(2, 4))
    assert torch.equal(cache.get("other-model", "x"), torch.ones(2, 4))
    pathlib.Path(cache.path_for("other-model", "x")).write_bytes(b"garbage")
    with pytest.raises(OSError, match="safetensors"):
        cache.get("other-model", "x")


def test_tokenizers_and_errors(tmp_path):
    b = text.byte_tokenizer()
    assert b.encode("hé") == [ord("h") + 3, 0xC3 + 3, 0xA9 + 3] and b.decode(b.encode("hé")) == "hé"
    ids, mask = text.tokenize_batch(b, ["ab", "abcdef"], max_length=4)
    assert ids.tolist() == [[100, 101, 1, 0], [100, 101, 102, 1]] and mask.sum(1).tolist() == [3, 4]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        text.load_text_encoder(tmp_path / "nowhere")
    with pytest.raises((FileNotFoundError, ValueError, RuntimeError), match="spiece.model"):
        text.load_sentencepiece(tmp_path / "spiece.model")
    enc = text.create_builtin_encoder(**TINY)
    with pytest.raises(ValueError):
        enc.encode([])
