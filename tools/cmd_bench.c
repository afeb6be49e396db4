/*
 * cmd_bench.c: `longview bench`: prompt processing (pp) and generation (tg) speed at given
 * depths and thread counts, the way llama-bench measures them, plus the memory bandwidth and FLOP
 * rate each test achieved against this machine's measured limits.
 *
 *  - pp N at depth d: the cache is first filled with d tokens (not timed), then N tokens are
 *    decoded in batches of -b (timed); tokens/s = N / time.
 *  - tg N at depth d: after the fill, N tokens are decoded one per step (timed).
 *  - every test runs -r times after one warm-up run (none with --no-warmup); mean and standard
 *    deviation of tokens/s.
 * Token ids are random, as in llama-bench. `-o json` writes one JSON object per test and line,
 * with llama-bench's field names plus ours (prefixed lv_).
 */
#define _GNU_SOURCE
#include "common/bench_limits.h"
#include "common/cli.h"
#include "commands.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* parse "1,2,3" into at most max ints within [lo, hi] */
static int parse_list(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < lo || v > hi || n == max) {
            cli_error("%s: '%s' is not a list of integers in [%lld, %lld] (at most %d)", flag, s, (long long)lo, (long long)hi, max);
            return -1;
        }
        out[n++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) {
            cli_error("%s: '%s' is not a comma-separated list", flag, s);
            return -1;
        }
    }
    if (n == 0) {
        cli_error("%s: empty list", flag);
        return -1;
    }
    return n;
}

typedef struct bench_ctx {
    lv_model *model;
    lv_context *ctx;
    lv_batch batch;
    int32_t n_vocab;
    int64_t n_batch;
    uint64_t rng;
} bench_ctx;

static lv_token rand_tok(bench_ctx *b) {
    b->rng = b->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (lv_token)((b->rng >> 33) % (uint64_t)b->n_vocab);
}

/* decode n tokens at positions pos0.. in batches of `chunk` (logits of the last one only) */
static lv_status feed(bench_ctx *b, int64_t pos0, int64_t n, int64_t chunk) {
    for (int64_t i0 = 0; i0 < n; i0 += chunk) {
        const int64_t m = n - i0 < chunk ? n - i0 : chunk;
        b->batch.n_tokens = (int32_t)m;
        for (int64_t i = 0; i < m; i++) {
            b->batch.token[i] = rand_tok(b);
            b->batch.pos[i] = (lv_pos)(pos0 + i0 + i);
            b->batch.seq_id[i] = 0;
            b->batch.logits[i] = i == m - 1;
        }
        lv_status st = lv_decode(b->ctx, &b->batch);
        if (st != LV_OK) return st;
    }
    return LV_OK;
}

