#!/usr/bin/env python3
"""Tables from bench/longctx.sh's JSON lines (standard library only). Prefill tokens/s of a
DEPTH-token prompt = DEPTH / (the run's wall-clock time - n_gen / decode tokens/s).

Usage: bench/longctx.py RESULTS.jsonl ...   (several runs are merged)
Per model and depth: prefill tokens/s of a depth-token prompt and decode tokens/s at that depth,
llama.cpp (its best thread count for decode) and longview in each mode, with the ratio
longview / llama.cpp; then KV MiB at that depth when longview reported it.
"""
import json, os, statistics, sys
from collections import defaultdict

def main():
    runs = defaultdict(list)  # (model, kind, depth, engine, mode, threads) -> [t/s]
    kv = {}
    for line in (l for path in sys.argv[1:] for l in open(path)):
        line = line.strip()
        if not line.startswith('{'):
            continue
        r = json.loads(line)
        model = os.path.basename(r['model_filename']).replace('.gguf', '')
        depth = r.get('n_depth', 0)
        tg = statistics.median(r['samples_ts'])
        key = (model, depth, r['engine'], r.get('mode', 'dense'), r['n_threads'])
        runs[('decode',) + key].append(tg)
        fill_s = r['wall_s'] - r['n_gen'] / tg
        if depth and fill_s > 0:
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
    modes = ['dense', 'duo', 'duo+lserve']
    models = sorted({k[0] for k in best})
    for model in models:
        for kind in ('prefill', 'decode'):
            depths = sorted({k[2] for k in best if k[0] == model and k[1] == kind})
            print('\n%s, %s tokens/s (%s):\n' % (model, kind, 'a prompt of DEPTH tokens' if kind == 'prefill' else 'one token at a time after DEPTH tokens'))
            print('| depth | llama.cpp (threads) | ' + ' | '.join('longview %s | ratio' % m for m in modes) + (' | KV MiB dense / duo / duo+lserve |' if kind == 'decode' else ' |'))
            print('| ---: | ---: | ' + ' | '.join('---: | ---:' for _ in modes) + (' | ---: |' if kind == 'decode' else ' |'))
            for d in depths:
                ll = best.get((model, kind, d, 'llama.cpp', 'dense'), 0)
                row = '| %d | %s | ' % (d, ('%.1f (%d)' % (ll, thr[(model, kind, d, 'llama.cpp', 'dense')])) if ll else '-')
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
