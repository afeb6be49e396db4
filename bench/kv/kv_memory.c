/*
 * kv_memory.c: KV cache memory at long contexts, measured, in each attention mode, against the
 * formula (issue 5). Fills the cache of a model shape with N tokens in steps of n_batch, as a
 * prefill does, without computing attention (memory does not depend on the values), and reports:
 *   formula   what the policies should keep (docs/long-context.md): per (layer, KV head) pool,
 *             full heads ceil(N / page) pages, sink+window heads ceil(sink / page) +
 *             ceil(window / page) + 1 pages, times the page's bytes (K, V, the 5-byte position header,
 *             LServe stats in f16; a prompt's consecutive positions store nothing per slot, kv.h);
 *   in use    the pages the cache's pools have handed out (its own accounting);
 *   peak RSS  growth of the process's resident memory over the fill (the OS's count: the cache's
 *             storage is one lazily committed mapping, so untouched capacity costs nothing).
 * Build: make bench-kv; run: build/release/kv_memory [-t f16|q8_0|q4_0] [-s SHAPE] [-m MODES] [N ...]
 * (default f16, every shape and mode, 32768 131072); -t is the cache type of keys and values (q8_0:
 * 34 bytes per 32 elements, q4_0: 18); -s one shape (smollm2-135m, qwen2.5-0.5b, llama3.2-1b);
 * -m the modes, comma separated (dense, duo, lserve, longgen); -f: the formula only, nothing filled.
 * A case whose formula is more than half of the machine's available memory (MemAvailable) is not
 * filled either: its row has the formula only (dense at 1M tokens is 22-32 GiB in f16).
 */
#include "kv/kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* MemAvailable from /proc/meminfo, bytes (-1: unknown) */
static int64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : (int64_t)kb * 1024;
}

static int64_t rss_bytes(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return (int64_t)resident * sysconf(_SC_PAGESIZE);
}

typedef struct shape { const char *name; int64_t n_layer, n_head_kv, head_dim; } shape;
enum { MODE_DENSE, MODE_DUO, MODE_DUO_LSERVE, MODE_LONGGEN, N_MODES };
static const char *mode_name[N_MODES] = {"dense", "duo 0.5", "duo 0.5 + lserve", "longgen 1/3 full"};
static const char *mode_flag[N_MODES] = {"dense", "duo", "lserve", "longgen"};

