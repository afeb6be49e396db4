/*
 * lv_mtmd.c: our reference-output generator for the vision goldens, written against llama.cpp's
 * public mtmd.h + llama.h only (libmtmd built out of tree by scripts/build-mtmd.sh from the pinned
 * llama.cpp v0.4.0 source; libllama/libggml are the npm prebuilt libraries of node-llama-cpp 3.21.1).
 * Settings as ../shared/VISION.md §4.2: CPU only, no warm-up, flash attention disabled.
 *
 *   lv_mtmd embed  TEXT.gguf MMPROJ.gguf IMAGE.ppm [IMAGE2.ppm ...] [--pair] -o OUT [-t N]
 *       tokenizes "<__media__>" once per image (add_special false, parse_special true; with --pair
 *       every bitmap is mergeable, so two same-size frames become one Qwen temporal pair), encodes
 *       every image chunk, writes OUT.txt (key=value lines) and OUT.bin (float32 embeddings of all
 *       image chunks, token-major, in chunk order; then, when the text model uses M-RoPE, int32
 *       decoder positions t,y,x,z per image token, with each chunk's pos_0 as mtmd-helper uses it).
 *   lv_mtmd logits TEXT.gguf MMPROJ.gguf PROMPT IMAGE.ppm [IMAGE.ppm ...] -o OUT [-t N]
 *       tokenizes PROMPT (its "<__media__>" markers; add_special true, parse_special true) and
 *       evaluates every chunk in order as mtmd-helper's eval does (text as token batches, images
 *       as llama_batch.embd rows, positions advancing by each chunk's n_pos); writes OUT.txt and
 *       OUT.bin: int32 ids[n_seq] (-1 for embedding rows), int32 pos[n_seq], float32
 *       embd[n_img_tokens][n_embd], float32 logits[n_out][n_vocab] of every text token after the
 *       last image (the last n_out rows of the sequence); when the text model uses M-RoPE
 *       (mrope=1 in OUT.txt) then int32 pos4[n_seq][4] = the (t, h, w, e) positions llama.cpp's
 *       rope gets for each row: image rows mtmd_image_tokens_get_decoder_pos (t, y, x, z) of the
 *       chunk's pos_0 (mtmd-helper's set_position_mrope_2d), text rows (p, p, p, p) (mtmd-helper
 *       feeds text as 1-D token batches; llama_batch_allocr broadcasts p to all four sections);
 *       pos[] then holds t.
 *   lv_mtmd bench  TEXT.gguf MMPROJ.gguf IMAGE.ppm [-t N] [-r REPS]
 *       encode time of the image (all its chunks), median and min of REPS after one warm-up, and
 *       peak RSS; one key=value line each on stdout.
 *   lv_mtmd video  TEXT.gguf MMPROJ.gguf PROMPT.txt FRAMES.txt [--pair] [-t N] [-b N]
 *       bench/video-questions' llama.cpp side: a video question with the same rows as longview's.
 *       PROMPT.txt is `longview run --video ... --print-prompt` (the family's video prompt, every
 *       embedding row written as <image> or <|video_pad|>); FRAMES.txt lists the sampled frames
 *       as PPM files (one path a line, in order; ffmpeg extracted them at the encoder's size), one
 *       frame per run of embedding rows (--pair: two, merged into one Qwen temporal-pair chunk; a
 *       single run for the whole video, as Qwen's block, is cut into equal units, one per pair).
 *       The text between the runs is tokenized piece by piece with llama_tokenize (parse_special;
 *       add_special on the first piece only), as longview does. Then mtmd-helper's chunk loop,
 *       reimplemented: for each piece and unit in order, the piece's tokens go to llama_decode in
 *       batches of -b (default 512), the unit's frame(s) through mtmd_tokenize ("<__media__>"),
 *       and of the chunks that gives, the one image chunk whose token count equals the run's
 *       (idefics3: the overview, the 512x512 frame itself; the 1x1 tile chunk mtmd's slicing adds
 *       beside it is not encoded, so the tower runs once a frame, as in longview and HF's video
 *       format) is encoded (mtmd_encode_chunk) and its embeddings go to llama_decode in batches
 *       of -b (1-D positions, or mtmd's M-RoPE decoder positions from the chunk's start). The last
 *       row's logits give the first token (argmax). Context: llama.cpp's defaults (flash
 *       attention auto, f16 cache) but n_ctx = the rows + 64, n_batch = n_ubatch = -b; -t threads
 *       for the tower and the text model. Prints key=value lines: the counts (units, text tokens,
 *       embedding rows, rows), seconds (load, read = PPM files, mtmd_tokenize = mtmd's
 *       preprocessing, encode, prefill = llama_decode, first_token = from the first frame read to
 *       the first token), the first token's id, the KV bytes of the sequence
 *       (llama_state_seq_get_size), the process CPU seconds and the peak RSS.
 *
 * Environment: LV_ORACLE_LIBDIR = the npm bins folder (dynamic CPU backends); LV_MTMD_FA=auto for
 * llama.cpp's default flash attention (the bench), else it is off. Never part of the
 * longview build or its tests.
 */
