#!/usr/bin/env python3
"""Writes tests/golden/tokenizer/vocab-gemma4.gguf: a small synthetic vocabulary of the `gemma4`
tokenizer type (tokenizer.ggml.model = "gemma4"), so that longview's implementation of it can be
checked against llama.cpp without downloading Gemma 4 (scripts/gen-tokenizer-golden.sh runs the
oracle on it; the file is committed with the goldens, about 100 KB).

What makes it a gemma4 vocabulary, as llama.cpp v0.4.0 reads one (src/llama-vocab.cpp):
  - BPE over raw UTF-8 (no GPT-2 byte-to-character mapping): token texts and merges are plain
    UTF-8 with U+2581 (the lower one-eighth block) standing for a space;
  - 256 byte tokens <0x00>..<0xFF> (type BYTE) that a piece outside the vocabulary falls back to;
  - control tokens <pad> <eos> <bos> <unk> and Gemma 4's turn markers; add_bos_token is false
    here on purpose: llama.cpp forces it to true for gemma4 and longview must do the same;
  - newline runs "\\n", "\\n\\n" and "\\n\\n\\n\\n" as whole tokens (llama.cpp looks a word made only
    of newlines up directly).
The merges are learned by plain BPE (most frequent pair first) over the words of
../shared/data/haystack's essays, a word being a run of characters with its leading U+2581s, so
the ranks are those of a real, if small, tokenizer. Deterministic: same corpus, same file.

  scripts/gen-gemma4-vocab.py [--merges N] [OUT.gguf]
"""
import collections
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("LV_SHARED_DATA", os.path.join(HERE, "..", "..", "shared", "data"))
N_MERGES = 3000
out = os.path.join(HERE, "..", "tests", "golden", "tokenizer", "vocab-gemma4.gguf")
args = sys.argv[1:]
while args:
    a = args.pop(0)
    if a == "--merges":
        N_MERGES = int(args.pop(0))
    else:
        out = a

SP = "\u2581"
corpus_dir = os.path.join(SHARED, "haystack", "paul-graham-essays")
files = sorted(f for f in os.listdir(corpus_dir) if f.endswith(".txt"))
text = "".join(open(os.path.join(corpus_dir, f), encoding="utf-8").read() for f in files[:40])

# ---- words and their counts ----
words = collections.Counter()
for line in text.replace(" ", SP).split("\n"):
    for w in re.findall(SP + "*[^" + SP + "]+|" + SP + "+", line):
        words[w] += 1
chars = sorted({c for w in words for c in w})

# ---- BPE training with incremental pair counts ----
seqs = {w: list(w) for w in words}
pairs = collections.Counter()
where = collections.defaultdict(set)
for w, s in seqs.items():
    for a, b in zip(s, s[1:]):
        pairs[(a, b)] += words[w]
        where[(a, b)].add(w)
merges = []
while len(merges) < N_MERGES and pairs:
    best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))  # ties: the larger pair, deterministic
    (a, b), n = best
    if n < 2:
        break
    merges.append((a, b))
    for w in list(where[(a, b)]):
        s = seqs[w]
        for x, y in zip(s, s[1:]):
            pairs[(x, y)] -= words[w]
            if pairs[(x, y)] <= 0:
                del pairs[(x, y)]
        i, t = 0, []
        while i < len(s):
            if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                t.append(a + b)
                i += 2
            else:
                t.append(s[i])
                i += 1
        seqs[w] = t
        for x, y in zip(t, t[1:]):
            pairs[(x, y)] += words[w]
            where[(x, y)].add(w)
    del where[(a, b)]
    pairs.pop((a, b), None)

# ---- the vocabulary ----
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6
tokens, types = [], []
def add(t, ty):
    tokens.append(t)
    types.append(ty)
for t in ["<pad>", "<eos>", "<bos>", "<unk>"]:
    add(t, UNKNOWN if t == "<unk>" else CONTROL)
for t in ["<|turn>", "<turn|>", "<|tool_response>", "<mask>"]:
    add(t, CONTROL)
for b in range(256):
    add("<0x%02X>" % b, BYTE)
for t in ["\n", "\n\n", "\n\n\n\n"]:
    add(t, NORMAL)
seen = set(tokens)
for c in chars:
    if c not in seen:
        add(c, NORMAL)
        seen.add(c)
for a, b in merges:
    if a + b not in seen:
        add(a + b, NORMAL)
        seen.add(a + b)

# ---- GGUF v3, metadata only ----
def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b
kv = []
def put(key, vtype, payload):
    kv.append(gstr(key) + struct.pack("<I", vtype) + payload)
U32, I32, F32, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9
put("general.architecture", STR, gstr("llama"))  # any architecture llama.cpp reads; the tokenizer is what counts
put("general.name", STR, gstr("longview synthetic gemma4 vocabulary"))
for k, v in [("block_count", 1), ("context_length", 4096), ("embedding_length", 64), ("feed_forward_length", 128),
             ("attention.head_count", 2)]:
    put("llama." + k, U32, struct.pack("<I", v))
put("llama.attention.layer_norm_rms_epsilon", F32, struct.pack("<f", 1e-6))
put("tokenizer.ggml.model", STR, gstr("gemma4"))
put("tokenizer.ggml.pre", STR, gstr("gemma4"))
put("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, len(tokens)) + b"".join(gstr(t) for t in tokens))
put("tokenizer.ggml.token_type", ARR, struct.pack("<IQ", I32, len(types)) + struct.pack("<%di" % len(types), *types))
put("tokenizer.ggml.merges", ARR, struct.pack("<IQ", STR, len(merges)) + b"".join(gstr(a + " " + b) for a, b in merges))
for k, v in [("bos_token_id", 2), ("eos_token_id", 1), ("unknown_token_id", 3), ("padding_token_id", 0)]:
    put("tokenizer.ggml." + k, U32, struct.pack("<I", v))
put("tokenizer.ggml.add_bos_token", BOOL, b"\x00")
put("tokenizer.ggml.add_eos_token", BOOL, b"\x00")
data = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv)
tmp = out + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, out)
print("gen-gemma4-vocab: %s: %d tokens, %d merges, %d bytes" % (out, len(tokens), len(merges), len(data)))