int main(int argc, char **argv) {
    const shape shapes[] = {
        {"smollm2-135m", 30, 3, 64},
        {"qwen2.5-0.5b", 24, 2, 64},
        {"llama3.2-1b", 16, 8, 64},
    };
    int64_t lens[8] = {32768, 131072};
    int n_lens = 2, a0 = 1;
    lv_kv_type kvt = LV_KV_F16;
    const char *only_shape = NULL, *modes = "dense,duo,lserve,longgen";
    bool formula_only = false;
    for (; a0 < argc && argv[a0][0] == '-'; a0 += 2) {
        if (!strcmp(argv[a0], "-f")) {
            formula_only = true;
            a0--;
        } else if (a0 + 1 >= argc) {
            fprintf(stderr, "kv_memory: %s needs a value\n", argv[a0]);
            return 2;
        } else if (!strcmp(argv[a0], "-t")) {
            if (!lv_kv_type_from_name(argv[a0 + 1], &kvt)) {
                fprintf(stderr, "kv_memory: -t %s: not a cache type\n", argv[a0 + 1]);
                return 2;
            }
        } else if (!strcmp(argv[a0], "-s")) {
            only_shape = argv[a0 + 1];
        } else if (!strcmp(argv[a0], "-m")) {
            modes = argv[a0 + 1];
        } else {
            fprintf(stderr, "usage: kv_memory [-t f16|q8_0|q4_0] [-s SHAPE] [-m dense,duo,lserve,longgen] [-f] [N ...]\n");
            return 2;
        }
    }
    const int64_t avail = mem_available();
    if (argc > a0) {
        n_lens = 0;
        for (int i = a0; i < argc && n_lens < 8; i++) lens[n_lens++] = atoll(argv[i]);
    }
    const int64_t P = 64, n_batch = 512, sink = 64, window = 256;
    float *k = calloc((size_t)64, sizeof(float)), *v = calloc((size_t)64, sizeof(float));
    printf("| model | kv | tokens | mode | formula MiB | in use MiB | peak RSS growth MiB | dense / mode |\n");
    printf("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        const shape *sh = &shapes[si];
        if (only_shape && strcmp(only_shape, sh->name)) continue;
        const int64_t n_pools = sh->n_layer * sh->n_head_kv;
        for (int li = 0; li < n_lens; li++) {
            const int64_t N = lens[li];
            double dense_mib = 0;
            for (int mode = 0; mode < N_MODES; mode++) {
                char want[64];
                snprintf(want, sizeof want, ",%s,", mode_flag[mode]);
                char have[256];
                snprintf(have, sizeof have, ",%s,", modes);
                if (!strstr(have, want)) continue;
                lv_kv_head_policy *pol = calloc((size_t)n_pools, sizeof(*pol));
                double formula = 0;
                for (int64_t l = 0; l < sh->n_layer; l++)
                    for (int64_t h = 0; h < sh->n_head_kv; h++) {
                        lv_kv_head_policy *p = &pol[l * sh->n_head_kv + h];
                        bool streaming = false;
                        if (mode == MODE_DUO || mode == MODE_DUO_LSERVE) streaming = (l * sh->n_head_kv + h) % 2 == 1; /* half of the heads */
                        if (mode == MODE_LONGGEN) streaming = !(l >= sh->n_layer / 3 && l < 2 * sh->n_layer / 3); /* middle third full */
                        p->kind = streaming ? LV_MASK_SINK_WINDOW : LV_MASK_CAUSAL;
                        p->sink = (int32_t)sink;
                        p->window = (int32_t)window;
                        p->stats = !streaming && mode == MODE_DUO_LSERVE;
                        const int64_t pages = streaming ? (sink + P - 1) / P + (window + P - 1) / P + 1 : (N + P - 1) / P;
                        formula += (double)pages * ((double)P * 2 * (double)lv_kv_row_bytes(kvt, sh->head_dim) + 5 + (p->stats ? (P + 15) / 16 * 2 * sh->head_dim * 2 : 0));
                    }
                const double mib = 1.0 / (1 << 20);
                if (formula_only || (avail > 0 && formula > 0.5 * (double)avail)) { /* asked, or would not fit: the formula alone */
                    printf("| %s | %s | %lld | %s | %.1f | (not filled) | (not filled) | |\n", sh->name, lv_kv_type_name(kvt), (long long)N, mode_name[mode],
                           formula * mib);
                    fflush(stdout);
                    free(pol);
                    continue;
                }
                lv_kv_params kp = {.n_layer = sh->n_layer, .n_head_kv = sh->n_head_kv, .head_dim_k = sh->head_dim, .head_dim_v = sh->head_dim,
                                   .page_size = P, .n_ctx = N, .n_seq_max = 1, .n_batch = n_batch, .type = kvt, .type_v = LV_KV_SAME, .policies = pol};
                const int64_t rss0 = rss_bytes();
                lv_kv *kv = NULL;
                if (lv_kv_create(&kp, &kv) != LV_OK) {
                    fprintf(stderr, "kv_memory: %s\n", lv_last_error());
                    return 1;
                }
                int64_t peak = 0;
                for (int64_t t = 0; t < N; t += n_batch) {
                    const int64_t n = N - t < n_batch ? N - t : n_batch;
                    const int32_t first = (int32_t)t, last = (int32_t)(t + n - 1);
                    if (lv_kv_reserve_pos(kv, &n, &first, &last) != LV_OK) { /* as lv_decode reserves */
                        fprintf(stderr, "kv_memory: %s\n", lv_last_error());
                        return 1;
                    }
                    for (int64_t l = 0; l < sh->n_layer; l++)
                        for (int64_t h = 0; h < sh->n_head_kv; h++)
                            for (int64_t j = 0; j < n; j++) {
                                k[0] = (float)(t + j); /* something that is not all zero */
                                lv_kv_write(kv, 0, l, h, j, k, v, (int32_t)(t + j));
                            }
                    lv_kv_commit(kv);
                    const int64_t r = rss_bytes() - rss0;
                    if (r > peak) peak = r;
                }
                const double in_use = (double)lv_kv_pages_in_use_bytes_(kv) * mib;
                if (mode == MODE_DENSE) dense_mib = in_use;
                if (dense_mib > 0)
                    printf("| %s | %s | %lld | %s | %.1f | %.1f | %.1f | %.1fx |\n", sh->name, lv_kv_type_name(kvt), (long long)N, mode_name[mode], formula * mib,
                           in_use, (double)peak * mib, dense_mib / in_use);
                else
                    printf("| %s | %s | %lld | %s | %.1f | %.1f | %.1f | |\n", sh->name, lv_kv_type_name(kvt), (long long)N, mode_name[mode], formula * mib, in_use,
                           (double)peak * mib);
                fflush(stdout);
                lv_kv_free(kv);
                free(pol);
            }
        }
    }
    free(k);
    free(v);
    return 0;
}