#define _POSIX_C_SOURCE 200809L
#include "ggml-backend.h"
#include "llama.h"
#include "mtmd.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static void die(const char *msg) {
    fprintf(stderr, "lv_mtmd: %s\n", msg);
    exit(1);
}

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level >= GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

/* binary PPM (P6, maxval 255) */
static int ppm_token(FILE *f, long *v) {
    int c = fgetc(f);
    for (;;) {
        while (c == ' ' || c == '\n' || c == '\r' || c == '\t') c = fgetc(f);
        if (c != '#') break;
        while (c != '\n' && c != EOF) c = fgetc(f);
    }
    if (c < '0' || c > '9') return 0;
    *v = 0;
    while (c >= '0' && c <= '9') {
        *v = *v * 10 + (c - '0');
        c = fgetc(f);
    }
    return 1; /* c (one whitespace) is consumed */
}

static mtmd_bitmap *read_ppm(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open an image");
    char magic[2];
    long w, h, mx;
    if (fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || magic[1] != '6') die("not a binary PPM (P6)");
    if (!ppm_token(f, &w) || !ppm_token(f, &h) || !ppm_token(f, &mx) || mx != 255 || w <= 0 || h <= 0) die("bad PPM header");
    size_t n = (size_t)w * (size_t)h * 3;
    unsigned char *rgb = malloc(n);
    if (!rgb || fread(rgb, 1, n, f) != n) die("short PPM");
    fclose(f);
    mtmd_bitmap *b = mtmd_bitmap_init((uint32_t)w, (uint32_t)h, rgb);
    free(rgb);
    return b;
}

static void put(FILE *f, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, f) != n) die("write failed");
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static FILE *open_out(const char *base, const char *ext) {
    char path[4096];
    snprintf(path, sizeof(path), "%s%s", base, ext);
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot create the output");
    return f;
}

/* the chunk structure, one header line per chunk, with mtmd-helper's 1-D position bookkeeping */
static void describe_chunks(FILE *t, const mtmd_input_chunks *chunks) {
    size_t n = mtmd_input_chunks_size(chunks);
    llama_pos n_past = 0;
    size_t n_img = 0, n_img_tok = 0, n_seq = 0;
    for (size_t i = 0; i < n; i++) {
        const mtmd_input_chunk *c = mtmd_input_chunks_get(chunks, i);
        enum mtmd_input_chunk_type ty = mtmd_input_chunk_get_type(c);
        llama_pos np = mtmd_input_chunk_get_n_pos(c);
        size_t nt = mtmd_input_chunk_get_n_tokens(c);
        if (ty == MTMD_INPUT_CHUNK_TYPE_TEXT) {
            size_t m;
            const llama_token *tok = mtmd_input_chunk_get_tokens_text(c, &m);
            fprintf(t, "chunk.%zu=text n_tokens=%zu n_pos=%d pos_0=%d ids=", i, m, (int)np, (int)n_past);
            for (size_t j = 0; j < m; j++) fprintf(t, "%s%d", j ? "," : "", (int)tok[j]);
            fputc('\n', t);
        } else if (ty == MTMD_INPUT_CHUNK_TYPE_IMAGE) {
            const mtmd_image_tokens *it = mtmd_input_chunk_get_tokens_image(c);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
            size_t nx = mtmd_image_tokens_get_nx(it), ny = mtmd_image_tokens_get_ny(it);
#pragma GCC diagnostic pop
            fprintf(t, "chunk.%zu=image n_tokens=%zu n_pos=%d pos_0=%d nx=%zu ny=%zu\n", i, nt, (int)np, (int)n_past, nx, ny);
            n_img++;
            n_img_tok += nt;
        } else {
            die("unexpected chunk type");
        }
        n_past += np;
        n_seq += nt;
    }
    fprintf(t, "n_chunks=%zu\nn_image_chunks=%zu\nn_image_tokens=%zu\nn_seq=%zu\nn_pos=%d\n", n, n_img, n_img_tok, n_seq, (int)n_past);
}

