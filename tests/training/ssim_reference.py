#!/usr/bin/python3
"""Independent numpy reference for the SSIM/PSNR tests: skimage.metrics.structural_similarity's algorithm as
written there (filter the whole image with scipy-style 'reflect' boundaries, THEN crop (win-1)//2 pixels, per
channel, channel mean) and TokenBench's PSNR, without scipy/skimage (not installed here).

usage: ssim_reference.py A.raw B.raw T H W C   (uint8 frames [T, H, W, C]); prints JSON to stdout:
  {"psnr": clip PSNR, "psnr_per_frame": [...], "ssim_gaussian": [...per frame], "ssim_uniform7": [...]}
"""
import json
import sys

import numpy as np


def filter1d(x, k, axis):
    r = (len(k) - 1) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = np.pad(x, pad, mode="symmetric")  # == scipy.ndimage mode='reflect'
    out = np.zeros_like(x)
    n = x.shape[axis]
    for i, w in enumerate(k):
        out += w * np.take(xp, range(i, i + n), axis=axis)
    return out


def ssim_channel(a, b, gaussian):
    if gaussian:
        xs = np.arange(-5, 6, dtype=np.float64)
        k = np.exp(-0.5 * xs * xs / 1.5 ** 2)
        k /= k.sum()
        cov_norm = 1.0  # use_sample_covariance=False (Wang et al.)
    else:
        k = np.full(7, 1.0 / 7.0)
        cov_norm = 49.0 / 48.0
    win = len(k)
    f = lambda z: filter1d(filter1d(z, k, 0), k, 1)
    ux, uy = f(a), f(b)
    vx = cov_norm * (f(a * a) - ux * ux)
    vy = cov_norm * (f(b * b) - uy * uy)
    vxy = cov_norm * (f(a * b) - ux * uy)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    p = (win - 1) // 2
    return s[p:-p, p:-p].mean(dtype=np.float64)


def main():
    a_path, b_path = sys.argv[1], sys.argv[2]
    t, h, w, c = (int(v) for v in sys.argv[3:7])
    a = np.fromfile(a_path, dtype=np.uint8).reshape(t, h, w, c).astype(np.float64)
    b = np.fromfile(b_path, dtype=np.uint8).reshape(t, h, w, c).astype(np.float64)
    eps = np.finfo(np.float32).eps
    psnr = lambda x, y: float(20 * np.log10(255.0 / (np.sqrt(((x - y) ** 2).mean()) + eps)))
    out = {
        "psnr": psnr(a, b),
        "psnr_per_frame": [psnr(a[i], b[i]) for i in range(t)],
        "ssim_gaussian": [float(np.mean([ssim_channel(a[i, ..., ch], b[i, ..., ch], True) for ch in range(c)]))
                          for i in range(t)],
        "ssim_uniform7": [float(np.mean([ssim_channel(a[i, ..., ch], b[i, ..., ch], False) for ch in range(c)]))
                          for i in range(t)],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
