"""wfm.ar and wfm.diffusion through Python: network parity with the reference fixtures
(../shared/fixtures/autoregressive, ../shared/fixtures/diffusion), seeded generation (same seed -> same output,
sample i independent of num_samples), Video2World smoke tests with random-init tiny models, training losses with
autograd, errors."""
import os
import pathlib

import pytest
import torch

import wfm

if "ar" not in wfm.__all__ or "diffusion" not in wfm.__all__:
    pytest.skip("this build has no world-model bindings", allow_module_level=True)
import wfm.ar as ar
import wfm.core as core
import wfm.diffusion as dif
import wfm.tokenizer as tk

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("WFM_SHARED_DIR", ROOT.parent / "shared"))
AR = SHARED / "fixtures" / "autoregressive"
DIT = SHARED / "fixtures" / "diffusion"
TOK = SHARED / "fixtures" / "tokenizer"
needs = pytest.mark.skipif(not (AR / "ar_base.json").exists() or not (DIT / "dit_t2w.json").exists()
                           or not (TOK / "DV4x8x8.json").exists(), reason="missing shared fixtures")


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


# ---- autoregressive ----

@needs
@pytest.mark.parametrize("name", ["ar_base", "ar_v2w"])
def test_ar_logits_match_the_reference(name):
    io = core.read_safetensors(AR / f"{name}.io.safetensors")
    model = ar.ArModel(AR / f"{name}.json", AR / f"{name}.weights.safetensors")
    with torch.no_grad():
        logits = model.forward(io["tokens"], context=io.get("context"), context_mask=io.get("context_mask"))
    assert rel(logits, io["logits"]) <= 1e-4, f"{name}: max rel diff {rel(logits, io['logits'])}"
    sd = model.state_dict()
    ref = core.read_safetensors(AR / f"{name}.weights.safetensors")
    assert set(sd) == set(ref)
    assert model.state_dict()["output.weight"].data_ptr() == sd["output.weight"].data_ptr()  # no copy


def tiny_ar_config(v2w=False):
    c = ar.config("tiny-v2w" if v2w else "tiny")
    c.update(vocab_size=64000, video_latent_shape=[2, 2, 2])  # the DV4x8x8 fixture's codebook; 5 x 16 x 16 pixels
    return c


@needs
def test_ar_generate_is_seeded_and_batch_independent():
    model = ar.ArModel(tiny_ar_config(), seed=1)
    codec = ar.load_tokenizer_codec(str(TOK / "DV4x8x8.json"), TOK / "DV4x8x8.weights.safetensors")
    assert (codec.vocab_size, codec.temporal_compression, codec.spatial_compression) == (64000, 4, 8)
    frames = torch.randint(0, 255, (5, 16, 16, 3), dtype=torch.uint8)
    seen = []
    a = ar.generate(model, codec, frames, num_input_frames=1, num_frames=5, seed=7, num_samples=2,
                    on_frames=lambda f: seen.append(f.shape[1]))
    assert a["videos"].shape == (2, 5, 16, 16, 3) and a["videos"].dtype == torch.uint8
    assert a["tokens"].shape == (2, 2, 2, 2) and sum(seen) == 5
    b = ar.generate(model, codec, frames, num_input_frames=1, num_frames=5, seed=7, num_samples=1)
    assert torch.equal(a["tokens"][:1], b["tokens"])
    # same tokens; the pixels may differ by float rounding of a batch of 2 vs 1 in the decoder
    assert (a["videos"][:1].int() - b["videos"].int()).abs().max() <= 2
    c = ar.generate(model, codec, frames, num_input_frames=1, num_frames=5, seed=8, num_samples=1)
    assert not torch.equal(b["tokens"][:, 1:], c["tokens"][:, 1:])
    # token-level generation from the same prompt = the world pipeline's tokens
    prompt = a["tokens"][0, :1].reshape(-1)
    t = model.generate_tokens(prompt, 2, seed=7, num_samples=2)
    assert torch.equal(t["tokens"], a["tokens"])
    # greedy = argmax of the logits
    g = model.generate_tokens(prompt, 2, temperature=0)
    with torch.no_grad():
        logits = model.forward(prompt[None], last_only=True)
    assert g["tokens"][0, 1, 0, 0] == logits[0, -1].argmax()


