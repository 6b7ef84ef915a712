#!/usr/bin/python3
"""A compact PyTorch restatement of the Cosmos-Tokenize1 causal video tokenizers (CV/DV, FACTORIZED), written for
wfm's tests and benchmarks: same module names (state_dict keys), same op sequence as
cosmos_predict1/tokenizer/modules/{layers3d,patching,quantizers}.py, no dependencies beyond torch.

  tokenizer_reference.py check  --fixture ../shared/fixtures/tokenizer/CV8x8x8
      parity of this script with the shared fixtures (proves it computes what the reference computes)
  tokenizer_reference.py export --fixture ../shared/fixtures/tokenizer/DV8x16x16 [...] --out DIR
      DIR/encoder.jit, decoder.jit, autoencoder.jit traced like the published checkpoints
      (encoder_jit()/decoder_jit() nn.Sequential names), from the fixture weights (DIR/NAME/ for several)
  tokenizer_reference.py bench  --preset CV8x8x8 --frames 17 --height 256 --width 256 [--threads 2]
      full-width random-weight encode/decode timing and peak RSS (the "Python reference" numbers)
  tokenizer_reference.py weights --preset CV8x8x8 --out W.safetensors     random full-size weights
  tokenizer_reference.py input --frames 17 --height 256 --width 256 --out X.safetensors   a test clip

Run with /usr/bin/python3 (Debian python3-torch).
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------------------------------------------
# layers (layers3d.py)


def replication_pad(x):
    return torch.cat([x[:, :, :1, ...], x], dim=2)


def nonlinearity(x):
    return x * torch.sigmoid(x)


class CausalConv3d(nn.Module):
    def __init__(self, chan_in, chan_out, kernel_size=3, stride=1, time_stride=1, padding=1):
        super().__init__()
        k = kernel_size if isinstance(kernel_size, tuple) else (kernel_size,) * 3
        self.time_pad = (k[0] - 1) + (1 - time_stride)
        self.spatial_pad = (padding, padding, padding, padding)
        self.conv3d = nn.Conv3d(chan_in, chan_out, k, stride=(time_stride, stride, stride))

    def forward(self, x):
        x_prev = x[:, :, :1, ...].repeat(1, 1, self.time_pad, 1, 1)
        x = torch.cat([x_prev, x], dim=2)
        x = F.pad(x, self.spatial_pad + (0, 0), mode="constant", value=0.0)
        return self.conv3d(x)


class CausalNormalize(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = nn.GroupNorm(1, c, eps=1e-6, affine=True)

    def forward(self, x):
        b, c, t, h, w = x.shape
        y = self.norm(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


def factorized(cin, cmid, cout):
    return nn.Sequential(CausalConv3d(cin, cmid, (1, 3, 3), padding=1), CausalConv3d(cmid, cout, (3, 1, 1), padding=0))


class ResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = CausalNormalize(cin)
        self.conv1 = factorized(cin, cout, cout)
        self.norm2 = CausalNormalize(cout)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = factorized(cout, cout, cout)
        self.nin_shortcut = CausalConv3d(cin, cout, 1, padding=0) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(nonlinearity(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = CausalNormalize(c)
        self.q, self.k, self.v, self.proj_out = (CausalConv3d(c, c, 1, padding=0) for _ in range(4))

    def forward(self, x):
        h_ = self.norm(x)
        q, k, v = self.q(h_), self.k(h_), self.v(h_)
        B, c, t, h, w = q.shape
        tb = lambda z: z.permute(0, 2, 1, 3, 4).reshape(B * t, c, h * w)
        q, k, v = tb(q), tb(k), tb(v)
        w_ = torch.bmm(q.permute(0, 2, 1), k) * (int(c) ** (-0.5))
        w_ = F.softmax(w_, dim=2)
        h_ = torch.bmm(v, w_.permute(0, 2, 1)).reshape(B, t, c, h, w).permute(0, 2, 1, 3, 4)
        return x + self.proj_out(h_)


class TemporalAttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = CausalNormalize(c)
        self.q, self.k, self.v, self.proj_out = (CausalConv3d(c, c, 1, padding=0) for _ in range(4))

    def forward(self, x):
        h_ = self.norm(x)
        q, k, v = self.q(h_), self.k(h_), self.v(h_)
        B, c, t, h, w = q.shape
        sb = lambda z: z.permute(0, 3, 4, 1, 2).reshape(B * h * w, c, t).permute(0, 2, 1)
        q, k, v = sb(q), sb(k), sb(v)
        w_ = torch.bmm(q, k.permute(0, 2, 1)) * (int(c) ** (-0.5))
        mask = torch.tril(torch.ones_like(w_))
        w_ = F.softmax(w_.masked_fill(mask == 0, float("-inf")), dim=2)
        h_ = torch.bmm(w_, v).permute(0, 2, 1)  # (bhw, c, t)
        h_ = h_.reshape(B, h, w, c, t).permute(0, 3, 4, 1, 2)
        return x + self.proj_out(h_)


def attn_pair(c):
    return nn.Sequential(AttnBlock(c), TemporalAttnBlock(c))


class HybridDown(nn.Module):
    def __init__(self, c, sd, td):
        super().__init__()
        self.conv1 = CausalConv3d(c, c, (1, 3, 3), stride=2, padding=0) if sd else nn.Identity()
        self.conv2 = CausalConv3d(c, c, (3, 1, 1), time_stride=2, padding=0) if td else nn.Identity()
        self.conv3 = CausalConv3d(c, c, 1, padding=0) if (sd or td) else nn.Identity()
        self.sd, self.td = sd, td

    def forward(self, x):
        if not self.sd and not self.td:
            return x
        if self.sd:
            x = F.pad(x, (0, 1, 0, 1, 0, 0))
            x = self.conv1(x) + F.avg_pool3d(x, (1, 2, 2), (1, 2, 2))
        if self.td:
            x = replication_pad(x)
            x = self.conv2(x) + F.avg_pool3d(x, (2, 1, 1), (2, 1, 1))
        return self.conv3(x)


class HybridUp(nn.Module):
    def __init__(self, c, su, tu):
        super().__init__()
        self.conv1 = CausalConv3d(c, c, (3, 1, 1), padding=0) if tu else nn.Identity()
        self.conv2 = CausalConv3d(c, c, (1, 3, 3), padding=1) if su else nn.Identity()
        self.conv3 = CausalConv3d(c, c, 1, padding=0) if (su or tu) else nn.Identity()
        self.su, self.tu = su, tu

    def forward(self, x):
        if not self.su and not self.tu:
            return x
        if self.tu:
            tf = 2 if x.shape[2] > 1 else 1
            x = x.repeat_interleave(tf, dim=2)[:, :, tf - 1:]
            x = self.conv1(x) + x
        if self.su:
            x = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
            x = self.conv2(x) + x
        return self.conv3(x)


# ----------------------------------------------------------------------------------------------------------------
# patching.py (haar only)


class Patcher3D(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p
        self.register_buffer("wavelets", torch.tensor([0.7071067811865476, 0.7071067811865476]))
        self.register_buffer("_arange", torch.arange(2))
        self.register_buffer("patch_size_buffer", p * torch.ones([1], dtype=torch.int32))

    def _dwt(self, x):
        dtype = x.dtype
        h = self.wavelets
        g = x.shape[1]
        hl = h.flip(0).reshape(1, 1, -1).repeat(g, 1, 1).to(dtype)
        hh = (h * ((-1) ** self._arange)).reshape(1, 1, -1).repeat(g, 1, 1).to(dtype)
        x = F.pad(x, pad=(0, 1, 0, 1, 0, 1), mode="reflect").to(dtype)
        xl = F.conv3d(x, hl.unsqueeze(3).unsqueeze(4), groups=g, stride=(2, 1, 1))
        xh = F.conv3d(x, hh.unsqueeze(3).unsqueeze(4), groups=g, stride=(2, 1, 1))
        bands = []
        for a in (xl, xh):
            for hb in (hl, hh):
                y = F.conv3d(a, hb.unsqueeze(2).unsqueeze(4), groups=g, stride=(1, 2, 1))
                for wb in (hl, hh):
                    bands.append(F.conv3d(y, wb.unsqueeze(2).unsqueeze(3), groups=g, stride=(1, 1, 2)))
        return torch.cat(bands, dim=1) / (2 * torch.sqrt(torch.tensor(2.0)))

    def forward(self, x):
        xi, xv = torch.split(x, [1, x.shape[2] - 1], dim=2)
        x = torch.cat([xi.repeat_interleave(self.p, dim=2), xv], dim=2)
        for _ in range(int(math.log2(self.p))):
            x = self._dwt(x)
        return x


class UnPatcher3D(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p
        self.register_buffer("wavelets", torch.tensor([0.7071067811865476, 0.7071067811865476]))
        self.register_buffer("_arange", torch.arange(2))

    def _idwt(self, x):
        dtype = x.dtype
        h = self.wavelets
        g = x.shape[1] // 8
        hl = h.flip([0]).reshape(1, 1, -1).repeat([g, 1, 1]).to(dtype)
        hh = (h * ((-1) ** self._arange)).reshape(1, 1, -1).repeat(g, 1, 1).to(dtype)
        b = torch.chunk(x, 8, dim=1)
        ct = F.conv_transpose3d
        w = lambda f: f.unsqueeze(2).unsqueeze(3)
        hgt = lambda f: f.unsqueeze(2).unsqueeze(4)
        tim = lambda f: f.unsqueeze(3).unsqueeze(4)
        xll = ct(b[0], w(hl), groups=g, stride=(1, 1, 2)) + ct(b[1], w(hh), groups=g, stride=(1, 1, 2))
        xlh = ct(b[2], w(hl), groups=g, stride=(1, 1, 2)) + ct(b[3], w(hh), groups=g, stride=(1, 1, 2))
        xhl = ct(b[4], w(hl), groups=g, stride=(1, 1, 2)) + ct(b[5], w(hh), groups=g, stride=(1, 1, 2))
        xhh = ct(b[6], w(hl), groups=g, stride=(1, 1, 2)) + ct(b[7], w(hh), groups=g, stride=(1, 1, 2))
        xl = ct(xll, hgt(hl), groups=g, stride=(1, 2, 1)) + ct(xlh, hgt(hh), groups=g, stride=(1, 2, 1))
        xh = ct(xhl, hgt(hl), groups=g, stride=(1, 2, 1)) + ct(xhh, hgt(hh), groups=g, stride=(1, 2, 1))
        x = ct(xl, tim(hl), groups=g, stride=(2, 1, 1)) + ct(xh, tim(hh), groups=g, stride=(2, 1, 1))
        return x * (2 * torch.sqrt(torch.tensor(2.0)))

    def forward(self, x):
        for _ in range(int(math.log2(self.p))):
            x = self._idwt(x)
        return x[:, :, self.p - 1:, ...]


# ----------------------------------------------------------------------------------------------------------------
# encoder / decoder


class Encoder(nn.Module):
    def __init__(self, c, z_channels):
        super().__init__()
        p, ch, mult = c["patch_size"], c["channels"], c["channels_mult"]
        n = len(mult)
        self.patcher3d = Patcher3D(p)
        nsd = int(math.log2(c["spatial_compression"])) - int(math.log2(p))
        ntd = int(math.log2(c["temporal_compression"])) - int(math.log2(p))
        self.conv_in = factorized(c["in_channels"] * p ** 3, ch, ch)
        curr = c["resolution"] // p
        in_mult = (1,) + tuple(mult)
        self.down = nn.ModuleList()
        for i in range(n):
            block, attn = nn.ModuleList(), nn.ModuleList()
            bi, bo = ch * in_mult[i], ch * mult[i]
            for _ in range(c["num_res_blocks"]):
                block.append(ResBlock(bi, bo))
                bi = bo
                if curr in c["attn_resolutions"]:
                    attn.append(attn_pair(bi))
            d = nn.Module()
            d.block, d.attn = block, attn
            if i != n - 1:
                d.downsample = HybridDown(bi, i < nsd, i < ntd)
                curr //= 2
            self.down.append(d)
        self.mid = nn.Module()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = ResBlock(bi, bi), attn_pair(bi), ResBlock(bi, bi)
        self.norm_out = CausalNormalize(bi)
        self.conv_out = factorized(bi, z_channels, z_channels)
        self.n = n

    def forward(self, x):
        h = self.conv_in(self.patcher3d(x))
        for i in range(self.n):
            for j, blk in enumerate(self.down[i].block):
                h = blk(h)
                if len(self.down[i].attn) > 0:
                    h = self.down[i].attn[j](h)
            if i != self.n - 1:
                h = self.down[i].downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(nonlinearity(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, c, z_channels):
        super().__init__()
        p, ch, mult = c["patch_size"], c["channels"], c["channels_mult"]
        n = len(mult)
        self.unpatcher3d = UnPatcher3D(p)
        nsu = int(math.log2(c["spatial_compression"])) - int(math.log2(p))
        ntu = int(math.log2(c["temporal_compression"])) - int(math.log2(p))
        bi = ch * mult[-1]
        curr = (c["resolution"] // p) // 2 ** (n - 1)
        self.conv_in = factorized(z_channels, bi, bi)
        self.mid = nn.Module()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = ResBlock(bi, bi), attn_pair(bi), ResBlock(bi, bi)
        self.up = nn.ModuleList()
        for i in reversed(range(n)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            bo = ch * mult[i]
            for _ in range(c["num_res_blocks"] + 1):
                block.append(ResBlock(bi, bo))
                bi = bo
                if curr in c["attn_resolutions"]:
                    attn.append(attn_pair(bi))
            u = nn.Module()
            u.block, u.attn = block, attn
            if i != 0:
                r = n - i - 1
                tu = (r < ntu) if c.get("legacy_mode", False) else (0 < r < ntu + 1)
                su = tu or (r < nsu and nsu > ntu)
                u.upsample = HybridUp(bi, su, tu)
                curr *= 2
            self.up.insert(0, u)
        self.norm_out = CausalNormalize(bi)
        out_ch = c["out_channels"] * p ** 3
        self.conv_out = factorized(bi, out_ch, out_ch)
        self.n = n

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for i in reversed(range(self.n)):
            for j, blk in enumerate(self.up[i].block):
                h = blk(h)
                if len(self.up[i].attn) > 0:
                    h = self.up[i].attn[j](h)
            if i != 0:
                h = self.up[i].upsample(h)
        return self.unpatcher3d(self.conv_out(nonlinearity(self.norm_out(h))))


# ----------------------------------------------------------------------------------------------------------------
# FSQ (quantizers.py FSQuantizer) and the networks


class FSQ(nn.Module):
    def __init__(self, levels):
        super().__init__()
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.int32))
        self.register_buffer("_basis", torch.cumprod(torch.tensor([1] + levels[:-1]), dim=0, dtype=torch.int32))
        n = int(np.prod(levels))
        self.register_buffer("implicit_codebook", self.indices_to_codes(torch.arange(n)).to(torch.bfloat16))

    def bound(self, z, eps=1e-3):
        half_l = (self._levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = (offset / half_l).atanh()
        return (z + shift).tanh() * half_l - offset

    def indices_to_codes(self, indices):
        img = indices.ndim >= 3
        codes = (indices.unsqueeze(-1) // self._basis) % self._levels
        codes = (codes - self._levels // 2) / (self._levels // 2)
        if img:
            codes = codes.movedim(-1, 1)
        return codes.float()

    def forward(self, z):
        z = z.movedim(1, -1)
        zb = self.bound(z)
        q = zb + (zb.round() - zb).detach()
        codes = q / (self._levels // 2)
        idx = ((codes * (self._levels // 2)) + self._levels // 2).float()
        idx = (idx * self._basis).sum(dim=-1).to(torch.int32)
        out = codes.movedim(-1, 1)
        return idx.long(), out, torch.zeros_like(out.mean(dim=[1, 2, 3], keepdim=True))


class Identity2(nn.Module):
    def forward(self, x):
        return x, (torch.tensor([0.0]), torch.tensor([0.0]))


class InvQuantizerJit(nn.Module):
    def __init__(self, q):
        super().__init__()
        self.quantizer = q

    def forward(self, indices):
        return self.quantizer.indices_to_codes(indices)


class Network(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.discrete = c["name"] == "DV"
        zc = c["z_factor"] * c["z_channels"]
        self.encoder = Encoder(c, zc)
        self.decoder = Decoder(c, c["z_channels"])
        lat = c["embedding_dim"] if self.discrete else c["z_factor"] * c["latent_channels"]
        post = c["embedding_dim"] if self.discrete else c["latent_channels"]
        self.quant_conv = CausalConv3d(zc, lat, 1, padding=0)
        self.post_quant_conv = CausalConv3d(post, c["z_channels"], 1, padding=0)
        if self.discrete:
            self.quantizer = FSQ(c["levels"])
        else:
            self.distribution = Identity2()

    def encoder_jit(self):
        from collections import OrderedDict
        last = ("quantizer", self.quantizer) if self.discrete else ("distribution", self.distribution)
        return nn.Sequential(OrderedDict([("encoder", self.encoder), ("quant_conv", self.quant_conv), last]))

    def decoder_jit(self):
        from collections import OrderedDict
        items = [("post_quant_conv", self.post_quant_conv), ("decoder", self.decoder)]
        if self.discrete:
            items.insert(0, ("inv_quant", InvQuantizerJit(self.quantizer)))
        return nn.Sequential(OrderedDict(items))

    def encode(self, x):
        h = self.quant_conv(self.encoder(x))
        return self.quantizer(h) if self.discrete else (h,)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x):
        enc = self.encode(x)
        z = enc[1] if self.discrete else enc[0]
        return self.decode(z)


# ----------------------------------------------------------------------------------------------------------------
# IO


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dt = {"F32": np.float32, "I64": np.int64, "I32": np.int32}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[b:e], dtype=dt[v["dtype"]]).reshape(v["shape"]).copy())
    return out


PRESETS = {
    "CV8x8x8": dict(name="CV", patch_size=4, spatial_compression=8, temporal_compression=8, z_channels=16),
    "CV4x8x8": dict(name="CV", patch_size=2, spatial_compression=8, temporal_compression=4, z_channels=16),
    "DV8x16x16": dict(name="DV", patch_size=4, spatial_compression=16, temporal_compression=8, z_channels=16),
    "DV4x8x8": dict(name="DV", patch_size=2, spatial_compression=8, temporal_compression=4, z_channels=256),
}


def full_config(preset, channels=128):
    c = dict(attn_resolutions=[32], channels=channels, channels_mult=[2, 4, 4], in_channels=3, out_channels=3,
             num_res_blocks=2, resolution=1024, latent_channels=16, z_factor=1, embedding_dim=6,
             levels=[8, 8, 8, 5, 5, 5], legacy_mode=False)
    c.update(PRESETS[preset])
    return c


def load_fixture(prefix):
    c = json.load(open(prefix + ".json"))["config"]
    net = Network(c)
    net.load_state_dict(read_safetensors(prefix + ".weights.safetensors"), strict=True)
    return net.eval(), read_safetensors(prefix + ".io.safetensors")


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def cmd_check(args):
    net, io = load_fixture(args.fixture)
    with torch.no_grad():
        enc = net.encode(io["input"])
        if net.discrete:
            print("indices equal:", bool(torch.equal(enc[0], io["indices"])), "codes rel", rel(enc[1], io["codes"]))
            print("reconstruction rel", rel(net.decode(io["codes"]), io["reconstruction"]))
        else:
            print("latent rel", rel(enc[0], io["latent"]))
            print("reconstruction rel", rel(net.decode(io["latent"]), io["reconstruction"]))


def cmd_export(args):
    for fixture in args.fixture:
        net, io = load_fixture(fixture)
        out = args.out if len(args.fixture) == 1 else os.path.join(args.out, os.path.basename(fixture))
        os.makedirs(out, exist_ok=True)
        x = io["input"]
        with torch.no_grad():
            enc_jit = torch.jit.trace(net.encoder_jit(), x, check_trace=False)
            dec_in = enc_jit(x)[0]
            dec_jit = torch.jit.trace(net.decoder_jit(), dec_in, check_trace=False)
            full_jit = torch.jit.trace(net, x, check_trace=False)
        enc_jit.save(os.path.join(out, "encoder.jit"))
        dec_jit.save(os.path.join(out, "decoder.jit"))
        full_jit.save(os.path.join(out, "autoencoder.jit"))
        print("wrote", out)


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    names = {torch.float32: "F32", torch.int64: "I64", torch.int32: "I32"}
    for k, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.float()
        b = t.numpy().tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def cmd_weights(args):
    torch.manual_seed(args.seed)
    net = Network(full_config(args.preset, args.channels))
    write_safetensors(args.out, net.state_dict())
    print("wrote", args.out, sum(p.numel() for p in net.parameters()), "parameters")


def cmd_input(args):
    torch.manual_seed(args.seed)
    # Smooth random content in [-1, 1] (low-resolution noise upsampled), like natural video statistics.
    low = torch.rand(1, 3, args.frames, max(1, args.height // 16), max(1, args.width // 16)) * 2 - 1
    x = F.interpolate(low, size=(args.frames, args.height, args.width), mode="trilinear", align_corners=False)
    write_safetensors(args.out, {"input": x.clamp(-1, 1).contiguous()})
    print("wrote", args.out, tuple(x.shape))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cmd_bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = Network(full_config(args.preset, args.channels)).eval()
    x = torch.rand(1, 3, args.frames, args.height, args.width) * 2 - 1
    enc_ms, dec_ms, enc_cpu, dec_cpu = [], [], [], []
    with torch.no_grad():
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            enc = net.encode(x)
            t1, c1 = time.perf_counter(), time.process_time()
            net.decode(enc[1] if net.discrete else enc[0])
            t2, c2 = time.perf_counter(), time.process_time()
            enc_ms.append((t1 - t0) * 1000 / args.frames)
            dec_ms.append((t2 - t1) * 1000 / args.frames)
            enc_cpu.append((c1 - c0) * 1000 / args.frames)
            dec_cpu.append((c2 - c1) * 1000 / args.frames)
    result = dict(preset=args.preset, channels=args.channels, frames=args.frames, height=args.height, width=args.width,
                  threads=args.threads, encode_ms_per_frame=float(np.median(enc_ms)),
                  decode_ms_per_frame=float(np.median(dec_ms)), encode_cpu_ms_per_frame=float(np.median(enc_cpu)),
                  decode_cpu_ms_per_frame=float(np.median(dec_cpu)), peak_rss_mb=peak_rss_mb(),
                  torch=torch.__version__, load_average=os.getloadavg()[0])
    print(json.dumps(result))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--fixture", required=True, help="fixture prefix, e.g. ../shared/fixtures/tokenizer/CV8x8x8")
    e = sub.add_parser("export")
    e.add_argument("--fixture", required=True, nargs="+", help="one or more fixture prefixes")
    e.add_argument("--out", required=True, help="output directory (one subdirectory per fixture when several)")
    b = sub.add_parser("bench")
    b.add_argument("--preset", default="CV8x8x8", choices=sorted(PRESETS))
    b.add_argument("--channels", type=int, default=128)
    b.add_argument("--frames", type=int, default=17)
    b.add_argument("--height", type=int, default=256)
    b.add_argument("--width", type=int, default=256)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--repeats", type=int, default=1)
    wt = sub.add_parser("weights", help="random full-size weights as safetensors (reference names)")
    wt.add_argument("--preset", default="CV8x8x8", choices=sorted(PRESETS))
    wt.add_argument("--channels", type=int, default=128)
    wt.add_argument("--seed", type=int, default=0)
    wt.add_argument("--out", required=True)
    ip = sub.add_parser("input", help="a smooth random clip [1, 3, T, H, W] in [-1, 1] as safetensors `input`")
    ip.add_argument("--frames", type=int, default=17)
    ip.add_argument("--height", type=int, default=256)
    ip.add_argument("--width", type=int, default=256)
    ip.add_argument("--seed", type=int, default=0)
    ip.add_argument("--out", required=True)
    args = p.parse_args()
    {"check": cmd_check, "export": cmd_export, "bench": cmd_bench, "weights": cmd_weights, "input": cmd_input}[args.cmd](args)


if __name__ == "__main__":
    main()