typedef struct oracle {
    struct llama_model *model;
    mtmd_context *mctx;
    int n_embd;
    int mrope;
} oracle;

static oracle open_oracle(const char *text_path, const char *mmproj_path, int threads) {
    oracle o;
    llama_log_set(quiet_log, NULL);
    mtmd_log_set(quiet_log, NULL);
    const char *libdir = getenv("LV_ORACLE_LIBDIR");
    if (libdir) ggml_backend_load_all_from_path(libdir);
    else ggml_backend_load_all();
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    o.model = llama_model_load_from_file(text_path, mp);
    if (!o.model) die("llama.cpp could not load the text model");
    struct mtmd_context_params p = mtmd_context_params_default();
    p.use_gpu = false;
    p.print_timings = false;
    p.n_threads = threads;
    p.warmup = false;
    /* the goldens: flash attention off (f32 attention); the bench can ask for llama.cpp's default
     * (auto: on for the CPU, K/V cast to f16) with LV_MTMD_FA=auto */
    const char *fa = getenv("LV_MTMD_FA");
    p.flash_attn_type = fa && !strcmp(fa, "auto") ? LLAMA_FLASH_ATTN_TYPE_AUTO : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    o.mctx = mtmd_init_from_file(mmproj_path, o.model, p);
    if (!o.mctx) die("mtmd_init_from_file failed");
    if (!mtmd_support_vision(o.mctx)) die("the mmproj has no vision encoder");
    o.n_embd = llama_model_n_embd_inp(o.model);
    o.mrope = mtmd_decode_use_mrope(o.mctx);
    return o;
}

static void close_oracle(oracle *o) {
    mtmd_free(o->mctx);
    llama_model_free(o->model);
    llama_backend_free();
}

static mtmd_input_chunks *tokenize(oracle *o, const char *text, int add_special, mtmd_bitmap **bmp, size_t n_bmp) {
    mtmd_input_chunks *chunks = mtmd_input_chunks_init();
    mtmd_input_text in = {text, strlen(text), add_special != 0, true};
    int32_t r = mtmd_tokenize(o->mctx, chunks, &in, (const mtmd_bitmap *const *)bmp, n_bmp);
    if (r != 0) {
        fprintf(stderr, "lv_mtmd: mtmd_tokenize returned %d\n", (int)r);
        exit(1);
    }
    return chunks;
}

static const float *encode(oracle *o, const mtmd_input_chunk *c) {
    if (mtmd_encode_chunk(o->mctx, c) != 0) die("mtmd_encode_chunk failed");
    return mtmd_get_output_embd(o->mctx);
}

static int cmd_embed(int n_img, char **imgs, int pair, const char *text_path, const char *mm_path, const char *out, int threads) {
    oracle o = open_oracle(text_path, mm_path, threads);
    mtmd_bitmap **bmp = calloc((size_t)n_img, sizeof(*bmp));
    size_t plen = (size_t)n_img * 16 + 1;
    char *prompt = calloc(plen, 1);
    for (int i = 0; i < n_img; i++) {
        bmp[i] = read_ppm(imgs[i]);
        if (pair) mtmd_bitmap_set_mergeable(bmp[i], true);
        strcat(prompt, mtmd_default_marker());
    }
    mtmd_input_chunks *chunks = tokenize(&o, prompt, 0, bmp, (size_t)n_img);
    FILE *t = open_out(out, ".txt"), *b = open_out(out, ".bin");
    fprintf(t, "mode=embed\nprompt=%s\nadd_special=0\nparse_special=1\nmergeable=%d\nn_images=%d\nn_embd=%d\nmrope=%d\nthreads=%d\n",
            prompt, pair, n_img, o.n_embd, o.mrope, threads);
    for (int i = 0; i < n_img; i++)
        fprintf(t, "image.%d=%ux%u\n", i, mtmd_bitmap_get_nx(bmp[i]), mtmd_bitmap_get_ny(bmp[i]));
    describe_chunks(t, chunks);
    size_t n = mtmd_input_chunks_size(chunks);
    for (size_t i = 0; i < n; i++) {
        const mtmd_input_chunk *c = mtmd_input_chunks_get(chunks, i);
        if (mtmd_input_chunk_get_type(c) != MTMD_INPUT_CHUNK_TYPE_IMAGE) continue;
        const float *e = encode(&o, c);
        put(b, e, sizeof(float) * (size_t)o.n_embd * mtmd_input_chunk_get_n_tokens(c));
    }
    if (o.mrope) { /* decoder positions of every image token, pos_0 = the chunk's 1-D start as in mtmd-helper */
        llama_pos n_past = 0;
        for (size_t i = 0; i < n; i++) {
            const mtmd_input_chunk *c = mtmd_input_chunks_get(chunks, i);
            if (mtmd_input_chunk_get_type(c) == MTMD_INPUT_CHUNK_TYPE_IMAGE) {
                const mtmd_image_tokens *it = mtmd_input_chunk_get_tokens_image(c);
                size_t nt = mtmd_image_tokens_get_n_tokens(it);
                for (size_t j = 0; j < nt; j++) {
                    struct mtmd_decoder_pos dp = mtmd_image_tokens_get_decoder_pos(it, n_past, j);
                    int32_t v[4] = {(int32_t)dp.t, (int32_t)dp.y, (int32_t)dp.x, (int32_t)dp.z};
                    put(b, v, sizeof(v));
                }
            }
            n_past += mtmd_input_chunk_get_n_pos(c);
        }
    }
    if (fclose(t) || fclose(b)) die("write failed");
    mtmd_input_chunks_free(chunks);
    for (int i = 0; i < n_img; i++) mtmd_bitmap_free(bmp[i]);
    free(bmp);
    free(prompt);
    close_oracle(&o);
    return 0;
}