typedef struct result {
    const char *test; /* "pp" or "tg" */
    int64_t n_prompt, n_gen, n_depth, n_threads;
    int reps;
    double samples_ns[64];
    double avg_ts, stddev_ts, avg_ns, stddev_ns;
    double gbs, gflops;    /* achieved */
    int64_t kv_bytes;      /* KV cache bytes held at the end of the last run */
    double bw_frac, flop_frac;
} result;

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *p_list = "512", *n_list = "128", *d_list = "0", *t_list = NULL, *out_fmt = "md", *fill = "prefill";
    cli_kv kvo = {.both = "f16"};
    int64_t reps = 5, n_batch = 512, verbose = 0;
    bool no_limits = false, no_warmup = false;
    cli_attention att;
    cli_opt base[] = {
        {"-m", "--model", CLI_STR, &model_path, "FILE", "GGUF model", .required = true},
        {"-p", "--n-prompt", CLI_STR, &p_list, "N[,N]", "prompt tokens per pp test (default 512; 0 = none)"},
        {"-n", "--n-gen", CLI_STR, &n_list, "N[,N]", "generated tokens per tg test (default 128; 0 = none)"},
        {"-d", "--n-depth", CLI_STR, &d_list, "N[,N]", "tokens already in the cache before each test (default 0)"},
        {"-t", "--threads", CLI_STR, &t_list, "N[,N]", "threads (default: all cores)"},
        {"-r", "--repetitions", CLI_INT, &reps, "N", "timed runs per test after one warm-up (default 5)", .lo = 1, .hi = 64},
        {"-b", "--batch-size", CLI_INT, &n_batch, "N", "prefill batch (default 512)", .lo = 1, .hi = 1 << 16},
        CLI_KV_OPTS(kvo, "f16"),
        {NULL, "--fill", CLI_STR, &fill, "HOW", "how the depth is filled: prefill (default: random tokens through the model) or synthetic\n"
                                              "(random keys and values written straight to the cache: seconds instead of minutes at 128k;\n"
                                              "tg speed is the same, pp at depth is not meaningful with it)"},
        {"-o", "--output", CLI_STR, &out_fmt, "md|json", "markdown table (default) or one JSON object per line"},
        {NULL, "--no-limits", CLI_FLAG, &no_limits, NULL, "skip measuring the machine's bandwidth and FMA limits"},
        {NULL, "--no-warmup", CLI_FLAG, &no_warmup, NULL, "skip the warm-up run before each test (as llama-bench's flag)"},
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    const int nb = (int)(sizeof(base) / sizeof(base[0]));
    cli_opt opts[sizeof(base) / sizeof(base[0]) + CLI_ATTENTION_N_OPTS];
    memcpy(opts, base, sizeof(base));
    const int n_opts = nb + cli_attention_opts(&att, opts + nb);
    int r = cli_parse(argc, argv, opts, n_opts,
                      "longview bench -m MODEL [-p 512] [-n 128] [-d 0,4096] [-t 1,2] [-r 5] [-o md|json]",
                      "Measure prompt processing (pp) and generation (tg) speed like llama-bench, with the memory\n"
                      "bandwidth and FLOP rate each test reached against this machine's measured limits (a read of a\n"
                      "large buffer, and f32 FMA throughput, on the same threads). The FLOP rate counts 2 per weight\n"
                      "and token plus attention, nominally: quantized weights are multiplied with integer dot products\n"
                      "(AVX2 madd, AVX-512 VNNI), which do 2-4 times the multiply-adds of an f32 FMA per instruction, so\n"
                      "% FMA can pass 100% on a quantized prefill without breaking any limit; likewise % BW passes 100%\n"
                      "when the weights fit in the caches (a small model).\n"
                      "Results go to stdout as each test ends; progress (which test, fill, run k of N) to stderr.\n"
                      "Set LV_SIMD=scalar|avx2|avx512 to cap the kernels' instruction set, and LV_REPACK=0 to keep\n"
                      "q4_0/q5_0/q8_0/q4_K weights in the file's layout (they are repacked at load for the AVX-512\n"
                      "VNNI kernels otherwise).",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    if (strcmp(fill, "prefill") != 0 && strcmp(fill, "synthetic") != 0) {
        cli_error("--fill: '%s' is not prefill or synthetic", fill);
        return 2;
    }
    const bool synthetic = strcmp(fill, "synthetic") == 0;
    cli_set_verbosity(verbose);
    const bool json = strcmp(out_fmt, "json") == 0;
    if (!json && strcmp(out_fmt, "md") != 0) {
        cli_error("-o: '%s' is not md or json", out_fmt);
        return 2;
    }
    lv_kv_type kvt, kvt_v;
    if (cli_kv_types(&kvo, &kvt, &kvt_v) != 0) return 2;
    int64_t ps[16], ns[16], ds[16], ts[16];
    char tdef[16];
    snprintf(tdef, sizeof(tdef), "%d", lv_n_cores());
    int np = parse_list("-p", p_list, 0, 1 << 20, ps, 16), nn = parse_list("-n", n_list, 0, 1 << 20, ns, 16);
    int nd = parse_list("-d", d_list, 0, 1 << 30, ds, 16), nt = parse_list("-t", t_list ? t_list : tdef, 1, 512, ts, 16);
    if (np < 0 || nn < 0 || nd < 0 || nt < 0) return 2;

    lv_attention_params attp;
    if (cli_attention_params(&att, &attp) != 0) return 2;
    lv_model *model = NULL;
    lv_status st = lv_model_load(model_path, lv_model_default_params(), &model);
    if (st != LV_OK) {
        cli_attention_free(&att);
        return cli_fail("loading the model", st);
    }
    lv_model_stats ms;
    lv_model_get_stats(model, &ms);
    const double kv_bytes_tok = (double)ms.n_layer * ms.n_head_kv * (ms.head_dim_k * cli_kv_elt_bytes(kvt) + ms.head_dim_v * cli_kv_elt_bytes(kvt_v));
    char kv[32]; /* the table's kv column: one type, or keys/values */
    snprintf(kv, sizeof(kv), "%s%s%s", lv_kv_type_name(kvt), kvt == kvt_v ? "" : "/", kvt == kvt_v ? "" : lv_kv_type_name(kvt_v));
    char model_type[64];
    snprintf(model_type, sizeof(model_type), "%s %.0fM %s", lv_model_arch(model), (double)ms.n_params / 1e6, ms.ftype);
    const char *simd = getenv("LV_SIMD") ? getenv("LV_SIMD") : "auto";

    if (!json) {
        printf("| model | size | params | threads | kv | test | t/s | GB/s | %% BW | GFLOP/s | %% FMA |\n");
        printf("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        fflush(stdout);
    }
    int rc = 0;
    int n_tests = 0, test_no = 0;
    for (int ii = 0; ii < np; ii++) n_tests += ps[ii] > 0;
    for (int ii = 0; ii < nn; ii++) n_tests += ns[ii] > 0;
    n_tests *= nd * nt;
    for (int it = 0; it < nt && rc == 0; it++) {
        bench_limits lim = {0};
        if (!no_limits) {
            fprintf(stderr, "bench: measuring this machine's read bandwidth and FMA rate with %lld threads (about 1.5 s)\n", (long long)ts[it]);
            bench_measure_limits((int)ts[it], &lim);
        }
        lv_threadpool *tp = lv_threadpool_create((int)ts[it]);
        if (!tp) {
            rc = cli_fail("thread pool", LV_ERR_NOMEM);
            break;
        }
        for (int id = 0; id < nd && rc == 0; id++) {
            /* tests at this depth: every pp, then every tg */
            for (int kind = 0; kind < 2 && rc == 0; kind++) {
                const int cnt = kind == 0 ? np : nn;
                for (int ii = 0; ii < cnt && rc == 0; ii++) {
                    const int64_t n = kind == 0 ? ps[ii] : ns[ii];
                    if (n == 0) continue;
                    const int64_t d = ds[id];
                    bench_ctx b = {.model = model, .n_vocab = lv_model_n_vocab(model), .n_batch = n_batch, .rng = 0x1234567ull + (uint64_t)n};
                    lv_context_params cp = lv_context_default_params();
                    cp.n_ctx = (uint32_t)(d + n + 16);
                    cp.n_batch = cp.n_ubatch = (uint32_t)n_batch;
                    cp.kv_type = kvt;
    cp.kv_type_v = kvt_v;
                    cp.threadpool = tp;
                    cp.attention = attp;
                    if ((st = lv_context_create(model, cp, &b.ctx)) != LV_OK) {
                        rc = cli_fail("creating the context", st);
                        break;
                    }
                    b.batch = lv_batch_init((int32_t)n_batch);
                    result res = {.test = kind == 0 ? "pp" : "tg", .n_prompt = kind == 0 ? n : 0, .n_gen = kind == 1 ? n : 0,
                                  .n_depth = d, .n_threads = ts[it], .reps = (int)reps};
                    char label[96], detail[64], at[32] = "";
                    if (d > 0) snprintf(at, sizeof(at), " @ d%lld", (long long)d);
                    snprintf(label, sizeof(label), "bench %d/%d: %s%lld%s, %lld threads", ++test_no, n_tests, res.test, (long long)n, at,
                             (long long)ts[it]);
                    cli_progress prog;
                    cli_progress_start(&prog, label);
                    const int first_rep = no_warmup ? 0 : -1, n_runs = (int)reps - first_rep;
                    for (int rep = first_rep; rep < reps && rc == 0; rep++) { /* rep -1: warm-up */
                        lv_kv_seq_rm(b.ctx, -1, 0, -1);
                        if (d > 0) {
                            snprintf(detail, sizeof(detail), "%s: filling %lld tokens", rep < 0 ? "warm-up" : "run", (long long)d);
                            cli_progress_update(&prog, (double)(rep - first_rep) / n_runs, detail);
                        }
                        if (d > 0 && (st = synthetic ? lv_context_fill_synthetic(b.ctx, 0, (int32_t)d, (uint64_t)rep + 2)
                                                     : feed(&b, 0, d, n_batch)) != LV_OK) {
                            rc = cli_fail("filling the cache", st);
                            break;
                        }
                        if (rep < 0) snprintf(detail, sizeof(detail), "warm-up");
                        else snprintf(detail, sizeof(detail), "run %d of %lld", rep + 1, (long long)reps);
                        cli_progress_update(&prog, (double)(rep - first_rep) / n_runs, detail);
                        const double t0 = cli_now_s();
                        st = kind == 0 ? feed(&b, d, n, n_batch) : feed(&b, d, n, 1);
                        const double dt = cli_now_s() - t0;
                        if (st != LV_OK) {
                            rc = cli_fail("decode", st);
                            break;
                        }
                        if (rep >= 0) res.samples_ns[rep] = dt * 1e9;
                    }
                    cli_progress_done(&prog, rc ? "failed" : NULL);
                    res.kv_bytes = lv_kv_used_bytes(b.ctx);
                    lv_batch_free(&b.batch);
                    lv_context_free(b.ctx);
                    if (rc) break;
                    /* statistics over tokens/s, as llama-bench */
                    double sum = 0, sumsq = 0, sum_ns = 0, sumsq_ns = 0;
                    for (int k = 0; k < reps; k++) {
                        const double tps = (double)n * 1e9 / res.samples_ns[k];
                        sum += tps;
                        sumsq += tps * tps;
                        sum_ns += res.samples_ns[k];
                        sumsq_ns += res.samples_ns[k] * res.samples_ns[k];
                    }
                    res.avg_ts = sum / reps;
                    res.stddev_ts = reps > 1 ? sqrt(fmax(0, (sumsq - sum * sum / reps) / (reps - 1))) : 0;
                    res.avg_ns = sum_ns / reps;
                    res.stddev_ns = reps > 1 ? sqrt(fmax(0, (sumsq_ns - sum_ns * sum_ns / reps) / (reps - 1))) : 0;
                    /* bytes and FLOPs per token: weights, and the KV read at the average context of the test */
                    const double avg_ctx = (double)d + (double)n / 2.0;
                    const double attn_flop = 4.0 * ms.n_layer * ms.n_head * ms.head_dim_k * avg_ctx;
                    const double flop_tok = 2.0 * (double)ms.n_params_matmul + attn_flop;
                    if (kind == 1) {
                        const double bytes_tok = (double)ms.n_bytes_matmul + kv_bytes_tok * avg_ctx;
                        res.gbs = bytes_tok * res.avg_ts / 1e9;
                    } else {
                        /* a pp step reads the weights once per batch (bytes per ns = GB/s) */
                        const double batches = ceil((double)n / (double)n_batch);
                        res.gbs = ((double)ms.n_bytes_matmul * batches + kv_bytes_tok * avg_ctx * (double)n) / res.avg_ns;
                    }
                    res.gflops = flop_tok * res.avg_ts / 1e9;
                    res.bw_frac = lim.read_gbs > 0 ? res.gbs / lim.read_gbs : 0;
                    res.flop_frac = lim.fma_gflops > 0 ? res.gflops / lim.fma_gflops : 0;
                    char test[64];
                    snprintf(test, sizeof(test), "%s%lld%s", res.test, (long long)n, "");
                    if (d > 0) snprintf(test + strlen(test), sizeof(test) - strlen(test), " @ d%lld", (long long)d);
                    if (!json) {
                        printf("| %s | %.2f MiB | %.2f M | %lld | %s | %s | %.2f ± %.2f | %.1f | %.0f%% | %.1f | %.0f%% |\n", model_type,
                               (double)ms.n_bytes / (1024.0 * 1024.0), (double)ms.n_params / 1e6, (long long)ts[it], kv, test, res.avg_ts,
                               res.stddev_ts, res.gbs, 100 * res.bw_frac, res.gflops, 100 * res.flop_frac);
                    } else {
                        json_t *o = json_object();
                        char tbuf[64];
                        time_t now = time(NULL);
                        strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
                        json_object_set_new(o, "build_commit", json_string("longview-" LV_VERSION_STRING));
                        json_object_set_new(o, "build_number", json_integer(0));
                        json_object_set_new(o, "cpu_info", json_string(""));
                        json_object_set_new(o, "gpu_info", json_string(""));
                        json_object_set_new(o, "backends", json_string("CPU"));
                        json_object_set_new(o, "model_filename", json_string(model_path));
                        json_object_set_new(o, "model_type", json_string(model_type));
                        json_object_set_new(o, "model_size", json_integer(ms.n_bytes));
                        json_object_set_new(o, "model_n_params", json_integer(ms.n_params));
                        json_object_set_new(o, "n_batch", json_integer(n_batch));
                        json_object_set_new(o, "n_ubatch", json_integer(n_batch));
                        json_object_set_new(o, "n_threads", json_integer(ts[it]));
                        json_object_set_new(o, "type_k", json_string(lv_kv_type_name(kvt)));
                        json_object_set_new(o, "type_v", json_string(lv_kv_type_name(kvt_v)));
                        json_object_set_new(o, "n_gpu_layers", json_integer(0));
                        json_object_set_new(o, "flash_attn", json_boolean(1));
                        json_object_set_new(o, "use_mmap", json_boolean(1));
                        json_object_set_new(o, "embeddings", json_boolean(0));
                        json_object_set_new(o, "n_prompt", json_integer(res.n_prompt));
                        json_object_set_new(o, "n_gen", json_integer(res.n_gen));
                        json_object_set_new(o, "n_depth", json_integer(res.n_depth));
                        json_object_set_new(o, "lv_fill", json_string(fill));
                        json_object_set_new(o, "test_time", json_string(tbuf));
                        json_object_set_new(o, "avg_ns", json_integer((json_int_t)res.avg_ns));
                        json_object_set_new(o, "stddev_ns", json_integer((json_int_t)res.stddev_ns));
                        json_object_set_new(o, "avg_ts", json_real(res.avg_ts));
                        json_object_set_new(o, "stddev_ts", json_real(res.stddev_ts));
                        json_t *sns = json_array(), *sts = json_array();
                        for (int k = 0; k < reps; k++) {
                            json_array_append_new(sns, json_integer((json_int_t)res.samples_ns[k]));
                            json_array_append_new(sts, json_real((double)n * 1e9 / res.samples_ns[k]));
                        }
                        json_object_set_new(o, "samples_ns", sns);
                        json_object_set_new(o, "samples_ts", sts);
                        json_object_set_new(o, "lv_simd", json_string(simd));
                        json_object_set_new(o, "lv_gbs", json_real(res.gbs));
                        json_object_set_new(o, "lv_gflops", json_real(res.gflops));
                        json_object_set_new(o, "lv_limit_read_gbs", json_real(lim.read_gbs));
                        json_object_set_new(o, "lv_limit_fma_gflops", json_real(lim.fma_gflops));
                        json_object_set_new(o, "lv_bw_fraction", json_real(res.bw_frac));
                        json_object_set_new(o, "lv_kv_bytes", json_integer(res.kv_bytes));
                        json_object_set_new(o, "lv_flop_fraction", json_real(res.flop_frac));
                        char *txt = json_dumps(o, JSON_COMPACT);
                        if (txt) printf("%s\n", txt);
                        free(txt);
                        json_decref(o);
                    }
                    fflush(stdout);
                }
            }
        }
        if (!json && !no_limits)
            fprintf(stderr, "limits with %lld threads (measured): read %.1f GB/s, f32 FMA %.0f GFLOP/s\n", (long long)ts[it], lim.read_gbs,
                    lim.fma_gflops);
        lv_threadpool_free(tp);
    }
    lv_model_free(model);
    cli_attention_free(&att);
    return rc;
}
