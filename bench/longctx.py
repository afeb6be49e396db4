#!/usr/bin/env python3
"""Tables from bench/longctx.sh's JSON lines (standard library only). Prefill tokens/s of a
DEPTH-token prompt = DEPTH / (the run's wall-clock time - n_gen / decode tokens/s).

Usage: bench/longctx.py [--fit] [--synthetic | --prefill] RESULTS.jsonl ...   (several runs are merged)
--synthetic / --prefill: only longview's runs whose depth was filled that way.
Runs whose depth was filled synthetically (longview bench --fill synthetic) give decode only.
--fit: at depths beyond those llama.cpp ran, its decode speed from a least-squares line through its
measured time per token against depth (decode reads the whole cache: time = a + b * depth),
marked "fit" in the table.
Per model and depth: prefill tokens/s of a depth-token prompt and decode tokens/s at that depth,
llama.cpp (its best thread count for decode) and longview in each mode, with the ratio
longview / llama.cpp; then KV MiB at that depth when longview reported it.
"""
import json, os, statistics, sys
from collections import defaultdict

def main():
    runs = defaultdict(list)  # (model, kind, depth, engine, mode, threads) -> [t/s]
    kv = {}
    args = sys.argv[1:]
    fit = '--fit' in args
    only = None  # --synthetic / --prefill: longview rows of that fill only (llama.cpp rows always)
    if '--synthetic' in args:
        only = 'synthetic'
    if '--prefill' in args:
        only = 'prefill'
    args = [a for a in args if a not in ('--fit', '--synthetic', '--prefill')]
    for line in (l for path in args for l in open(path)):
        line = line.strip()
        if not line.startswith('{'):
            continue
        r = json.loads(line)
        if only and r['engine'] == 'longview' and r.get('lv_fill', 'prefill') != only:
            continue
        model = os.path.basename(r['model_filename']).replace('.gguf', '')
        depth = r.get('n_depth', 0)
        tg = statistics.median(r['samples_ts'])
        key = (model, depth, r['engine'], r.get('mode', 'dense'), r['n_threads'])
        runs[('decode',) + key].append(tg)
        fill_s = r['wall_s'] - r['n_gen'] / tg
        if depth and fill_s > 0 and r.get('lv_fill', 'prefill') == 'prefill':
            runs[('prefill',) + key].append(depth / fill_s)
        kind = 'decode'
        if r['engine'] == 'longview' and kind == 'decode' and 'lv_kv_bytes' in r:
            kv[(model, depth, r.get('mode'))] = r['lv_kv_bytes'] / 2**20
    best = defaultdict(float)  # (model, kind, depth, engine, mode) -> best over threads of the median
    thr = {}
    for (kind, model, depth, eng, mode, t), v in runs.items():
        m = statistics.median(v)
        k = (model, kind, depth, eng, mode)
        if m > best[k]:
            best[k], thr[k] = m, t
    fitted = {}  # (model, depth) -> llama.cpp decode t/s from the line
    if fit:
        for model in {k[0] for k in best}:
            pts = [(k[2], 1.0 / v) for k, v in best.items() if k[0] == model and k[1] == 'decode' and k[3] == 'llama.cpp' and k[2] > 0]
            if len(pts) < 2:
                continue
            n = len(pts)
            mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
            b = sum((p[0] - mx) * (p[1] - my) for p in pts) / sum((p[0] - mx) ** 2 for p in pts)
            a = my - b * mx
            dmax = max(p[0] for p in pts)
            for k in list(best):
                if k[0] == model and k[1] == 'decode' and k[2] > dmax:
                    fitted[(model, k[2])] = 1.0 / (a + b * k[2])
    modes = [m for m in ['dense', 'duo', 'duo+lserve', 'duo+lserve-shared'] if any(k[3] == 'longview' and k[4] == m for k in best)]
    models = sorted({k[0] for k in best})
    for model in models:
        for kind in ('prefill', 'decode'):
            depths = sorted({k[2] for k in best if k[0] == model and k[1] == kind})
            print('\n%s, %s tokens/s (%s):\n' % (model, kind, 'a prompt of DEPTH tokens' if kind == 'prefill' else 'one token at a time after DEPTH tokens'))
            print('| depth | llama.cpp (threads) | ' + ' | '.join('longview %s | ratio' % m for m in modes) + (' | KV MiB %s |' % ' / '.join(modes) if kind == 'decode' else ' |'))
            print('| ---: | ---: | ' + ' | '.join('---: | ---:' for _ in modes) + (' | ---: |' if kind == 'decode' else ' |'))
            for d in depths:
                ll = best.get((model, kind, d, 'llama.cpp', 'dense'), 0)
                if ll:
                    shown = '%.1f (%d)' % (ll, thr[(model, kind, d, 'llama.cpp', 'dense')])
                elif kind == 'decode' and (model, d) in fitted:
                    ll = fitted[(model, d)]
                    shown = '%.1f (fit)' % ll
                else:
                    shown = '-'
                row = '| %d | %s | ' % (d, shown)
                cells = []
                for m in modes:
                    v = best.get((model, kind, d, 'longview', m), 0)
                    cells.append(('%.1f' % v if v else '-') + ' | ' + ('**%.2fx**' % (v / ll) if v and ll else '-'))
                row += ' | '.join(cells)
                if kind == 'decode':
                    row += ' | ' + ' / '.join('%.0f' % kv[(model, d, m)] if (model, d, m) in kv else '-' for m in modes)
                print(row + ' |')

if __name__ == '__main__':
    main()