static int cmd_logits(int n_img, char **imgs, const char *prompt, const char *text_path, const char *mm_path, const char *out, int threads) {
    oracle o = open_oracle(text_path, mm_path, threads);
    mtmd_bitmap **bmp = calloc((size_t)n_img, sizeof(*bmp));
    for (int i = 0; i < n_img; i++) bmp[i] = read_ppm(imgs[i]);
    mtmd_input_chunks *chunks = tokenize(&o, prompt, 1, bmp, (size_t)n_img);
    size_t n = mtmd_input_chunks_size(chunks), n_seq = 0, last_img = 0, n_img_tok = 0;
    for (size_t i = 0; i < n; i++) {
        const mtmd_input_chunk *c = mtmd_input_chunks_get(chunks, i);
        n_seq += mtmd_input_chunk_get_n_tokens(c);
        if (mtmd_input_chunk_get_type(c) == MTMD_INPUT_CHUNK_TYPE_IMAGE) {
            last_img = i + 1;
            n_img_tok += mtmd_input_chunk_get_n_tokens(c);
        }
    }
    if (!last_img) die("logits: no image in the prompt");
    size_t n_out = 0;
    for (size_t i = last_img; i < n; i++) n_out += mtmd_input_chunk_get_n_tokens(mtmd_input_chunks_get(chunks, i));
    if (!n_out) die("logits: no text after the last image");

    const struct llama_vocab *vocab = llama_model_get_vocab(o.model);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 1024;
    while (cp.n_ctx < n_seq + 16) cp.n_ctx *= 2;
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = cp.n_ctx;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.no_perf = true;
    struct llama_context *lctx = llama_init_from_model(o.model, cp);
    if (!lctx) die("llama.cpp could not create the context");

    int32_t *ids = malloc(sizeof(int32_t) * n_seq), *pos = malloc(sizeof(int32_t) * n_seq);
    int32_t *pos4 = malloc(sizeof(int32_t) * 4 * n_seq); /* [n_seq][4], M-RoPE only */
    float *embd_all = malloc(sizeof(float) * (size_t)o.n_embd * (n_img_tok ? n_img_tok : 1));
    float *logits = malloc(sizeof(float) * (size_t)n_vocab * n_out);
    size_t k = 0, ke = 0, ko = 0;
    llama_pos n_past = 0;
    for (size_t i = 0; i < n; i++) {
        const mtmd_input_chunk *c = mtmd_input_chunks_get(chunks, i);
        size_t nt = mtmd_input_chunk_get_n_tokens(c);
        int want = i >= last_img;
        struct llama_batch b;
        if (mtmd_input_chunk_get_type(c) == MTMD_INPUT_CHUNK_TYPE_TEXT) {
            size_t m;
            const llama_token *tok = mtmd_input_chunk_get_tokens_text(c, &m);
            b = llama_batch_init((int32_t)m, 0, 1);
            for (size_t j = 0; j < m; j++) {
                b.token[j] = tok[j];
                b.pos[j] = n_past + (llama_pos)j;
                b.n_seq_id[j] = 1;
                b.seq_id[j][0] = 0;
                b.logits[j] = want;
                ids[k] = tok[j];
                for (int q = 0; q < 4; q++) pos4[4 * k + q] = b.pos[j]; /* llama_batch_allocr: a token batch's position in every section */
                pos[k++] = b.pos[j];
            }
            b.n_tokens = (int32_t)m;
        } else {
            if (mtmd_decode_use_non_causal(o.mctx, c)) die("logits: non-causal image decoding is not handled");
            const float *e = encode(&o, c);
            memcpy(embd_all + ke * (size_t)o.n_embd, e, sizeof(float) * (size_t)o.n_embd * nt);
            /* room for 4 positions per row (M-RoPE: laid out [t...][h...][w...][e...], n_tokens each) */
            b = llama_batch_init((int32_t)nt * (o.mrope ? 4 : 1), o.n_embd, 1);
            memcpy(b.embd, e, sizeof(float) * (size_t)o.n_embd * nt);
            const mtmd_image_tokens *it = mtmd_input_chunk_get_tokens_image(c);
            for (size_t j = 0; j < nt; j++) {
                if (o.mrope) { /* set_position_mrope_2d */
                    struct mtmd_decoder_pos dp = mtmd_image_tokens_get_decoder_pos(it, n_past, j);
                    b.pos[j] = dp.t;
                    b.pos[j + nt] = dp.y;
                    b.pos[j + 2 * nt] = dp.x;
                    b.pos[j + 3 * nt] = dp.z;
                    for (int q = 0; q < 4; q++) pos4[4 * k + q] = b.pos[j + (size_t)q * nt];
                } else {
                    b.pos[j] = n_past + (llama_pos)j; /* set_position_normal */
                }
                b.n_seq_id[j] = 1;
                b.seq_id[j][0] = 0;
                b.logits[j] = 0;
                ids[k] = -1;
                pos[k++] = b.pos[j];
            }
            b.n_tokens = (int32_t)nt;
            ke += nt;
        }
        if (llama_decode(lctx, b) != 0) die("llama_decode failed");
        if (want)
            for (size_t j = 0; j < nt; j++) memcpy(logits + (ko++) * (size_t)n_vocab, llama_get_logits_ith(lctx, (int32_t)j), sizeof(float) * (size_t)n_vocab);
        llama_batch_free(b);
        n_past += mtmd_input_chunk_get_n_pos(c);
    }
    FILE *t = open_out(out, ".txt"), *bf = open_out(out, ".bin");
    fprintf(t, "mode=logits\nadd_special=1\nparse_special=1\nn_images=%d\nn_embd=%d\nn_vocab=%d\nthreads=%d\nkv=f32\nfa=off\n", n_img, o.n_embd, (int)n_vocab, threads);
    for (int i = 0; i < n_img; i++)
        fprintf(t, "image.%d=%ux%u\n", i, mtmd_bitmap_get_nx(bmp[i]), mtmd_bitmap_get_ny(bmp[i]));
    describe_chunks(t, chunks);
    fprintf(t, "n_out=%zu\n", n_out);
    if (o.mrope) fprintf(t, "mrope=1\n");
    put(bf, ids, sizeof(int32_t) * n_seq);
    put(bf, pos, sizeof(int32_t) * n_seq);
    put(bf, embd_all, sizeof(float) * (size_t)o.n_embd * n_img_tok);
    put(bf, logits, sizeof(float) * (size_t)n_vocab * n_out);
    if (o.mrope) put(bf, pos4, sizeof(int32_t) * 4 * n_seq);
    if (fclose(t) || fclose(bf)) die("write failed");
    free(ids);
    free(pos);
    free(pos4);
    free(embd_all);
    free(logits);
    llama_free(lctx);
    mtmd_input_chunks_free(chunks);
    for (int i = 0; i < n_img; i++) mtmd_bitmap_free(bmp[i]);
    free(bmp);
    close_oracle(&o);
    return 0;
}

