#!/usr/bin/env python3
"""Ratio table longview / llama.cpp from compare.sh's JSON lines (standard library only).

Usage: bench/compare.py RESULTS.jsonl[:THREADS] ... [--svg OUT.svg]
Several files are merged; FILE:1,2 keeps only those thread counts from FILE (for combining a run's
one-thread columns with another run's two-thread ones when one of them was disturbed).
For every model and test (pp512, tg128, ...) and thread count: the median tokens/s of each engine
over all rounds, and the ratio. Then longview at 2 threads against llama.cpp's best of 1 and 2
threads, and decode as a fraction of the measured bandwidth limit.
"""
import json, os, statistics, sys
from collections import defaultdict

def main():
    args = sys.argv[1:]
    svg = None
    if '--svg' in args:
        i = args.index('--svg')
        svg = args[i + 1]
        del args[i:i + 2]
    specs = []
    for a in args:
        path, _, th = a.partition(':')
        specs.append((path, {int(t) for t in th.split(',')} if th else None))
    if svg is None:
        svg = os.path.splitext(specs[0][0])[0] + '.svg'
    runs = defaultdict(list)   # (model, test, threads, engine) -> [t/s]
    bw = {}
    lines = []
    for path, keep in specs:
        for line in open(path):
            line = line.strip()
            if line.startswith('{'):
                r = json.loads(line)
                if keep is None or r['n_threads'] in keep:
                    lines.append(r)
    for r in lines:
        model = os.path.basename(r['model_filename']).replace('.gguf', '')
        test = ('pp%d' % r['n_prompt']) if r['n_prompt'] else ('tg%d' % r['n_gen'])
        if r.get('n_depth'):
            test += '@d%d' % r['n_depth']
        key = (model, test, r['n_threads'], r['engine'])
        runs[key] += r['samples_ts']
        if r['engine'] == 'longview' and 'lv_bw_fraction' in r:
            bw[(model, test, r['n_threads'])] = r['lv_bw_fraction']
    med = {k: statistics.median(v) for k, v in runs.items()}
    models = sorted({k[0] for k in med})
    tests = sorted({k[1] for k in med})
    threads = sorted({k[2] for k in med})
    print('| model | test | ' + ' | '.join('t%d longview | t%d llama.cpp | t%d ratio' % (t, t, t) for t in threads) +
          ' | longview t2 / llama.cpp best | decode % of bandwidth (t2) |')
    print('| --- | --- | ' + ' | '.join('---: | ---: | ---:' for _ in threads) + ' | ---: | ---: |')
    rows = []
    for m in models:
        for t in tests:
            cells, ok = [], True
            for th in threads:
                a, b = med.get((m, t, th, 'longview')), med.get((m, t, th, 'llama.cpp'))
                cells.append('%s | %s | %s' % ('%.1f' % a if a else '-', '%.1f' % b if b else '-', '%.2f' % (a / b) if a and b else '-'))
            lv2 = med.get((m, t, 2, 'longview'))
            best = max([med.get((m, t, th, 'llama.cpp'), 0) for th in threads] or [0])
            vs = '%.2f' % (lv2 / best) if lv2 and best else '-'
            frac = bw.get((m, t, 2))
            fr = '%.0f%%' % (100 * frac) if frac and t.startswith('tg') else ''
            print('| %s | %s | %s | %s | %s |' % (m, t, ' | '.join(cells), vs, fr))
            rows.append((m, t, lv2 / best if lv2 and best else None))
    write_svg(svg, rows)
    print('\n(plot: %s)' % svg)

def write_svg(path, rows):
    rows = [r for r in rows if r[2] is not None]
    if not rows:
        return
    w, bh, left = 760, 18, 260
    h = 40 + bh * len(rows)
    mx = max(2.0, max(r[2] for r in rows) * 1.1)
    x = lambda v: left + (w - left - 20) * v / mx
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">' % (w, h),
           '<text x="10" y="16" font-size="13">longview t2 / llama.cpp best thread count (tokens/s ratio; 1.0 = parity)</text>']
    for i, (m, t, v) in enumerate(rows):
        y = 30 + i * bh
        out.append('<text x="%d" y="%d" text-anchor="end">%s %s</text>' % (left - 6, y + 12, m, t))
        out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (left, y + 2, x(v) - left, bh - 5, '#3a7' if v >= 1 else '#c54'))
        out.append('<text x="%.1f" y="%d">%.2f</text>' % (x(v) + 4, y + 12, v))
    out.append('<line x1="%.1f" y1="24" x2="%.1f" y2="%d" stroke="#333" stroke-dasharray="4,3"/>' % (x(1), x(1), h - 4))
    out.append('</svg>')
    open(path, 'w').write('\n'.join(out))

if __name__ == '__main__':
    main()