def test_ar_training_and_errors(tmp_path):
    model = ar.ArModel("tiny", seed=0).train()
    tokens = ar.moving_bar_tokens(2, 3, 4, 4, 512, seed=1)
    out = model.loss(tokens)
    assert out["loss"].requires_grad and out["targets"] == 2 * 2 * 16
    out["loss"].backward()
    params = model.parameters()
    assert all(p.grad is not None for p in params)
    before = model.state_dict()["output.weight"].clone()
    torch.optim.SGD(params, lr=0.5).step()
    assert not torch.equal(before, model.state_dict()["output.weight"])
    model.save(tmp_path / "ar.safetensors")
    again = ar.ArModel("tiny", tmp_path / "ar.safetensors")
    assert torch.equal(again.state_dict()["output.weight"], model.state_dict()["output.weight"])
    with pytest.raises(ValueError, match="int64"):
        model.forward(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="tokens"):
        model.forward(torch.full((1, 4), 99999, dtype=torch.int64))
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        ar.ArModel(tmp_path / "nowhere.json")
    core.write_safetensors(tmp_path / "bad.safetensors", {"tok_embeddings.weight": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="bad.safetensors"):
        ar.ArModel("tiny", tmp_path / "bad.safetensors")
    v2w = ar.ArModel("tiny-v2w")
    with pytest.raises(ValueError, match="context"):
        v2w.forward(torch.zeros(1, 4, dtype=torch.int64))


# ---- diffusion ----

@needs
@pytest.mark.parametrize("name", ["dit_t2w", "dit_v2w"])
def test_dit_output_matches_the_reference(name):
    io = core.read_safetensors(DIT / f"{name}.io.safetensors")
    model = dif.DiffusionModel(DIT / f"{name}.json", DIT / f"{name}.weights.safetensors")
    assert model.video_conditioned == (name == "dit_v2w") and model.parametrization == "edm"
    with torch.no_grad():
        out = model.forward(io["x"], io["timesteps"], io["crossattn_emb"], fps=24.0, padding_mask=io["padding_mask"],
                            condition_video_input_mask=io.get("condition_video_input_mask"))
    assert rel(out, io["output"]) <= 1e-4, f"{name}: max rel diff {rel(out, io['output'])}"


@needs
def test_dit_generate_seeded_and_video2world():
    model = dif.DiffusionModel(DIT / "dit_v2w.json", DIT / "dit_v2w.weights.safetensors")
    emb = torch.randn(1, 5, 32)
    steps = []
    kw = dict(crossattn_emb=emb, num_steps=3, guidance=2.0, seed=3)
    a = model.generate([16, 2, 4, 6], num_samples=2, callback=lambda *s: steps.append(s), **kw)
    assert a.shape == (2, 16, 2, 4, 6) and torch.isfinite(a).all() and len(steps) == 3 and steps[-1][:2] == (2, 3)
    b = model.generate([16, 2, 4, 6], num_samples=1, **kw)
    assert torch.allclose(a[:1], b, atol=1e-5)  # sample i does not depend on num_samples
    cond = torch.randn(1, 16, 1, 4, 6)
    v = model.generate([16, 2, 4, 6], condition_latent=cond, num_condition_frames=1, **kw)
    assert torch.equal(v[:, :, :1], cond)  # the given frame is kept exactly

    def stop(*_):
        raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        model.generate([16, 2, 4, 6], callback=stop, **kw)
    # pixel pipeline with a CV tokenizer (random weights, fixture config): uint8 videos of the requested size
    small = dict(tk.config("CV8x8x8"), channels=4, channels_mult=[1, 1, 1], num_res_blocks=1)
    tok = tk.Tokenizer.random(small, seed=0)
    frames = torch.randint(0, 255, (9, 32, 48, 3), dtype=torch.uint8)
    vids = dif.video2world(model, tok, frames, num_input_frames=1, num_frames=9, height=32, width=48,
                           crossattn_emb=emb, num_steps=2, guidance=0, seed=1)
    assert vids.shape == (1, 9, 32, 48, 3) and vids.dtype == torch.uint8


@needs
def test_dit_training_loss_and_errors(tmp_path):
    model = dif.DiffusionModel(DIT / "dit_t2w.json", seed=0).train()
    x0 = torch.randn(2, 16, 2, 4, 6) * 0.5
    out = model.loss(x0, torch.randn(2, 5, 32), seed=1)
    assert out["loss"].requires_grad
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.save(tmp_path / "dit.safetensors")
    again = dif.DiffusionModel(DIT / "dit_t2w.json", tmp_path / "dit.safetensors")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    same = model.loss(x0, torch.randn(2, 5, 32), seed=1, text_dropout=0)
    assert torch.isfinite(same["loss"])
    with pytest.raises(ValueError):
        model.forward(torch.zeros(1, 3, 2, 4, 6), torch.zeros(1), torch.zeros(1, 5, 32))  # 3 channels
    with pytest.raises(ValueError, match="sampler"):
        model.generate([16, 2, 4, 6], sampler="magic", num_steps=1)
    with pytest.raises(ValueError):
        model.generate([16, 2, 4, 6], num_steps=1, condition_latent=torch.zeros(1, 16, 1, 4, 6),
                       num_condition_frames=1)  # a Text2World network


# ---- training data ----

@needs
def test_training_data_entry_points(tmp_path):
    codec = ar.load_tokenizer_codec(str(TOK / "DV4x8x8.json"), TOK / "DV4x8x8.weights.safetensors")
    frames, caption, truth = core.simulate_clip(3, width=32, height=32, num_frames=12)
    assert frames.shape == (12, 32, 32, 3) and caption == truth["caption"] and truth["seed"] == 3
    assert truth["num_frames"] == 12 and 1 <= len(truth["objects"]) <= 3
    assert torch.equal(core.simulate_clip(3, width=32, height=32, num_frames=12)[0], frames)  # seeded
    core.write_video(tmp_path / "w.mkv", frames, fps=12, crf=0)
    clips = ar.tokenize_video(codec, tmp_path / "w.mkv", clip_frames=5, height=16, width=16)
    assert len(clips) == 2 and all(c.shape == (2, 2, 2) and c.dtype == torch.int64 for c in clips)
    assert all(int(c.max()) < codec.vocab_size for c in clips)
    # diffusion: synthetic process, validation loss, latent folders
    x0, emb = dif.synthetic_batch(0, 2, seed=4, frames=2, height=4, width=6, text_dim=32, text_tokens=5)
    assert x0.shape == (2, 16, 2, 4, 6) and emb.shape == (2, 5, 32)
    assert torch.equal(dif.synthetic_batch(1, 1, seed=4, frames=2, height=4, width=6, text_dim=32, text_tokens=5)[0],
                       x0[1:])
    model = dif.DiffusionModel(DIT / "dit_t2w.json", DIT / "dit_t2w.weights.safetensors")
    e1 = model.evaluation_loss(x0, emb, seed=2)
    assert e1 > 0 and e1 == model.evaluation_loss(x0, emb, seed=2)
    (tmp_path / "lat").mkdir()
    for i in range(3):
        dif.LatentFolder.write(tmp_path / "lat" / f"{i}.safetensors", x0[i % 2], emb[i % 2], caption=f"clip {i}")
    folder = dif.LatentFolder(tmp_path / "lat")
    assert len(folder) == 3 and folder.latent_shape == [16, 2, 4, 6]
    item = folder[2]
    assert torch.equal(item["latent"], x0[0]) and item["caption"] == "clip 2"
    with pytest.raises(IndexError):
        folder[3]