static int cmd_bench(const char *img, const char *text_path, const char *mm_path, int threads, int reps) {
    oracle o = open_oracle(text_path, mm_path, threads);
    mtmd_bitmap *bmp = read_ppm(img);
    mtmd_input_chunks *chunks = tokenize(&o, mtmd_default_marker(), 0, &bmp, 1);
    size_t n = mtmd_input_chunks_size(chunks), n_tok = 0;
    if (reps < 1) reps = 1;
    double *ms = malloc(sizeof(double) * (size_t)reps);
    for (int r = -1; r < reps; r++) {
        double t0 = now_ms();
        n_tok = 0;
        for (size_t i = 0; i < n; i++) {
            const mtmd_input_chunk *c = mtmd_input_chunks_get(chunks, i);
            if (mtmd_input_chunk_get_type(c) != MTMD_INPUT_CHUNK_TYPE_IMAGE) continue;
            encode(&o, c);
            n_tok += mtmd_input_chunk_get_n_tokens(c);
        }
        if (r >= 0) ms[r] = now_ms() - t0;
    }
    qsort(ms, (size_t)reps, sizeof(double), cmp_double);
    double med = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("image=%s\nsize=%ux%u\nthreads=%d\nreps=%d\nn_image_tokens=%zu\nencode_ms_median=%.3f\nencode_ms_min=%.3f\npeak_rss_kb=%ld\n", img,
           mtmd_bitmap_get_nx(bmp), mtmd_bitmap_get_ny(bmp), threads, reps, n_tok, med, ms[0], ru.ru_maxrss);
    free(ms);
    mtmd_input_chunks_free(chunks);
    mtmd_bitmap_free(bmp);
    close_oracle(&o);
    return 0;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open a text file");
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t r;
    while (b && (r = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) b = realloc(b, cap *= 2);
    }
    if (!b) die("out of memory");
    fclose(f);
    b[n] = 0;
    *len = n;
    return b;
}

