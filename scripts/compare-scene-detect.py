#!/usr/bin/env python3
"""Shot-transition detection: `wfm shots` versus FFmpeg's scene filter on the same stitched video.

Builds (with ffmpeg) a 25 fps video from segments of the shared clips (cityCC0, vtest, tree; different times,
crops and flips), joined alternately by hard cuts and 0.6 s linear cross-dissolves (xfade=fade), then counts
the cuts and dissolves each detector finds within +-8 frames, and its false positives.
FFmpeg: select='gt(scene,T)' for T in 0.1, 0.2, 0.3 (a frame whose scene score exceeds T is a detection).

Usage: scripts/compare-scene-detect.py [BUILD_DIR]   (needs ffmpeg on PATH; standard library only)
"""
import os
import re
import subprocess
import sys
import tempfile

FPS = 25
SEG_S = 3.0
DISSOLVE_S = 0.6
TOL = 8


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    wfm = os.path.join(build, "bin", "wfm")
    media = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "media"))
    work = tempfile.mkdtemp(prefix="scene-compare.")
    video = os.path.join(work, "stitched.mp4")
    # (file, start seconds, crop as x:y:w:h fractions, flip)
    sources = [("cityCC0.mpg", 0.2, (0, 0, 1, 1), False), ("vtest.avi", 5.0, (0, 0, 0.6, 0.7), False),
               ("tree.avi", 2.0, (0.2, 0.1, 0.6, 0.8), True), ("cityCC0.mpg", 4.8, (0.3, 0.2, 0.7, 0.8), False),
               ("vtest.avi", 40.0, (0.4, 0.3, 0.6, 0.7), True), ("tree.avi", 14.0, (0, 0, 1, 1), False),
               ("cityCC0.mpg", 1.2, (0, 0.3, 0.5, 0.7), True), ("vtest.avi", 61.0, (0.2, 0.1, 0.8, 0.9), False),
               ("tree.avi", 22.0, (0.4, 0.2, 0.6, 0.8), False), ("cityCC0.mpg", 4.6, (0, 0, 0.6, 0.6), True),
               ("vtest.avi", 20.0, (0, 0, 1, 1), True), ("tree.avi", 8.0, (0.1, 0.4, 0.6, 0.6), True)]
    inputs, chains = [], []
    for i, (name, start, (x, y, w, h), flip) in enumerate(sources):
        inputs += ["-ss", str(start), "-t", str(SEG_S), "-i", os.path.join(media, name)]
        f = (f"[{i}:v]fps={FPS},crop=iw*{w}:ih*{h}:iw*{x}:ih*{y},scale=256:144,setsar=1,format=yuv420p"
             + (",hflip" if flip else "") + f",trim=duration={SEG_S},setpts=PTS-STARTPTS,settb=AVTB[s{i}]")
        chains.append(f)
    cuts, dissolves = [], []
    length = SEG_S
    cur = "s0"
    for i in range(1, len(sources)):
        out = f"j{i}"
        if i % 2 == 1:  # hard cut
            chains.append(f"[{cur}][s{i}]concat=n=2:v=1:a=0[{out}]")
            cuts.append(round(length * FPS))
            length += SEG_S
        else:
            offset = length - DISSOLVE_S
            chains.append(f"[{cur}][s{i}]xfade=transition=fade:duration={DISSOLVE_S}:offset={offset:.3f}[{out}]")
            dissolves.append(round((offset + DISSOLVE_S / 2) * FPS))
            length += SEG_S - DISSOLVE_S
        cur = out
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", ";".join(chains), "-map", f"[{cur}]",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", video], check=True)
    print(f"video: {video}: {round(length * FPS)} frames, {len(cuts)} hard cuts, {len(dissolves)} dissolves of "
          f"{DISSOLVE_S} s; matched within +-{TOL} frames")

    def score(detections):
        used = [False] * len(detections)

        def match(truth):
            found = 0
            for t in truth:
                best = None
                for k, d in enumerate(detections):
                    if not used[k] and abs(d - t) <= TOL and (best is None or abs(d - t) < abs(detections[best] - t)):
                        best = k
                if best is not None:
                    used[best] = True
                    found += 1
            return found
        c, d = match(cuts), match(dissolves)
        return c, d, used.count(False)

    rows = []
    for thr in (0.1, 0.2, 0.3):
        r = subprocess.run(["ffmpeg", "-v", "info", "-i", video, "-vf", f"select='gt(scene,{thr})',showinfo",
                            "-f", "null", "-"], capture_output=True, text=True, check=True)
        det = [round(float(m) * FPS) for m in re.findall(r"pts_time:([0-9.]+)", r.stderr)]
        rows.append((f"ffmpeg scene > {thr}", *score(det)))
    r = subprocess.run([wfm, "shots", video, "--transitions"], capture_output=True, text=True, check=True)
    import json
    tr = json.loads(r.stdout)["transitions"]
    det = [t["start"] if t["start"] == t["end"] else (t["start"] + t["end"]) // 2 for t in tr]
    rows.append(("wfm shots", *score(det)))
    print(f"{'detector':<22}{'cuts found':>12}{'dissolves found':>17}{'false pos.':>12}")
    for name, c, d, fp in rows:
        print(f"{name:<22}{f'{c}/{len(cuts)}':>12}{f'{d}/{len(dissolves)}':>17}{fp:>12}")


if __name__ == "__main__":
    main()
