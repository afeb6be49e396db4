#!/usr/bin/env python3
"""Turns build/bench/video/results.tsv (written by bench/video/run.sh) into the markdown of
bench/video/RESULTS.md: medians, spread, ratios against ffmpeg, and the exact commands."""
import os
import statistics
import subprocess
import sys
import time

tsv, reps = sys.argv[1], sys.argv[2]
times, cpus, exact = {}, {}, {}
for line in open(tsv):
    f = line.rstrip("\n").split("\t")
    if f[1] == "time":
        times.setdefault((f[0], f[2]), []).append(float(f[3]))
        if len(f) > 4:
            cpus.setdefault((f[0], f[2]), []).append(float(f[4]))
    else:
        exact[(f[0], f[2])] = f[3]

clips = []
for (c, _) in times:
    if c not in clips:
        clips.append(c)

def cpu():
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            return l.split(":", 1)[1].strip()
    return "?"

def med(c, j):
    return statistics.median(times[(c, j)])

def spread(c, j):
    v = times[(c, j)]
    return f"{min(v):.2f}-{max(v):.2f}"

commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print("# Video decode benchmark: sampled frames, 1 fps at 384x384 RGB24")
print()
print(f"Measured {time.strftime('%Y-%m-%d')} at commit {commit} on {os.cpu_count()} cores ({cpu()}), "
      f"{reps} interleaved rounds per clip (order rotated each round); wall-clock seconds, median and "
      "[min-max]. The machine is shared: compare ratios within a row, not absolute times across runs.")
print()
print("| clip | ffmpeg -threads 1 | longview -j 1 | speed-up (1 thread) | ffmpeg -threads 2 | longview -j 2 | speed-up (2 threads) | identical frames |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for c in clips:
    f1, l1, f2, l2 = med(c, "ff-t1"), med(c, "lv-t1"), med(c, "ff-t2"), med(c, "lv-t2")
    same = ", ".join(f"-j{j[1:]}: {exact.get((c, j), '?')}" for j in ("j1", "j2"))
    print(f"| {c} | {f1:.2f} [{spread(c, 'ff-t1')}] | {l1:.2f} [{spread(c, 'lv-t1')}] | **{f1 / l1:.2f}x** "
          f"| {f2:.2f} [{spread(c, 'ff-t2')}] | {l2:.2f} [{spread(c, 'lv-t2')}] | **{f2 / l2:.2f}x** | {same} |")
print()
print("Targets (issue 6): at least 1.4x against `ffmpeg -threads 1` on one thread and 1.5x against "
      "`ffmpeg -threads 2` on two threads, with identical frames. Own scaling (longview -j1 / -j2): " +
      ", ".join(f"{c.split('.')[0]} {med(c, 'lv-t1') / med(c, 'lv-t2'):.2f}x" for c in clips) + ".")
print()
if cpus:
    print("CPU seconds (user + sys, median): the work each job does, which a busy machine disturbs much less "
          "than the wall clock. The ratio is the work longview saves; `-threads 2` shows ffmpeg's threading overhead.")
    print()
    print("| clip | ffmpeg -threads 1 | longview -j 1 | work ratio | ffmpeg -threads 2 | longview -j 2 | work ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c in clips:
        m = {j: statistics.median(cpus[(c, j)]) for j in ("ff-t1", "lv-t1", "ff-t2", "lv-t2")}
        print(f"| {c} | {m['ff-t1']:.2f} | {m['lv-t1']:.2f} | {m['ff-t1'] / m['lv-t1']:.2f}x | {m['ff-t2']:.2f} "
              f"| {m['lv-t2']:.2f} | {m['ff-t2'] / m['lv-t2']:.2f}x |")
    print()
    print("Parallel efficiency (CPU seconds / wall seconds with 2 threads): " + ", ".join(
        f"{c.split('.')[0]} ffmpeg {statistics.median(cpus[(c, 'ff-t2')]) / med(c, 'ff-t2'):.2f}, "
        f"longview {statistics.median(cpus[(c, 'lv-t2')]) / med(c, 'lv-t2'):.2f}" for c in clips) + " (2.00 is perfect).")
    print()
print("Commands (from the repository root; `bench/video/run.sh` runs all of this):")
print()
print("```")
print("bench/video/make_clips.sh build/bench/video        # once: synthesizes the clips")
print("ffmpeg -hide_banner -loglevel error -nostdin -y -threads T -i CLIP -vf fps=1,scale=384:384 -pix_fmt rgb24 -f rawvideo OUT")
print("build/release/longview video-frames -i CLIP --fps 1 --size 384x384 -j T -q -o OUT")
print("```")
print()
print("Exactness is checked with OUT = a file (`cmp` against ffmpeg -threads 1); timed runs write to /dev/null. "
      "See NOTES.md for what limits the speed and the scaling.")
print()
print("Scaling with more cores (longview -j N and ffmpeg -threads N up to 16, measured on a lent 16-core "
      "machine): SCALING.md.")