/* feed rows to llama_decode in batches of n_batch: tokens (tok != NULL) or embeddings */
static void decode_rows(struct llama_context *lctx, const llama_token *tok, const float *embd, int n_embd, size_t n, llama_pos n_past,
                        const mtmd_image_tokens *it, int mrope, int n_batch, int logits_last, double *prefill_s) {
    for (size_t i0 = 0; i0 < n; i0 += (size_t)n_batch) {
        const size_t m = n - i0 < (size_t)n_batch ? n - i0 : (size_t)n_batch;
        const int emb_mrope = embd && mrope;
        struct llama_batch b = llama_batch_init((int32_t)m * (emb_mrope ? 4 : 1), embd ? n_embd : 0, 1);
        if (embd) memcpy(b.embd, embd + i0 * (size_t)n_embd, sizeof(float) * (size_t)n_embd * m);
        for (size_t j = 0; j < m; j++) {
            if (tok) b.token[j] = tok[i0 + j];
            if (emb_mrope) { /* mtmd-helper's set_position_mrope_2d, the chunk's start at n_past */
                struct mtmd_decoder_pos dp = mtmd_image_tokens_get_decoder_pos(it, n_past, i0 + j);
                b.pos[j] = dp.t;
                b.pos[j + m] = dp.y;
                b.pos[j + 2 * m] = dp.x;
                b.pos[j + 3 * m] = dp.z;
            } else {
                b.pos[j] = n_past + (llama_pos)(i0 + j);
            }
            b.n_seq_id[j] = 1;
            b.seq_id[j][0] = 0;
            b.logits[j] = logits_last && i0 + j == n - 1;
        }
        b.n_tokens = (int32_t)m;
        const double t = now_ms();
        if (llama_decode(lctx, b) != 0) die("llama_decode failed");
        *prefill_s += (now_ms() - t) / 1e3;
        llama_batch_free(b);
    }
}

static int cmd_video(const char *prompt_path, const char *frames_path, int pair, const char *text_path, const char *mm_path, int threads,
                     int n_batch) {
    const double t_start = now_ms();
    oracle o = open_oracle(text_path, mm_path, threads);
    const struct llama_vocab *vocab = llama_model_get_vocab(o.model);
    size_t plen, flen;
    char *prompt = read_text(prompt_path, &plen), *flist = read_text(frames_path, &flen);
    /* the frames */
    size_t n_frames = 0, cap_f = 64;
    char **frames = malloc(sizeof(char *) * cap_f);
    for (char *line = strtok(flist, "\n"); line; line = strtok(NULL, "\n")) {
        if (!*line) continue;
        if (n_frames == cap_f) frames = realloc(frames, sizeof(char *) * (cap_f *= 2));
        frames[n_frames++] = line;
    }
    /* the pieces: text between runs of the embedding rows' placeholder */
    const char *pad = strstr(prompt, "<|video_pad|>") ? "<|video_pad|>" : "<image>";
    const size_t padlen = strlen(pad);
    size_t n_units = 0, cap_u = 64;
    char **piece = malloc(sizeof(char *) * (cap_u + 1));
    size_t *run = malloc(sizeof(size_t) * (cap_u + 1));
    char *p = prompt;
    for (;;) {
        char *q = strstr(p, pad);
        if (n_units == cap_u) {
            cap_u *= 2;
            piece = realloc(piece, sizeof(char *) * (cap_u + 1));
            run = realloc(run, sizeof(size_t) * (cap_u + 1));
        }
        piece[n_units] = p;
        if (!q) break;
        size_t k = 0;
        while (!strncmp(q + k * padlen, pad, padlen)) k++;
        *q = 0;
        run[n_units++] = k;
        p = q + k * padlen;
    }
    const size_t per_unit = pair ? 2 : 1;
    if (n_units == 1 && n_frames / per_unit > 1 && n_frames % per_unit == 0 && run[0] % (n_frames / per_unit) == 0) {
        /* one run for the whole video (Qwen's one <|vision_start|> block): equal units, no text between */
        const size_t k = n_frames / per_unit, rows = run[0] / k;
        char *tail = piece[1];
        piece = realloc(piece, sizeof(char *) * (k + 1));
        run = realloc(run, sizeof(size_t) * (k + 1));
        for (size_t i = 0; i < k; i++) {
            run[i] = rows;
            if (i) piece[i] = tail + strlen(tail); /* "" */
        }
        piece[k] = tail;
        n_units = k;
    }
    if (n_units * per_unit != n_frames) {
        fprintf(stderr, "lv_mtmd: the prompt has %zu runs of %s, the frame list %zu frames (%zu a run)\n", n_units, pad, n_frames, per_unit);
        exit(1);
    }
    /* tokenize the pieces */
    llama_token **ptok = malloc(sizeof(llama_token *) * (n_units + 1));
    size_t *pn = malloc(sizeof(size_t) * (n_units + 1)), n_text = 0, n_embd_rows = 0;
    for (size_t i = 0; i <= n_units; i++) {
        const int32_t len = (int32_t)strlen(piece[i]);
        int32_t m = -llama_tokenize(vocab, piece[i], len, NULL, 0, i == 0, true);
        if (m < 0) m = -m; /* an empty piece: 0 */
        ptok[i] = malloc(sizeof(llama_token) * ((size_t)m + 1));
        int32_t got = llama_tokenize(vocab, piece[i], len, ptok[i], m + 1, i == 0, true);
        if (got < 0) die("llama_tokenize failed");
        pn[i] = (size_t)got;
        n_text += pn[i];
        if (i < n_units) n_embd_rows += run[i];
    }
    const size_t n_rows = n_text + n_embd_rows;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_rows + 64);
    cp.n_batch = (uint32_t)n_batch;
    cp.n_ubatch = (uint32_t)n_batch;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    struct llama_context *lctx = llama_init_from_model(o.model, cp);
    if (!lctx) die("llama.cpp could not create the context");
    const double load_s = (now_ms() - t_start) / 1e3;

    /* mtmd-helper's loop over the chunks, with longview's rows */
    double read_s = 0, tok_s = 0, enc_s = 0, pre_s = 0;
    const double t0 = now_ms();
    llama_pos n_past = 0;
    const char *marker = mtmd_default_marker();
    char marker2[64];
    snprintf(marker2, sizeof(marker2), "%s%s", marker, marker);
    for (size_t u = 0; u <= n_units; u++) {
        decode_rows(lctx, ptok[u], NULL, o.n_embd, pn[u], n_past, NULL, o.mrope, n_batch, u == n_units, &pre_s);
        n_past += (llama_pos)pn[u];
        if (u == n_units) break;
        double t = now_ms();
        mtmd_bitmap *bmp[2];
        for (size_t k = 0; k < per_unit; k++) {
            bmp[k] = read_ppm(frames[u * per_unit + k]);
            if (pair) mtmd_bitmap_set_mergeable(bmp[k], true);
        }
        read_s += (now_ms() - t) / 1e3;
        t = now_ms();
        mtmd_input_chunks *chunks = mtmd_input_chunks_init();
        mtmd_input_text in = {pair ? marker2 : marker, strlen(pair ? marker2 : marker), false, true};
        if (mtmd_tokenize(o.mctx, chunks, &in, (const mtmd_bitmap *const *)bmp, per_unit) != 0) die("mtmd_tokenize failed");
        tok_s += (now_ms() - t) / 1e3;
        const mtmd_input_chunk *img = NULL;
        for (size_t i = 0; i < mtmd_input_chunks_size(chunks); i++) {
            const mtmd_input_chunk *c = mtmd_input_chunks_get(chunks, i);
            if (mtmd_input_chunk_get_type(c) == MTMD_INPUT_CHUNK_TYPE_IMAGE && mtmd_input_chunk_get_n_tokens(c) == run[u]) img = c;
        }
        if (!img) {
            fprintf(stderr, "lv_mtmd: unit %zu: mtmd gave no image chunk of %zu tokens (the run's)\n", u, run[u]);
            exit(1);
        }
        t = now_ms();
        const float *e = encode(&o, img);
        enc_s += (now_ms() - t) / 1e3;
        decode_rows(lctx, NULL, e, o.n_embd, run[u], n_past, mtmd_input_chunk_get_tokens_image(img), o.mrope, n_batch, 0, &pre_s);
        n_past += mtmd_input_chunk_get_n_pos(img);
        mtmd_input_chunks_free(chunks);
        for (size_t k = 0; k < per_unit; k++) mtmd_bitmap_free(bmp[k]);
    }
    /* the first token: greedy */
    const float *lg = llama_get_logits_ith(lctx, -1);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    int32_t best = 0;
    for (int32_t i = 1; i < n_vocab; i++)
        if (lg[i] > lg[best]) best = i;
    const double first_s = (now_ms() - t0) / 1e3;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("n_units=%zu\nn_frames=%zu\nn_text=%zu\nn_embd_rows=%zu\nn_rows=%zu\nn_pos=%d\nthreads=%d\nn_batch=%d\nload_s=%.3f\nread_s=%.3f\n"
           "mtmd_tokenize_s=%.3f\nencode_s=%.3f\nprefill_s=%.3f\nfirst_token_s=%.3f\nfirst_token=%d\nkv_bytes=%zu\ncpu_s=%.2f\npeak_rss_kb=%ld\n",
           n_units, n_frames, n_text, n_embd_rows, n_rows, (int)n_past, threads, n_batch, load_s, read_s, tok_s, enc_s, pre_s, first_s, (int)best,
           llama_state_seq_get_size(lctx, 0), cpu_s(), ru.ru_maxrss);
    for (size_t i = 0; i <= n_units; i++) free(ptok[i]);
    free(ptok);
    free(pn);
    free(piece);
    free(run);
    free(frames);
    free(flist);
    free(prompt);
    llama_free(lctx);
    close_oracle(&o);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4)
        die("usage: lv_mtmd embed TEXT MMPROJ IMG.ppm [IMG2.ppm ...] [--pair] -o OUT [-t N]\n"
            "       lv_mtmd logits TEXT MMPROJ PROMPT IMG.ppm [...] -o OUT [-t N]\n"
            "       lv_mtmd bench TEXT MMPROJ IMG.ppm [-t N] [-r REPS]\n"
            "       lv_mtmd video TEXT MMPROJ PROMPT.txt FRAMES.txt [--pair] [-t N] [-b N]");
    const char *mode = argv[1], *text_path = argv[2], *mm_path = argv[3], *out = NULL;
    int threads = 2, reps = 5, pair = 0, n_pos_args = 0, n_batch = 512;
    char **pos_args = calloc((size_t)argc, sizeof(char *));
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--pair")) pair = 1;
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-b") && i + 1 < argc) n_batch = atoi(argv[++i]);
        else pos_args[n_pos_args++] = argv[i];
    }
    int rc;
    if (!strcmp(mode, "embed")) {
        if (!out || n_pos_args < 1) die("embed: give images and -o OUT");
        rc = cmd_embed(n_pos_args, pos_args, pair, text_path, mm_path, out, threads);
    } else if (!strcmp(mode, "logits")) {
        if (!out || n_pos_args < 2) die("logits: give PROMPT, images and -o OUT");
        rc = cmd_logits(n_pos_args - 1, pos_args + 1, pos_args[0], text_path, mm_path, out, threads);
    } else if (!strcmp(mode, "bench")) {
        if (n_pos_args != 1) die("bench: give one image");
        rc = cmd_bench(pos_args[0], text_path, mm_path, threads, reps);
    } else if (!strcmp(mode, "video")) {
        if (n_pos_args != 2 || n_batch < 1) die("video: give PROMPT.txt and FRAMES.txt (and -b N >= 1)");
        rc = cmd_video(pos_args[0], pos_args[1], pair, text_path, mm_path, threads, n_batch);
    } else {
        die("unknown mode (embed, logits, bench, video)");
    }
    free(pos_args);
    return rc;
}
