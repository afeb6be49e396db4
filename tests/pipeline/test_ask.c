/*
 * test_ask.c: asking a video (src/pipeline/, docs/video-questions.md). The overlapped pipeline
 * against the sequential reference (logits bit for bit) for the three families; the SmolVLM2 prompt
 * text against one rebuilt here from the sampled frames; Qwen's rows and M-RoPE positions against
 * a batch built here by hand from HF's formulas; rollback after an abort and on a damaged clip; the
 * frame-count rules and number words. Tiny random-weight models (tests/golden/vision) and clips
 * made with Debian's ffmpeg (skipped without it).
 */
#include "lv_test.h"
#include "longview.h"
#include "model/model.h"
#include "pipeline/pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define GOLDEN_DIR "tests/golden/vision"

static int have_ffmpeg(void) {
    static int have = -1;
    if (have < 0) have = system("ffmpeg -hide_banner -version >/dev/null 2>&1") == 0;
    return have;
}

/* Generate (once) tmpdir/ask/<name> with `ffmpeg -y <args> <file>`. Returns the path or NULL. */
static const char *gen(const char *name, const char *args) {
    static char paths[16][512];
    static int n_paths;
    if (!have_ffmpeg()) return NULL;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/ask", lv_test_tmpdir());
    mkdir(dir, 0755);
    char *path = paths[n_paths++ % 16];
    snprintf(path, 512, "%s/%s", dir, name);
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size > 0) return path;
    char tmp[600], cmd[4096];
    snprintf(tmp, sizeof(tmp), "%s/tmp_%s", dir, name);
    snprintf(cmd, sizeof(cmd), "ffmpeg -hide_banner -loglevel error -nostdin -y %s '%s' && mv '%s' '%s'", args, tmp, tmp, path);
    if (system(cmd) != 0) return NULL;
    return path;
}

/* 4 s at 10 fps, 64x48 (40 frames), B-frames */
static const char *clip(void) {
    return gen("clip.mp4", "-f lavfi -i testsrc2=size=64x48:rate=10 -t 4 -c:v libx264 -g 12 -bf 2 -pix_fmt yuv420p");
}

typedef struct fixture {
    lv_model *model;
    lv_mmproj *mm;
    lv_video *video;
    lv_threadpool *tp;
} fixture;

static void fixture_free(fixture *f) {
    lv_video_free(f->video);
    lv_mmproj_free(f->mm);
    lv_model_free(f->model);
    lv_threadpool_free(f->tp);
    memset(f, 0, sizeof(*f));
}

/* family: "smolvlm2" (idefics3-s2 + a llama text model with the VLM vocabulary), "qwen2vl",
 * "qwen2.5vl" (the golden Qwen towers + the M-RoPE text model) */
static int fixture_open(fixture *f, const char *family, const char *video_path) {
    memset(f, 0, sizeof(*f));
    lv_video_route_libav_log();
    char path[512];
    const char *mmf;
    if (!strcmp(family, "smolvlm2")) {
        snprintf(path, sizeof(path), "%s/ask-text-llama.gguf", lv_test_tmpdir());
        lv_genmodel_params gp = lv_genmodel_default_params();
        gp.arch = "llama";
        gp.n_embd = 64;
        gp.n_layer = 1;
        gp.n_head = 2;
        gp.n_ff = 96;
        gp.vocab_path = GOLDEN_DIR "/vocab-vlm.gguf";
        gp.seed = 7;
        if (lv_genmodel_write(&gp, path) != LV_OK) return 0;
        mmf = GOLDEN_DIR "/idefics3-s2.gguf";
    } else {
        snprintf(path, sizeof(path), GOLDEN_DIR "/text-qwen2vl.gguf");
        mmf = !strcmp(family, "qwen2vl") ? GOLDEN_DIR "/qwen2vl.gguf" : GOLDEN_DIR "/qwen25vl.gguf";
    }
    if (lv_model_load(path, lv_model_default_params(), &f->model) != LV_OK) return 0;
    if (lv_mmproj_load(mmf, lv_model_n_embd(f->model), &f->mm) != LV_OK) return 0;
    if (lv_video_open(video_path, lv_video_default_open_params(), &f->video) != LV_OK) return 0;
    f->tp = lv_threadpool_create(2);
    return f->tp != NULL;
}

/* a context of batches of n_batch rows, f32 KV; with pat, DuoAttention (sparsity 0.5, sink 4,
 * window 24, pages of 16) and, with select, LServe page selection (budget 32) */
static lv_context *new_ctx_plan(fixture *f, uint32_t n_batch, const lv_head_pattern *pat, bool select) {
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = 4096;
    cp.n_batch = n_batch;
    cp.n_ubatch = n_batch;
    cp.kv_type = LV_KV_F32;
    cp.threadpool = f->tp;
    if (pat) {
        cp.kv_page_size = 16;
        cp.attention.heads = pat;
        cp.attention.sparsity = 0.5f;
        cp.attention.sink = 4;
        cp.attention.window = 24;
        cp.attention.select = select;
        cp.attention.kv_budget = 32;
    }
    lv_context *ctx = NULL;
    return lv_context_create(f->model, cp, &ctx) == LV_OK ? ctx : NULL;
}
static lv_context *new_ctx(fixture *f, uint32_t n_batch) { return new_ctx_plan(f, n_batch, NULL, false); }

/* DuoAttention gates for the two-layer, two-KV-head fixture: at sparsity 0.5 the two lowest stream,
 * layer 0 head 1 (0.1) and layer 1 head 0 (0.2) */
static lv_head_pattern *heads_2x2(void) {
    char tsv[512];
    snprintf(tsv, sizeof(tsv), "%s/ask-heads-2x2.tsv", lv_test_tmpdir());
    FILE *fp = fopen(tsv, "w");
    if (!fp) return NULL;
    fprintf(fp, "0.9\t0.1\n0.2\t0.8\n");
    fclose(fp);
    lv_head_pattern *pat = NULL;
    return lv_head_pattern_load(tsv, &pat) == LV_OK ? pat : NULL;
}
static const uint8_t stream_2x2[4] = {0, 1, 1, 0};

/* decode one text token at n_past (rotary position from the sequence's offset); its logits copied */
static int next_logits(lv_context *ctx, lv_pos n_past, lv_token tok, float *out, int32_t nv) {
    lv_batch b = lv_batch_init(1);
    b.n_tokens = 1;
    b.token[0] = tok;
    b.pos[0] = n_past;
    b.seq_id[0] = 0;
    b.logits[0] = 1;
    lv_status st = lv_decode(ctx, &b);
    lv_batch_free(&b);
    if (st != LV_OK) return 0;
    memcpy(out, lv_get_logits_ith(ctx, -1), (size_t)nv * sizeof(float));
    return 1;
}

/* ---- rules ---- */

TEST(ask_number_words) {
    const struct {
        int64_t n;
        const char *w;
    } cases[] = {{0, "zero"},         {1, "one"},
                 {13, "thirteen"},    {21, "twenty-one"},
                 {64, "sixty-four"},  {100, "one hundred"},
                 {101, "one hundred and one"}, {360, "three hundred and sixty"},
                 {1000, "one thousand"}, {1001, "one thousand and one"},
                 {1100, "one thousand, one hundred"}, {1234, "one thousand, two hundred and thirty-four"},
                 {100000, "one hundred thousand"}, {101000, "one hundred and one thousand"},
                 {2000005, "two million and five"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[128];
        lv_vq_number_words(cases[i].n, buf, sizeof(buf));
        CHECK(!strcmp(buf, cases[i].w), "%lld: '%s', want '%s'", (long long)cases[i].n, buf, cases[i].w);
    }
}

TEST(ask_frame_count_rules) {
    int64_t *idx = NULL, n = 0;
    /* SmolVLM2: 40 frames at 10 fps, 1 fps: round(4) = 4 frames, linspace(0, 39, 4) = 0 13 26 39 */
    REQUIRE(lv_vq_smolvlm2_indices(40, 10, 1, 64, 0, &idx, &n) == LV_OK, "%s", lv_last_error());
    CHECK(n == 4 && idx[0] == 0 && idx[1] == 13 && idx[2] == 26 && idx[3] == 39, "4 of 40: %lld frames", (long long)n);
    lv_free(idx);
    /* a long video: 64 frames, a second trimmed at each end (1440 s at 25 fps) */
    REQUIRE(lv_vq_smolvlm2_indices(36000, 25, 1, 64, 0, &idx, &n) == LV_OK, "%s", lv_last_error());
    CHECK(n == 64 && idx[0] == 25 && idx[63] == 35975, "long: %lld frames, %lld .. %lld", (long long)n, (long long)idx[0],
          (long long)idx[n - 1]);
    for (int64_t i = 1; i < n; i++) CHECK(idx[i] > idx[i - 1], "increasing at %lld", (long long)i);
    lv_free(idx);
    /* more frames asked than the video has: duplicates removed (linspace(0, 4, 10) truncated) */
    REQUIRE(lv_vq_smolvlm2_indices(5, 25, 1, 64, 10, &idx, &n) == LV_OK, "%s", lv_last_error());
    CHECK(n == 5 && idx[0] == 0 && idx[4] == 4, "5 distinct frames: %lld", (long long)n);
    lv_free(idx);
    /* 2.4 s at 1 fps: round(2.4) = 2; 2.5 s: round half to even = 2; 3.5 s: 4 */
    REQUIRE(lv_vq_smolvlm2_indices(24, 10, 1, 64, 0, &idx, &n) == LV_OK && n == 2, "2.4 s: %lld", (long long)n);
    lv_free(idx);
    REQUIRE(lv_vq_smolvlm2_indices(25, 10, 1, 64, 0, &idx, &n) == LV_OK && n == 2, "2.5 s: %lld", (long long)n);
    lv_free(idx);
    REQUIRE(lv_vq_smolvlm2_indices(35, 10, 1, 64, 0, &idx, &n) == LV_OK && n == 4, "3.5 s: %lld", (long long)n);
    lv_free(idx);
    /* Qwen: even, at least 4 at fps, at most min(max, total) */
    CHECK(lv_vq_qwen_nframes(250, 25, 2, 768, 0) == 20, "10 s at 2 fps");
    CHECK(lv_vq_qwen_nframes(30, 30, 2, 768, 0) == 4, "1 s: the minimum of 4");
    CHECK(lv_vq_qwen_nframes(3, 30, 2, 768, 0) == 2, "3 frames: one pair");
    CHECK(lv_vq_qwen_nframes(90000, 25, 2, 768, 0) == 768, "an hour: the cap");
    CHECK(lv_vq_qwen_nframes(250, 25, 2, 768, 5) == 4 && lv_vq_qwen_nframes(250, 25, 2, 768, 7) == 8, "asked counts rounded to even (half to even)");
}

TEST(ask_qwen_frame_size) {
    lv_mmproj *mm = NULL;
    REQUIRE(lv_mmproj_load(GOLDEN_DIR "/qwen2vl.gguf", 0, &mm) == LV_OK, "%s", lv_last_error());
    int32_t w, h;
    /* 320x180: 308x168 is under 128 x 28^2 pixels: scaled up by sqrt(100352 / 57600), ceil to 28 */
    CHECK(lv_mmproj_video_frame_size(mm, 320, 180, 20, &w, &h) == LV_OK && w == 448 && h == 252, "320x180: %dx%d", w, h);
    /* 1280x720: 1288x728 is over 768 x 28^2: scaled down, floor to 28 */
    CHECK(lv_mmproj_video_frame_size(mm, 1280, 720, 20, &w, &h) == LV_OK && w == 1008 && h == 560, "1280x720: %dx%d", w, h);
    /* 360 frames share 128000 x 28^2 x 0.9 pixels: at most 501760 per frame */
    CHECK(lv_mmproj_video_frame_size(mm, 1280, 720, 360, &w, &h) == LV_OK && (int64_t)w * h <= 501760 && w % 28 == 0 && h % 28 == 0,
          "1280x720, 360 frames: %dx%d", w, h);
    lv_mmproj_free(mm);
    REQUIRE(lv_mmproj_load(GOLDEN_DIR "/idefics3-s2.gguf", 0, &mm) == LV_OK, "%s", lv_last_error());
    CHECK(lv_mmproj_video_frame_size(mm, 320, 180, 20, &w, &h) == LV_OK && w == 64 && h == 64, "idefics3: the tile, %dx%d", w, h);
    lv_mmproj_free(mm);
    REQUIRE(lv_mmproj_load(GOLDEN_DIR "/mlp.gguf", 0, &mm) == LV_OK, "%s", lv_last_error());
    CHECK(lv_mmproj_video_frame_size(mm, 320, 180, 20, &w, &h) == LV_ERR_UNSUPPORTED, "mlp has no video format");
    lv_mmproj_free(mm);
}

/* ---- the SmolVLM2 prompt text, rebuilt from the sampled frames ---- */

TEST(ask_smolvlm2_prompt_text) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open(&f, "smolvlm2", path), "fixture: %s", lv_last_error());
    lv_video_ask_params p = lv_video_ask_default_params();
    p.prompt = "User:<__media__>What happens?";
    p.add_special = false;
    static char got[1 << 16];
    int64_t len = lv_video_ask_prompt_text(f.model, f.mm, f.video, &p, got, sizeof(got));
    REQUIRE(len > 0 && len < (int64_t)sizeof(got), "prompt text: %s", lv_last_error());
    /* the frames HF samples (linspace(0, 39, 4)), read here, and their times */
    int64_t want_idx[4] = {0, 13, 26, 39};
    lv_video_read_params rp = lv_video_default_read_params();
    rp.sample = LV_VIDEO_SAMPLE_INDICES;
    rp.indices = want_idx;
    rp.n_indices = 4;
    rp.width = rp.height = 64;
    lv_video_reader *rd = NULL;
    REQUIRE(lv_video_read_start(f.video, &rp, &rd) == LV_OK, "%s", lv_last_error());
    lv_video_info info;
    lv_video_get_info(f.video, &info);
    static char want[1 << 16];
    int n = snprintf(want, sizeof(want), "User:You are provided the following series of four frames from a 0:00:04 [H:MM:SS] video.\n");
    lv_video_frame fr;
    int frames = 0;
    while (lv_video_reader_next(rd, &fr) == LV_OK && fr.data) {
        CHECK(fabs(fr.time_s - (double)fr.source_frame / info.avg_fps) < 1e-6, "frame %lld: time %g", (long long)fr.source_frame, fr.time_s);
        const int s = (int)floor(fr.time_s);
        n += snprintf(want + n, sizeof(want) - (size_t)n, "\nFrame from %02d:%02d:<fake_token_around_image><global-img>", s / 60, s % 60);
        for (int i = 0; i < 4; i++) n += snprintf(want + n, sizeof(want) - (size_t)n, "<image>"); /* 4 tokens per 64 px tile */
        n += snprintf(want + n, sizeof(want) - (size_t)n, "<fake_token_around_image>");
        frames++;
    }
    lv_video_reader_free(rd);
    snprintf(want + n, sizeof(want) - (size_t)n, "\n\nWhat happens?");
    CHECK(frames == 4, "4 frames read");
    CHECK(!strcmp(got, want), "prompt text:\n%s\nwant:\n%s", got, want);
    /* the plan agrees */
    lv_video_ask_plan pl;
    REQUIRE(lv_video_ask_plan_for(f.model, f.mm, f.video, &p, &pl) == LV_OK, "%s", lv_last_error());
    CHECK(pl.n_frames == 4 && pl.n_units == 4 && pl.unit_tokens == 4 && pl.frame_w == 64 && !strcmp(pl.family, "smolvlm2"), "plan");
    fixture_free(&f);
}

/* A model with the builtin:bytes-vision vocabulary (no space prefix: its rows read back as the text,
 * each space as SentencePiece's U+2581 in three byte tokens) */
static lv_model *bytes_vision_model(void) {
    char path[512];
    snprintf(path, sizeof(path), "%s/bytes-vision.gguf", lv_test_tmpdir());
    lv_genmodel_params gp = lv_genmodel_default_params();
    gp.arch = "llama";
    gp.n_embd = 16, gp.n_layer = 1, gp.n_head = 2, gp.n_ff = 32;
    gp.vocab_path = "builtin:bytes-vision";
    lv_model *m = NULL;
    if (lv_genmodel_write(&gp, path) != LV_OK || lv_model_load(path, lv_model_default_params(), &m) != LV_OK) return NULL;
    return m;
}

/* the rows as text: each token's piece, an embedding row as <image> (<carrier> past 4 rows) */
static int64_t rows_text(const lv_model *m, const lv_video_prompt *vp, char *buf, int64_t cap) {
    int64_t n = 0;
    buf[0] = 0;
    for (int64_t r = 0; r < vp->n_rows; r++) {
        if (vp->tokens[r] == LV_TOKEN_EMBD) {
            n += snprintf(buf + n, (size_t)(cap - n), "%s", vp->row[r] < 4 ? "<image>" : "<carrier>");
            continue;
        }
        const int32_t k = lv_token_to_piece(m, vp->tokens[r], buf + n, (int32_t)(cap - n - 1), true);
        if (k < 0) return -1;
        n += k;
        buf[n] = 0;
    }
    return n;
}

/* lv_video_prompt_build (frames the caller holds, as `train-video` gives them) lays out the rows
 * lv_video_ask does for a video with those frame times: the same tokens, the embedding rows where
 * the units are, each row's frame and place */
TEST(ask_video_prompt_build_equals_the_asked_layout) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open(&f, "smolvlm2", path), "fixture: %s", lv_last_error());
    lv_video_ask_params p = lv_video_ask_default_params();
    p.prompt = "User:<__media__>What happens?";
    lv_vq_layout l;
    REQUIRE(lv_vq_layout_build(f.model, f.mm, f.video, &p, 0, &l) == LV_OK, "%s", lv_last_error());
    double t[64];
    REQUIRE(l.plan.n_frames == 4, "4 frames");
    for (int64_t i = 0; i < l.plan.n_frames; i++) t[i] = (double)l.frame_idx[i] / l.video_fps;
    lv_video_prompt vp;
    REQUIRE(lv_video_prompt_build(f.model, l.plan.unit_tokens, l.plan.n_frames, t, l.plan.duration_s, &p, &vp) == LV_OK, "%s",
            lv_last_error());
    CHECK(vp.n_rows == l.plan.n_rows, "rows %lld, the layout's %lld", (long long)vp.n_rows, (long long)l.plan.n_rows);
    int64_t bad = 0;
    for (int32_t si = 0; si < l.n_segs && vp.n_rows == l.plan.n_rows; si++) {
        const lv_vq_seg *sg = &l.segs[si];
        for (int32_t i = 0; i < sg->n; i++) {
            const int64_t r = sg->row0 + i;
            if (sg->unit) bad += vp.tokens[r] != LV_TOKEN_EMBD || vp.frame[r] != (int32_t)sg->first || vp.row[r] != i;
            else bad += vp.tokens[r] != l.tokens[sg->first + i] || vp.frame[r] != -1 || vp.row[r] != -1;
        }
    }
    CHECK(bad == 0, "%lld rows differ from lv_video_ask's layout", (long long)bad);
    lv_vq_layout_free(&l);
    lv_video_prompt_free(&vp);
    fixture_free(&f);

    /* the text, the caller's frame times (61 s reads 01:01), VideoScan's carriers */
    lv_model *m = bytes_vision_model();
    REQUIRE(m, "bytes-vision model: %s", lv_last_error());
    p.add_special = false;
    static char got[1 << 16];
    const double t2[4] = {0, 1, 61, 3599};
    REQUIRE(lv_video_prompt_build(m, 4, 4, t2, 3600.5, &p, &vp) == LV_OK, "%s", lv_last_error());
    const char *want = "User:You are provided the following series of four frames from a 1:00:00 [H:MM:SS] video.\n"
                       "\nFrame from 00:00:<fake_token_around_image><global-img><image><image><image><image><fake_token_around_image>"
                       "\nFrame from 00:01:<fake_token_around_image><global-img><image><image><image><image><fake_token_around_image>"
                       "\nFrame from 01:01:<fake_token_around_image><global-img><image><image><image><image><fake_token_around_image>"
                       "\nFrame from 59:59:<fake_token_around_image><global-img><image><image><image><image><fake_token_around_image>"
                       "\n\nWhat happens?";
    int64_t spaces = 0;
    for (const char *c = want; *c; c++) spaces += *c == ' ';
    CHECK(rows_text(m, &vp, got, sizeof(got)) > 0, "rows as text");
    for (char *c; (c = strstr(got, "\xe2\x96\x81"));) { /* U+2581 -> ' ' */
        *c = ' ';
        memmove(c + 1, c + 3, strlen(c + 3) + 1);
    }
    CHECK(!strcmp(got, want), "rows:\n%s\nwant:\n%s", got, want);
    CHECK(vp.n_rows == (int64_t)strlen(want) + 2 * spaces - 4 * (4 * 7 + 2 * 25 + 12) + 4 * (4 + 3) - 2, "one row per byte and marker, each \\n\\n one (%lld)",
          (long long)vp.n_rows);
    lv_video_prompt carr;
    p.carrier = true;
    REQUIRE(lv_video_prompt_build(m, 4, 4, t2, 3600.5, &p, &carr) == LV_OK, "%s", lv_last_error());
    int64_t carriers = 0;
    for (int64_t r = 1; r < carr.n_rows; r++) carriers += carr.row[r] == 4 && carr.tokens[r] == LV_TOKEN_EMBD && carr.row[r - 1] == 3;
    CHECK(carr.n_rows == vp.n_rows + 4 && carriers == 4, "carrier rows: %lld rows, %lld carriers", (long long)carr.n_rows, (long long)carriers);
    lv_video_prompt_free(&carr);
    lv_video_prompt_free(&vp);
    p.carrier = false;
    /* bad input */
    const double back[2] = {2, 1};
    CHECK(lv_video_prompt_build(m, 4, 2, back, 3, &p, &vp) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "before"), "%s", lv_last_error());
    CHECK(lv_video_prompt_build(m, 0, 2, t2, 3, &p, &vp) == LV_ERR_INVALID_ARG && vp.n_rows == 0 && !vp.tokens, "no rows");
    lv_model_free(m);
}

/* builtin:bytes-vision: SmolVLM2's markers and "\n\n" are one token each, every other text is its bytes (no space prefix) */
TEST(ask_bytes_vision_vocabulary) {
    lv_model *m = bytes_vision_model();
    REQUIRE(m, "bytes-vision model: %s", lv_last_error());
    CHECK(lv_model_n_vocab(m) == 264, "264 tokens (%d)", lv_model_n_vocab(m));
    const char *text = "ab<fake_token_around_image><global-img><image><end_of_utterance>\n\nc\n";
    lv_token tok[128];
    const int32_t n = lv_tokenize(m, text, (int64_t)strlen(text), tok, 128, false, true);
    CHECK(n == 9 && tok[0] == 3 + 'a' && tok[1] == 3 + 'b' && tok[2] == 259 && tok[3] == 260 && tok[4] == 261 && tok[5] == 262 && tok[6] == 263 &&
              tok[7] == 3 + 'c' && tok[8] == 3 + '\n',
          "tokens: %d (%d %d %d %d %d %d %d %d %d)", n, tok[0], tok[1], tok[2], tok[3], tok[4], tok[5], tok[6], tok[7], tok[8]);
    const int32_t nb = lv_tokenize(m, text, (int64_t)strlen(text), tok, 128, false, false);
    CHECK(nb == (int32_t)strlen(text) - 1, "without parse_special every byte but the pair of newlines is a token (%d)", nb);
    char piece[64];
    const int32_t k = lv_token_to_piece(m, 260, piece, sizeof(piece), true);
    CHECK(k == 12 && !memcmp(piece, "<global-img>", 12), "piece of 260");
    lv_model_free(m);
}

/* ---- overlapped == sequential, bit for bit ---- */

static void overlapped_vs_sequential(const char *family) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open(&f, family, path), "%s fixture: %s", family, lv_last_error());
    const int32_t nv = lv_model_n_vocab(f.model);
    float *la = malloc((size_t)nv * sizeof(float)), *lb = malloc((size_t)nv * sizeof(float));
    float *na = malloc((size_t)nv * sizeof(float)), *nb = malloc((size_t)nv * sizeof(float));
    lv_context *ca = new_ctx(&f, 7), *cb = new_ctx(&f, 7); /* 7 rows a batch: batches cut across units */
    REQUIRE(ca && cb && la && lb && na && nb, "contexts: %s", lv_last_error());
    lv_video_ask_params p = lv_video_ask_default_params();
    p.prompt = "Look: <__media__> What moves?";
    p.n_decode_threads = 2;
    p.max_buffered_bytes = 64 * 64 * 3 * 2; /* two frames ahead: the decode threads must wait */
    lv_pos npa = 0, npb = 0;
    lv_video_ask_result ra, rb;
    REQUIRE(lv_video_ask(ca, f.mm, f.video, &p, &npa, &ra) == LV_OK, "%s overlapped: %s", family, lv_last_error());
    memcpy(la, lv_get_logits_ith(ca, -1), (size_t)nv * sizeof(float));
    p.sequential = true;
    REQUIRE(lv_video_ask(cb, f.mm, f.video, &p, &npb, &rb) == LV_OK, "%s sequential: %s", family, lv_last_error());
    memcpy(lb, lv_get_logits_ith(cb, -1), (size_t)nv * sizeof(float));
    CHECK(npa == npb && npa == ra.plan.n_rows && lv_kv_seq_n_tokens(ca, 0) == npa, "%s: n_past %d and %d, rows %lld", family, npa, npb,
          (long long)ra.plan.n_rows);
    CHECK(ra.plan.n_frames >= 4 && ra.plan.n_frames == rb.plan.n_frames, "%s: %lld frames", family, (long long)ra.plan.n_frames);
    CHECK(memcmp(la, lb, (size_t)nv * sizeof(float)) == 0, "%s: the overlapped pipeline's logits differ from the sequential one's", family);
    CHECK(lv_kv_seq_rope_offset(ca, 0) == lv_kv_seq_rope_offset(cb, 0), "%s: rotary offsets %d and %d", family, lv_kv_seq_rope_offset(ca, 0),
          lv_kv_seq_rope_offset(cb, 0));
    /* and the next token sees the same cache and rotary offset */
    REQUIRE(next_logits(ca, npa, 5, na, nv) && next_logits(cb, npb, 5, nb, nv), "next token: %s", lv_last_error());
    CHECK(memcmp(na, nb, (size_t)nv * sizeof(float)) == 0, "%s: the next token's logits differ", family);
    lv_context_free(ca);
    lv_context_free(cb);
    free(la);
    free(lb);
    free(na);
    free(nb);
    fixture_free(&f);
}

/* The shared thread budget changes who runs when, never the batches: for pools of 1, 2 and 3
 * threads and 1 or 3 decode threads, the overlapped logits equal the sequential ones bit for bit
 * (at the same pool size), with the budget and without it; the budget held at most the pool's
 * threads. */
static void budget_combos(const char *family) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open(&f, family, path), "%s fixture: %s", family, lv_last_error());
    const int32_t nv = lv_model_n_vocab(f.model);
    float *ref = malloc((size_t)nv * sizeof(float));
    REQUIRE(ref, "memory");
    lv_threadpool *tp2 = f.tp;
    for (int t = 1; t <= 3; t++) {
        lv_threadpool *tp = lv_threadpool_create(t);
        REQUIRE(tp, "pool");
        f.tp = tp;
        for (int k = 0; k < 4; k++) {
            lv_context *c = new_ctx(&f, 7);
            REQUIRE(c, "context: %s", lv_last_error());
            lv_video_ask_params p = lv_video_ask_default_params();
            p.prompt = "Look: <__media__> What moves?";
            p.max_buffered_bytes = 64 * 64 * 3 * 3;
            p.sequential = k == 0;
            p.n_decode_threads = k == 1 ? 1 : 3;
            p.no_budget = k == 3;
            lv_pos np = 0;
            lv_video_ask_result r;
            REQUIRE(lv_video_ask(c, f.mm, f.video, &p, &np, &r) == LV_OK, "%s t=%d k=%d: %s", family, t, k, lv_last_error());
            const float *l = lv_get_logits_ith(c, -1);
            if (k == 0) memcpy(ref, l, (size_t)nv * sizeof(float));
            else CHECK(memcmp(ref, l, (size_t)nv * sizeof(float)) == 0, "%s: -t %d -j %d%s: the overlapped logits differ from the sequential", family,
                       t, p.n_decode_threads, p.no_budget ? " (no budget)" : "");
            if (k == 1 || k == 2)
                CHECK(r.budget_tokens == t && r.budget_max_held >= 1 && r.budget_max_held <= t, "%s -t %d -j %d: budget of %d, at most %d held",
                      family, t, p.n_decode_threads, r.budget_tokens, r.budget_max_held);
            else
                CHECK(r.budget_tokens == 0, "%s: a budget in a run without one", family);
            lv_context_free(c);
        }
        f.tp = tp2;
        lv_threadpool_free(tp);
    }
    free(ref);
    fixture_free(&f);
}

TEST(ask_budget_threads_smolvlm2) { budget_combos("smolvlm2"); }
TEST(ask_budget_threads_qwen25vl) { budget_combos("qwen2.5vl"); }

TEST(ask_overlapped_equals_sequential_smolvlm2) { overlapped_vs_sequential("smolvlm2"); }
TEST(ask_overlapped_equals_sequential_qwen2vl) { overlapped_vs_sequential("qwen2vl"); }
TEST(ask_overlapped_equals_sequential_qwen25vl) { overlapped_vs_sequential("qwen2.5vl"); }

/* ---- Qwen: rows and positions against a batch built by hand ---- */

/* carrier: VideoScan's rows (each pair's carrier, the mean of its embeddings, at the pair's t and the
 * grid's last (h, w)), prefilled here pair by pair, each pair's visual rows dropped after it */
static void qwen_hand_batch(const char *family, bool carrier) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open(&f, family, path), "%s fixture: %s", family, lv_last_error());
    const bool q25 = !strcmp(family, "qwen2.5vl");
    const int32_t nv = lv_model_n_vocab(f.model), E = lv_model_n_embd(f.model);
    /* 40 frames at 10 fps, 2 fps: 8 frames, 4 pairs; 64x48 -> 56x56 rounded, under 128 x 28^2 pixels:
     * scaled up by sqrt(100352 / 3072) and ceil to 28: 392 x 280 (14 x 10 merged tokens) */
    const int W = 392, H = 280, nx = 14, ny = 10, T = nx * ny, NF = 8, NP = 4, C = carrier ? 1 : 0;
    lv_video_ask_params p = lv_video_ask_default_params();
    p.prompt = "A<__media__>B?";
    p.add_special = false;
    p.carrier = carrier;
    p.carrier_max = 0;
    lv_video_ask_plan pl;
    REQUIRE(lv_video_ask_plan_for(f.model, f.mm, f.video, &p, &pl) == LV_OK, "%s", lv_last_error());
    REQUIRE(pl.n_frames == NF && pl.frame_w == W && pl.frame_h == H && pl.unit_tokens == T && pl.nx == nx, "%s plan: %lld frames %dx%d, %d tokens",
            family, (long long)pl.n_frames, pl.frame_w, pl.frame_h, pl.unit_tokens);
    /* the frames: 8 spread evenly, read here */
    lv_video_read_params rp = lv_video_default_read_params();
    rp.sample = LV_VIDEO_SAMPLE_COUNT;
    rp.n_frames = NF;
    rp.width = W;
    rp.height = H;
    void *frames = NULL;
    int64_t nfr = 0, fsize = 0;
    REQUIRE(lv_video_read_all(f.video, &rp, &frames, &nfr, &fsize) == LV_OK && nfr == NF, "frames: %s", lv_last_error());
    /* the rows: "A<|vision_start|>", 4 pairs (encoded through the image API's pair call), "<|vision_end|>B?" */
    lv_token pre[16], post[16];
    const int32_t npre = lv_tokenize(f.model, "A<|vision_start|>", (int64_t)strlen("A<|vision_start|>"), pre, 16, false, true);
    const int32_t npost = lv_tokenize(f.model, "<|vision_end|>B?", (int64_t)strlen("<|vision_end|>B?"), post, 16, false, true);
    REQUIRE(npre > 0 && npost > 0, "tokenize");
    const int32_t N = npre + NP * (T + C) + npost;
    CHECK(pl.n_rows == N, "rows %lld, want %d", (long long)pl.n_rows, N);
    lv_batch b = lv_batch_init_embd(N, E);
    b.n_tokens = N;
    int32_t r = 0;
    for (int32_t i = 0; i < npre; i++, r++) {
        b.token[r] = pre[i];
        for (int k = 0; k < 4; k++) b.pos_mrope[k * N + r] = r;
    }
    const int32_t st = npre;
    /* HF get_rope_index: seconds per pair 2 / sample fps (8 / 40 x 10 = 2 fps: 1 s), 2 tokens per second */
    int32_t tmax = 0;
    for (int32_t g = 0; g < NP; g++) {
        lv_image_embd e;
        REQUIRE(lv_mmproj_encode_pair(f.mm, f.tp, (const uint8_t *)frames + 2 * g * fsize, (const uint8_t *)frames + (2 * g + 1) * fsize, W, H,
                                      &e) == LV_OK && e.n_tokens == T, "pair %d: %s", g, lv_last_error());
        const int32_t t = q25 ? (int32_t)(g * 1.0 * 2.0) : g;
        tmax = t > tmax ? t : tmax;
        for (int32_t i = 0; i < T; i++, r++) {
            b.token[r] = LV_TOKEN_EMBD;
            memcpy(b.embd + (int64_t)r * E, e.embd + (int64_t)i * E, (size_t)E * sizeof(float));
            b.pos_mrope[0 * N + r] = st + t;
            b.pos_mrope[1 * N + r] = st + i / nx;
            b.pos_mrope[2 * N + r] = st + i % nx;
            b.pos_mrope[3 * N + r] = 0;
        }
        if (carrier) {
            b.token[r] = LV_TOKEN_EMBD;
            for (int32_t d = 0; d < E; d++) {
                double m = 0;
                for (int32_t i = 0; i < T; i++) m += e.embd[(int64_t)i * E + d];
                b.embd[(int64_t)r * E + d] = (float)(m / T);
            }
            b.pos_mrope[0 * N + r] = st + t;
            b.pos_mrope[1 * N + r] = st + ny - 1;
            b.pos_mrope[2 * N + r] = st + nx - 1;
            b.pos_mrope[3 * N + r] = 0;
            r++;
        }
        lv_image_embd_free(&e);
    }
    const int32_t after = st + (tmax > nx - 1 ? tmax : nx - 1) + 1; /* ny < nx */
    for (int32_t i = 0; i < npost; i++, r++) {
        b.token[r] = post[i];
        for (int k = 0; k < 4; k++) b.pos_mrope[k * N + r] = after + i;
    }
    for (int32_t i = 0; i < N; i++) {
        b.pos[i] = i;
        b.seq_id[i] = 0;
        b.logits[i] = i == N - 1;
    }
    lv_context *ch = new_ctx(&f, (uint32_t)N), *ca = new_ctx(&f, (uint32_t)N);
    REQUIRE(ch && ca, "contexts");
    if (!carrier) {
        REQUIRE(lv_decode(ch, &b) == LV_OK, "hand batch: %s", lv_last_error());
    } else { /* the text and pair 0 with its carrier, each next pair with its carrier, the text after */
        lv_batch sb = lv_batch_init_embd(N, E);
        uint8_t vis[1024];
        for (int32_t r0 = 0, g = 0; r0 < N; g++) {
            const int32_t r1 = g < NP ? npre + (g + 1) * (T + 1) : N, n = r1 - r0;
            sb.n_tokens = n;
            for (int32_t j = 0; j < n; j++) {
                sb.token[j] = b.token[r0 + j];
                sb.pos[j] = b.pos[r0 + j];
                sb.seq_id[j] = 0;
                sb.logits[j] = r0 + j == N - 1;
                memcpy(sb.embd + (int64_t)j * E, b.embd + (int64_t)(r0 + j) * E, (size_t)E * sizeof(float));
                for (int k = 0; k < 4; k++) sb.pos_mrope[k * n + j] = b.pos_mrope[k * N + r0 + j];
                vis[j] = g < NP && j >= n - 1 - T && j < n - 1;
            }
            REQUIRE(lv_decode(ch, &sb) == LV_OK, "hand batch %d: %s", g, lv_last_error());
            if (g < NP) REQUIRE(lv_kv_seq_carrier_keep(ch, 0, n, vis, 0, -1, NULL) == LV_OK, "carrier %d: %s", g, lv_last_error());
            r0 = r1;
        }
        lv_batch_free(&sb);
    }
    float *lh = malloc((size_t)nv * sizeof(float));
    memcpy(lh, lv_get_logits_ith(ch, -1), (size_t)nv * sizeof(float));
    lv_pos np = 0;
    REQUIRE(lv_video_ask(ca, f.mm, f.video, &p, &np, NULL) == LV_OK, "ask: %s", lv_last_error());
    const float *la = lv_get_logits_ith(ca, -1);
    float maxd = 0;
    for (int32_t i = 0; i < nv; i++) maxd = fmaxf(maxd, fabsf(la[i] - lh[i]));
    CHECK(maxd == 0, "%s: logits differ from the hand-built batch's by %g", family, maxd);
    CHECK(lv_kv_seq_rope_offset(ca, 0) == after + npost - N, "%s: rotary offset %d, want %d", family, lv_kv_seq_rope_offset(ca, 0),
          after + npost - N);
    free(lh);
    lv_batch_free(&b);
    lv_video_frames_free(frames);
    lv_context_free(ch);
    lv_context_free(ca);
    fixture_free(&f);
}

TEST(ask_qwen2vl_rows_and_positions) { qwen_hand_batch("qwen2vl", false); }
TEST(ask_qwen25vl_rows_and_positions) { qwen_hand_batch("qwen2.5vl", false); }
TEST(ask_videoscan_qwen2vl_rows_and_positions) { qwen_hand_batch("qwen2vl", true); }
TEST(ask_videoscan_qwen25vl_rows_and_positions) { qwen_hand_batch("qwen2.5vl", true); }

/* ---- rollback ---- */

static int abort_countdown;
static bool abort_after(void *user) { return --abort_countdown < 0; }

/* a context holding a text prefix; after a failed question its next token's logits must equal
 * those of a context that never saw the question */
static void check_rollback(fixture *f, const char *what, lv_status want_st, void (*setup)(lv_video_ask_params *)) {
    const int32_t nv = lv_model_n_vocab(f->model);
    lv_context *ca = new_ctx(f, 5), *cb = new_ctx(f, 5);
    REQUIRE(ca && cb, "contexts");
    lv_batch b = lv_batch_init(4);
    b.n_tokens = 4;
    for (int i = 0; i < 4; i++) {
        b.token[i] = 10 + i;
        b.pos[i] = i;
        b.seq_id[i] = 0;
        b.logits[i] = 0;
    }
    REQUIRE(lv_decode(ca, &b) == LV_OK && lv_decode(cb, &b) == LV_OK, "prefix: %s", lv_last_error());
    lv_batch_free(&b);
    lv_video_ask_params p = lv_video_ask_default_params();
    p.prompt = "<__media__>Q";
    p.n_decode_threads = 2;
    setup(&p);
    lv_pos np = 4;
    const int32_t off = lv_kv_seq_rope_offset(ca, 0);
    lv_status st = lv_video_ask(ca, f->mm, f->video, &p, &np, NULL);
    CHECK(st == want_st, "%s: %s (%s), want %s", what, lv_status_str(st), lv_last_error(), lv_status_str(want_st));
    if (want_st == LV_ERR_FORMAT) CHECK(strstr(lv_last_error(), "sampled frame") != NULL, "%s: the message says what was lost: %s", what, lv_last_error());
    CHECK(np == 4 && lv_kv_seq_n_tokens(ca, 0) == 4 && lv_kv_seq_rope_offset(ca, 0) == off, "%s: the sequence holds %lld tokens, n_past %d",
          what, (long long)lv_kv_seq_n_tokens(ca, 0), np);
    float *la = malloc((size_t)nv * sizeof(float)), *lb = malloc((size_t)nv * sizeof(float));
    REQUIRE(next_logits(ca, 4, 7, la, nv) && next_logits(cb, 4, 7, lb, nv), "next: %s", lv_last_error());
    CHECK(memcmp(la, lb, (size_t)nv * sizeof(float)) == 0, "%s: the context is not as it was", what);
    free(la);
    free(lb);
    lv_context_free(ca);
    lv_context_free(cb);
}

static void setup_abort(lv_video_ask_params *p) {
    abort_countdown = 3; /* a few frames and batches in */
    p->abort_fn = abort_after;
}
static void setup_abort_seq(lv_video_ask_params *p) {
    setup_abort(p);
    p->sequential = true;
    abort_countdown = 6;
}
static void setup_all_frames(lv_video_ask_params *p) { p->n_frames = 1000; }
static void setup_all_frames_seq(lv_video_ask_params *p) {
    p->n_frames = 1000;
    p->sequential = true;
}

TEST(ask_abort_restores_the_context) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    const char *fams[2] = {"smolvlm2", "qwen2.5vl"};
    for (int i = 0; i < 2; i++) {
        fixture f;
        REQUIRE(fixture_open(&f, fams[i], path), "fixture: %s", lv_last_error());
        check_rollback(&f, fams[i], LV_ERR_ABORTED, setup_abort);
        check_rollback(&f, fams[i], LV_ERR_ABORTED, setup_abort_seq);
        fixture_free(&f);
    }
}

static void quiet(lv_log_level level, const char *msg, void *user) {}

TEST(ask_damaged_clip_restores_the_context) {
    /* the clip's packets from 30% to 60% of the file overwritten with noise (the index, at the end
     * of the file, intact): about a third of the frames cannot be decoded */
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    size_t n = 0;
    uint8_t *data = (uint8_t *)lv_test_read_file(path, &n);
    REQUIRE(data && n > 4000, "read %s", path);
    lv_test_rng rng = {12345};
    for (size_t i = n * 3 / 10; i < n * 6 / 10; i++) data[i] = (uint8_t)lv_test_rng_u64(&rng);
    char holed[512];
    snprintf(holed, sizeof(holed), "%s/ask/damaged.mp4", lv_test_tmpdir());
    FILE *fp = fopen(holed, "wb");
    REQUIRE(fp, "write %s", holed);
    fwrite(data, 1, n, fp);
    fclose(fp);
    free(data);
    lv_log_set(quiet, NULL, LV_LOG_WARN);
    fixture f;
    int ok = fixture_open(&f, "smolvlm2", holed);
    if (!ok) {
        lv_log_set(NULL, NULL, LV_LOG_WARN);
        fixture_free(&f);
        CHECK(1, "open failed cleanly");
        return;
    }
    check_rollback(&f, "damaged, overlapped", LV_ERR_FORMAT, setup_all_frames);
    check_rollback(&f, "damaged, sequential", LV_ERR_FORMAT, setup_all_frames_seq);
    lv_log_set(NULL, NULL, LV_LOG_WARN);
    fixture_free(&f);
}

TEST(ask_errors) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open(&f, "smolvlm2", path), "fixture: %s", lv_last_error());
    lv_video_ask_params p = lv_video_ask_default_params();
    p.prompt = "<__media__> and <__media__>";
    lv_video_ask_plan pl;
    CHECK(lv_video_ask_plan_for(f.model, f.mm, f.video, &p, &pl) == LV_ERR_INVALID_ARG && strstr(lv_last_error(), "one video"),
          "two markers: %s", lv_last_error());
    p.prompt = "hi";
    p.fps = -1;
    CHECK(lv_video_ask_plan_for(f.model, f.mm, f.video, &p, &pl) == LV_ERR_INVALID_ARG, "negative fps");
    /* a context too small: a clear error, nothing changed */
    p.fps = 0;
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = 32;
    cp.threadpool = f.tp;
    lv_context *ctx = NULL;
    REQUIRE(lv_context_create(f.model, cp, &ctx) == LV_OK, "%s", lv_last_error());
    lv_pos np = 0;
    CHECK(lv_video_ask(ctx, f.mm, f.video, &p, &np, NULL) == LV_ERR_CONTEXT_FULL && strstr(lv_last_error(), "positions"), "context full: %s",
          lv_last_error());
    CHECK(np == 0 && lv_kv_seq_n_tokens(ctx, 0) == 0, "nothing decoded");
    lv_context_free(ctx);
    fixture_free(&f);
}

/* every allocation failing in turn (both executions): an error with the context as it was, or a
 * result; never a crash or a leak (the ASan build checks leaks) */
TEST(ask_allocation_failures) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open(&f, "qwen2.5vl", path), "fixture: %s", lv_last_error());
    lv_context *ctx = new_ctx(&f, 64);
    REQUIRE(ctx, "context");
    for (int var = 0; var < 6; var++) {
        const int seq = var & 1;
        int n, ok = 0;
        for (n = 0; n < 200 && !ok; n += 1 + n / 8) {
            lv_video_ask_params p = lv_video_ask_default_params();
            p.prompt = "<__media__>Q";
            p.n_decode_threads = 1;
            p.sequential = seq;
            if (var & 2) { /* QuickPrefill: groups of one pair, half their rows pruned */
                p.keep = 0.5;
                p.group = 2;
            }
            if (var & 4) { /* VideoScan+: a carrier and one row per pair kept, a cap of one carrier */
                p.carrier = true;
                p.carrier_keep = 1;
                p.carrier_max = 1;
            }
            lv_pos np = 0;
            lv_test_alloc_fail_after(n);
            lv_status st = lv_video_ask(ctx, f.mm, f.video, &p, &np, NULL);
            lv_test_alloc_fail_after(-1);
            CHECK(st == LV_OK || (np == 0 && lv_kv_seq_n_tokens(ctx, 0) == 0 && lv_kv_seq_rope_offset(ctx, 0) == 0),
                  "allocation %d failing (%s): %s, the sequence holds %lld tokens", n, seq ? "sequential" : "overlapped", lv_status_str(st),
                  (long long)lv_kv_seq_n_tokens(ctx, 0));
            if (st == LV_OK) {
                ok = 1;
                CHECK(lv_kv_seq_rm(ctx, 0, 0, -1) == LV_OK, "clear");
            }
        }
        CHECK(ok, "%s: no run succeeded within %d allocations", seq ? "sequential" : "overlapped", n);
    }
    lv_context_free(ctx);
    fixture_free(&f);
}

/* ---- QuickPrefill ---- */

/* a context of batches of n_batch rows; QuickPrefill with keep and group (keep 0: off); the last
 * row's logits into out, the result into res */
/* the questions of the QuickPrefill and VideoScan tests: this prompt, 2 decode threads two frames
 * ahead, the given execution and frame count; the last row's logits into out */
static lv_video_ask_params ask_params(bool sequential, int64_t n_frames) {
    lv_video_ask_params p = lv_video_ask_default_params();
    p.prompt = "Look: <__media__> What moves?";
    p.n_decode_threads = 2;
    p.max_buffered_bytes = 64 * 64 * 3 * 2;
    p.sequential = sequential;
    p.n_frames = n_frames;
    return p;
}
static int ask_run(fixture *f, lv_context *ctx, const lv_video_ask_params *p, float *out, lv_video_ask_result *res) {
    lv_pos np = 0;
    if (lv_video_ask(ctx, f->mm, f->video, p, &np, res) != LV_OK) return 0;
    memcpy(out, lv_get_logits_ith(ctx, -1), (size_t)lv_model_n_vocab(f->model) * sizeof(float));
    return 1;
}

static int ask_into(fixture *f, lv_context *ctx, double keep, int32_t group, bool sequential, int64_t n_frames, float *out,
                    lv_video_ask_result *res) {
    lv_video_ask_params p = ask_params(sequential, n_frames);
    p.keep = keep;
    p.group = group;
    return ask_run(f, ctx, &p, out, res);
}

/* overlapped == sequential with pruning (the groups cut the batches alike); keep 1 == dense */
static void quickprefill_executions(const char *family) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open(&f, family, path), "%s fixture: %s", family, lv_last_error());
    const int32_t nv = lv_model_n_vocab(f.model);
    float *l[4], *nx[2];
    for (int i = 0; i < 4; i++) l[i] = malloc((size_t)nv * sizeof(float));
    for (int i = 0; i < 2; i++) nx[i] = malloc((size_t)nv * sizeof(float));
    lv_context *c[4];
    for (int i = 0; i < 4; i++) c[i] = new_ctx(&f, 7);
    REQUIRE(c[0] && c[1] && c[2] && c[3], "contexts: %s", lv_last_error());
    const int64_t frames = !strcmp(family, "smolvlm2") ? 7 : 0; /* SmolVLM2: 7 frames in groups of 3 (3, 3, 1); Qwen: 4 pairs, groups of 3 -> 2 pairs */
    lv_video_ask_result r[4];
    REQUIRE(ask_into(&f, c[0], 0.5, 3, false, frames, l[0], &r[0]), "%s overlapped keep 0.5: %s", family, lv_last_error());
    REQUIRE(ask_into(&f, c[1], 0.5, 3, true, frames, l[1], &r[1]), "%s sequential keep 0.5: %s", family, lv_last_error());
    CHECK(memcmp(l[0], l[1], (size_t)nv * sizeof(float)) == 0, "%s keep 0.5: overlapped and sequential logits differ", family);
    CHECK(r[0].n_pruned == r[1].n_pruned && r[0].n_pruned > 0 && r[0].n_groups == r[1].n_groups && r[0].n_groups >= 2,
          "%s: %lld / %lld rows pruned in %lld groups", family, (long long)r[0].n_pruned, (long long)r[1].n_pruned, (long long)r[0].n_groups);
    CHECK(lv_kv_used_bytes(c[0]) == lv_kv_used_bytes(c[1]), "%s: KV bytes %lld and %lld", family, (long long)lv_kv_used_bytes(c[0]),
          (long long)lv_kv_used_bytes(c[1]));
    CHECK(lv_kv_seq_n_tokens(c[0], 0) == r[0].plan.n_rows, "%s: the sequence's length stays its positions", family);
    REQUIRE(next_logits(c[0], (lv_pos)r[0].n_past, 5, nx[0], nv) && next_logits(c[1], (lv_pos)r[1].n_past, 5, nx[1], nv), "next: %s",
            lv_last_error());
    CHECK(memcmp(nx[0], nx[1], (size_t)nv * sizeof(float)) == 0, "%s keep 0.5: the next token's logits differ", family);
    /* keep 1: groups and prune calls, nothing pruned: the dense logits bit for bit */
    REQUIRE(ask_into(&f, c[2], 1.0, 3, false, frames, l[2], &r[2]), "%s keep 1: %s", family, lv_last_error());
    REQUIRE(ask_into(&f, c[3], 0, 0, false, frames, l[3], &r[3]), "%s dense: %s", family, lv_last_error());
    CHECK(r[2].n_pruned == 0 && r[2].n_groups == r[0].n_groups, "%s keep 1: %lld pruned", family, (long long)r[2].n_pruned);
    CHECK(memcmp(l[2], l[3], (size_t)nv * sizeof(float)) == 0, "%s: keep 1 differs from dense", family);
    CHECK(memcmp(l[0], l[3], (size_t)nv * sizeof(float)) != 0, "%s: keep 0.5 changed nothing", family);
    CHECK(lv_kv_used_bytes(c[0]) < lv_kv_used_bytes(c[3]), "%s: pruning saved no KV bytes", family);
    for (int i = 0; i < 4; i++) {
        lv_context_free(c[i]);
        free(l[i]);
    }
    for (int i = 0; i < 2; i++) free(nx[i]);
    fixture_free(&f);
}

TEST(ask_quickprefill_executions_smolvlm2) { quickprefill_executions("smolvlm2"); }
TEST(ask_quickprefill_executions_qwen25vl) { quickprefill_executions("qwen2.5vl"); }

/* abort once 3 frames are all in the cache: by then two groups (of one frame, or of one Qwen
 * pair) were pruned */
static bool prefilled_3;
static void note_prefilled(const lv_video_ask_progress *pg, void *user) {
    (void)user;
    prefilled_3 = prefilled_3 || pg->n_prefilled >= 3;
}
static bool abort_when_prefilled_3(void *user) {
    (void)user;
    return prefilled_3;
}
static void setup_abort_pruned(lv_video_ask_params *p) {
    p->keep = 0.5;
    p->group = 1;
    p->n_frames = 8;
    prefilled_3 = false;
    p->progress = note_prefilled;
    p->abort_fn = abort_when_prefilled_3;
}
static void setup_abort_pruned_seq(lv_video_ask_params *p) {
    setup_abort_pruned(p);
    p->sequential = true;
}

TEST(ask_quickprefill_abort_restores_the_context) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    const char *fams[2] = {"smolvlm2", "qwen2.5vl"};
    for (int i = 0; i < 2; i++) {
        fixture f;
        REQUIRE(fixture_open(&f, fams[i], path), "fixture: %s", lv_last_error());
        check_rollback(&f, fams[i], LV_ERR_ABORTED, setup_abort_pruned);
        check_rollback(&f, fams[i], LV_ERR_ABORTED, setup_abort_pruned_seq);
        fixture_free(&f);
    }
}

/* ---- QuickPrefill against a slow reference: the dense forward pass with nothing pruned, written
 * here in double precision, where a token pruned at layer l is instead masked at layer l from the
 * queries of every later group (pruning t at l == hiding t at l from every later query) ---- */

static void ref_row(const lv_tensor *t, int64_t r, float *out) {
    lv_to_float_row(t->type, (const uint8_t *)t->data + r * t->row_bytes, out, t->ne[0]);
}

static void ref_matvec(const lv_tensor *w, const double *x, double *y, float *tmp) {
    for (int64_t o = 0; o < w->ne[1]; o++) {
        ref_row(w, o, tmp);
        double s = 0;
        for (int64_t i = 0; i < w->ne[0]; i++) s += (double)tmp[i] * x[i];
        y[o] = s;
    }
}

static void ref_rmsnorm(const double *x, const lv_tensor *w, double eps, int64_t n, double *y, float *tmp) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    const double sc = 1.0 / sqrt(ss / (double)n + eps);
    ref_row(w, 0, tmp);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sc * tmp[i];
}

static void ref_rope(double *x, int64_t D, int64_t n_rot, double base, double scale, int32_t pos, bool neox) {
    for (int64_t i = 0; i < n_rot / 2; i++) {
        const double th = pos * scale * pow(base, -2.0 * (double)i / (double)n_rot);
        const int64_t a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
        const double x0 = x[a], x1 = x[b];
        x[a] = x0 * cos(th) - x1 * sin(th);
        x[b] = x0 * sin(th) + x1 * cos(th);
    }
    (void)D;
}

typedef struct norm_row {
    double n;
    int64_t row;
} norm_row;
static int cmp_norm_row(const void *a, const void *b) {
    const norm_row *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* The logits of the last of N rows (token ids, or LV_TOKEN_EMBD with E floats in embd; rotary
 * position = row), grp[row]: the row's group (n_groups for the rows after the last), prunable:
 * its embedding rows; keep: the fraction kept of each group's prunable rows at every layer. */
static void ref_forward(const lv_model *m, int64_t N, const lv_token *tok, const float *embd, const int32_t *grp, int32_t n_groups,
                        const uint8_t *prunable, double keep, double *logits) {
    if (N <= 0) return;
    const lv_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, H = hp->n_head, Hk = hp->n_head_kv, Dk = hp->n_embd_head_k, Dv = hp->n_embd_head_v, F = hp->n_ff;
    double *h = calloc((size_t)(N * E), sizeof(double)), *x = calloc((size_t)E, sizeof(double));
    double *q = calloc((size_t)(N * H * Dk), sizeof(double)), *k = calloc((size_t)(N * Hk * Dk), sizeof(double));
    double *v = calloc((size_t)(N * Hk * Dv), sizeof(double)), *o = calloc((size_t)(H * Dv), sizeof(double));
    double *y = calloc((size_t)(E > F ? E : F) * 2, sizeof(double)), *g = calloc((size_t)F, sizeof(double)), *u = calloc((size_t)F, sizeof(double));
    double *sc = calloc((size_t)N, sizeof(double));
    float *tmp = calloc((size_t)(hp->n_vocab > E ? hp->n_vocab : E) + (size_t)F + 16, sizeof(float));
    uint8_t *hidden = calloc((size_t)N, 1);
    norm_row *nr = calloc((size_t)N, sizeof(norm_row));
    for (int64_t r = 0; r < N; r++) {
        if (tok[r] == LV_TOKEN_EMBD) {
            for (int64_t e = 0; e < E; e++) h[r * E + e] = embd[r * E + e];
        } else {
            ref_row(&m->tok_embd, tok[r], tmp);
            for (int64_t e = 0; e < E; e++) h[r * E + e] = tmp[e];
        }
    }
    const bool neox = hp->rope_type == LV_ROPE_NEOX;
    for (int64_t il = 0; il < hp->n_layer; il++) {
        const lv_layer *L = &m->layers[il];
        for (int64_t r = 0; r < N; r++) {
            ref_rmsnorm(h + r * E, &L->attn_norm, hp->norm_rms_eps, E, x, tmp);
            ref_matvec(&L->wq, x, q + r * H * Dk, tmp);
            ref_matvec(&L->wk, x, k + r * Hk * Dk, tmp);
            ref_matvec(&L->wv, x, v + r * Hk * Dv, tmp);
            for (int64_t hh = 0; hh < H; hh++) ref_rope(q + (r * H + hh) * Dk, Dk, hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale, (int32_t)r, neox);
            for (int64_t hh = 0; hh < Hk; hh++) ref_rope(k + (r * Hk + hh) * Dk, Dk, hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale, (int32_t)r, neox);
        }
        /* this layer's pruning: per group, its prunable rows by the norm of their keys over the KV heads */
        memset(hidden, 0, (size_t)N);
        for (int32_t gi = 0; gi < n_groups; gi++) {
            int64_t n = 0;
            for (int64_t r = 0; r < N; r++) {
                if (grp[r] != gi || !prunable[r]) continue;
                double s = 0;
                for (int64_t e = 0; e < Hk * Dk; e++) s += k[r * Hk * Dk + e] * k[r * Hk * Dk + e];
                nr[n++] = (norm_row){s, r};
            }
            const int64_t kk = (int64_t)floor((double)n * keep);
            if (n <= kk) continue;
            qsort(nr, (size_t)n, sizeof(norm_row), cmp_norm_row);
            for (int64_t j = kk; j < n; j++) hidden[nr[j].row] = 1;
        }
        for (int64_t r = 0; r < N; r++) {
            for (int64_t hh = 0; hh < H; hh++) {
                const int64_t kh = hh / (H / Hk);
                double mx = -INFINITY, den = 0;
                for (int64_t j = 0; j <= r; j++) {
                    sc[j] = -INFINITY;
                    if (hidden[j] && grp[j] < grp[r]) continue; /* pruned at this layer for every later group */
                    double s = 0;
                    for (int64_t d = 0; d < Dk; d++) s += q[(r * H + hh) * Dk + d] * k[(j * Hk + kh) * Dk + d];
                    sc[j] = s / sqrt((double)Dk);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int64_t d = 0; d < Dv; d++) o[hh * Dv + d] = 0;
                for (int64_t j = 0; j <= r; j++) {
                    if (sc[j] == -INFINITY) continue;
                    const double p = exp(sc[j] - mx);
                    den += p;
                    for (int64_t d = 0; d < Dv; d++) o[hh * Dv + d] += p * v[(j * Hk + kh) * Dv + d];
                }
                for (int64_t d = 0; d < Dv; d++) o[hh * Dv + d] /= den;
            }
            ref_matvec(&L->wo, o, y, tmp);
            for (int64_t e = 0; e < E; e++) h[r * E + e] += y[e];
            ref_rmsnorm(h + r * E, &L->ffn_norm, hp->norm_rms_eps, E, x, tmp);
            ref_matvec(&L->ffn_gate, x, g, tmp);
            ref_matvec(&L->ffn_up, x, u, tmp);
            for (int64_t i = 0; i < F; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            ref_matvec(&L->ffn_down, g, y, tmp);
            for (int64_t e = 0; e < E; e++) h[r * E + e] += y[e];
        }
    }
    ref_rmsnorm(h + (N - 1) * E, &m->output_norm, hp->norm_rms_eps, E, x, tmp);
    ref_matvec(&m->output, x, logits, tmp);
    free(h), free(x), free(q), free(k), free(v), free(o), free(y), free(g), free(u), free(sc), free(tmp), free(hidden), free(nr);
}

/* the SmolVLM2 fixture with a text model of two layers, GQA (4 query heads on 2 KV heads), f32 weights */
static int fixture_open_2l(fixture *f, const char *video_path) {
    memset(f, 0, sizeof(*f));
    lv_video_route_libav_log();
    char mpath[512];
    snprintf(mpath, sizeof(mpath), "%s/ask-text-llama-2l.gguf", lv_test_tmpdir());
    lv_genmodel_params gp = lv_genmodel_default_params();
    gp.arch = "llama";
    gp.n_embd = 64;
    gp.n_layer = 2;
    gp.n_head = 4;
    gp.n_head_kv = 2;
    gp.n_ff = 96;
    gp.vocab_path = GOLDEN_DIR "/vocab-vlm.gguf";
    gp.ftype = LV_FTYPE_F32;
    gp.std = 0.3f; /* large enough weights that attention is far from uniform */
    gp.seed = 11;
    if (lv_genmodel_write(&gp, mpath) != LV_OK) return 0;
    if (lv_model_load(mpath, lv_model_default_params(), &f->model) != LV_OK) return 0;
    if (lv_mmproj_load(GOLDEN_DIR "/idefics3-s2.gguf", lv_model_n_embd(f->model), &f->mm) != LV_OK) return 0;
    if (lv_video_open(video_path, lv_video_default_open_params(), &f->video) != LV_OK) return 0;
    f->tp = lv_threadpool_create(2);
    return f->tp != NULL;
}

TEST(ask_quickprefill_against_the_reference) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open_2l(&f, path), "fixture: %s", lv_last_error());
    const int32_t nv = lv_model_n_vocab(f.model), E = lv_model_n_embd(f.model);
    /* the rows the pipeline prefills: its layout, the frames read and encoded here */
    lv_video_ask_params p = lv_video_ask_default_params();
    p.prompt = "Look: <__media__> What moves?";
    p.n_frames = 7;
    lv_vq_layout l;
    REQUIRE(lv_vq_layout_build(f.model, f.mm, f.video, &p, 0, &l) == LV_OK, "%s", lv_last_error());
    REQUIRE(l.plan.n_frames == 7, "%lld frames", (long long)l.plan.n_frames);
    lv_video_read_params rp = lv_video_default_read_params();
    rp.sample = LV_VIDEO_SAMPLE_INDICES;
    rp.indices = l.frame_idx;
    rp.n_indices = l.plan.n_frames;
    rp.width = l.plan.frame_w;
    rp.height = l.plan.frame_h;
    void *frames = NULL;
    int64_t nfr = 0, fsize = 0;
    REQUIRE(lv_video_read_all(f.video, &rp, &frames, &nfr, &fsize) == LV_OK && nfr == 7, "frames: %s", lv_last_error());
    const int64_t N = l.plan.n_rows, T = l.plan.unit_tokens;
    lv_token *tok = calloc((size_t)N, sizeof(lv_token));
    float *embd = calloc((size_t)(N * E), sizeof(float)), *unit = calloc((size_t)(T * E), sizeof(float));
    uint8_t *prunable = calloc((size_t)N, 1);
    double *ref = calloc((size_t)nv, sizeof(double));
    float *got = calloc((size_t)nv, sizeof(float)), *dense = calloc((size_t)nv, sizeof(float));
    const double keeps[3] = {1.0, 0.5, 0.25};
    const int32_t groups[2] = {3, 2}; /* 7 frames: groups of 3, 3, 1 and 2, 2, 2, 1 */
    int32_t *grp = calloc((size_t)N, sizeof(int32_t));
    REQUIRE(tok && embd && unit && prunable && ref && got && dense && grp, "memory");
    for (int32_t s = 0; s < l.n_segs; s++) {
        const lv_vq_seg *sg = &l.segs[s];
        if (sg->unit)
            REQUIRE(lv_mmproj_encode_frames(f.mm, f.tp, (const uint8_t *)frames + sg->first * fsize, NULL, l.plan.frame_w, l.plan.frame_h, unit) ==
                    LV_OK, "encode: %s", lv_last_error());
        for (int32_t i = 0; i < sg->n; i++) {
            const int64_t r = sg->row0 + i;
            tok[r] = sg->unit ? LV_TOKEN_EMBD : l.tokens[sg->first + i];
            prunable[r] = sg->unit;
            if (sg->unit) memcpy(embd + r * E, unit + (int64_t)i * E, (size_t)E * sizeof(float));
        }
    }
    lv_context *c0 = new_ctx(&f, 7);
    REQUIRE(c0 && ask_into(&f, c0, 0, 0, false, 7, dense, NULL), "dense: %s", lv_last_error());
    lv_context_free(c0);
    for (int gi = 0; gi < 2; gi++) {
        /* the groups: every `group` frames, the rows from the end of the previous group to the end of the group's last frame */
        int32_t g = 0, u = 0, ng = 0;
        for (int32_t s = 0; s < l.n_segs; s++) {
            const lv_vq_seg *sg = &l.segs[s];
            for (int32_t i = 0; i < sg->n; i++) grp[sg->row0 + i] = g;
            if (sg->unit && (++u % groups[gi] == 0 || u == l.plan.n_units)) ng = ++g;
        }
        for (int ki = 0; ki < 3; ki++) {
            for (int seq = 0; seq < 2; seq++) {
                lv_context *ctx = new_ctx(&f, 7);
                lv_video_ask_result res;
                lv_video_ask_params q = p;
                REQUIRE(ctx, "context");
                q.keep = keeps[ki];
                q.group = groups[gi];
                q.sequential = seq;
                q.n_decode_threads = 2;
                lv_pos np = 0;
                REQUIRE(lv_video_ask(ctx, f.mm, f.video, &q, &np, &res) == LV_OK, "ask: %s", lv_last_error());
                memcpy(got, lv_get_logits_ith(ctx, -1), (size_t)nv * sizeof(float));
                if (seq == 0) ref_forward(f.model, N, tok, embd, grp, ng, prunable, keeps[ki], ref);
                double maxd = 0, maxa = 0, maxdd = 0;
                for (int32_t i = 0; i < nv; i++) {
                    maxd = fmax(maxd, fabs((double)got[i] - ref[i]));
                    maxa = fmax(maxa, fabs(ref[i]));
                    maxdd = fmax(maxdd, fabs((double)dense[i] - ref[i]));
                }
                CHECK(maxd <= 1e-4 * maxa + 1e-5, "group %d keep %g %s: logits differ from the reference by %g (max |logit| %g)", groups[gi], keeps[ki],
                      seq ? "sequential" : "overlapped", maxd, maxa);
                if (keeps[ki] < 1) CHECK(maxdd > 100 * (1e-4 * maxa + 1e-5), "group %d keep %g: no further from dense than the tolerance (%g)", groups[gi], keeps[ki], maxdd);
                else CHECK(memcmp(got, dense, (size_t)nv * sizeof(float)) == 0, "group %d keep 1: differs from dense", groups[gi]);
                /* every full head holds the rows minus the pruned ones: the KV bytes say so (f32 keys and values) */
                int64_t want_pruned = 0;
                for (int32_t gg = 0; gg < ng; gg++) {
                    int64_t n = 0;
                    for (int64_t r = 0; r < N; r++) n += grp[r] == gg && prunable[r];
                    want_pruned += n - (int64_t)floor((double)n * keeps[ki]);
                }
                const lv_hparams *hp = &f.model->hp;
                CHECK(res.n_pruned == want_pruned && res.n_groups == ng, "group %d keep %g: %lld pruned in %lld groups, want %lld in %d", groups[gi],
                      keeps[ki], (long long)res.n_pruned, (long long)res.n_groups, (long long)want_pruned, ng);
                CHECK(lv_kv_used_bytes(ctx) == (N - want_pruned) * hp->n_layer * hp->n_head_kv * (hp->n_embd_head_k + hp->n_embd_head_v) * 4,
                      "group %d keep %g: KV bytes %lld", groups[gi], keeps[ki], (long long)lv_kv_used_bytes(ctx));
                lv_context_free(ctx);
            }
        }
    }
    free(tok), free(embd), free(unit), free(prunable), free(ref), free(got), free(dense), free(grp);
    lv_video_frames_free(frames);
    lv_vq_layout_free(&l);
    fixture_free(&f);
}

/* QuickPrefill with DuoAttention streaming heads (half the KV heads, a window the video passes) and
 * LServe page selection for the question's decode: the streaming heads are not pruned, the
 * retrieval heads are; overlapped == sequential, also through greedy decoding over the selected
 * pages of the pruned cache; with DuoAttention alone, keep 1 == the same plan without QuickPrefill */
TEST(ask_quickprefill_composes_with_duo_and_lserve) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open_2l(&f, path), "fixture: %s", lv_last_error());
    lv_head_pattern *pat = heads_2x2();
    REQUIRE(pat, "pattern: %s", lv_last_error());
    const int32_t nv = lv_model_n_vocab(f.model);
    float *l[4], *tmp = malloc((size_t)nv * sizeof(float));
    lv_token gen[4][8];
    int64_t kvb[4];
    const double keeps[4] = {0.5, 0.5, 1.0, 0};
    for (int c = 0; c < 4; c++) {
        l[c] = malloc((size_t)nv * sizeof(float));
        /* keep 1 vs off: DuoAttention alone (LServe selects for any one-row batch, and the group cuts
         * can make one: that row would read selected pages) */
        lv_context *ctx = new_ctx_plan(&f, 7, pat, c < 2);
        REQUIRE(ctx, "context: %s", lv_last_error());
        lv_video_ask_result res;
        REQUIRE(ask_into(&f, ctx, keeps[c], 2, c == 1, 7, l[c], &res), "ask %d: %s", c, lv_last_error());
        kvb[c] = lv_kv_used_bytes(ctx);
        if (keeps[c] == 0.5) CHECK(res.n_pruned > 0, "pruned rows");
        lv_pos np = (lv_pos)res.n_past;
        lv_token t = 0;
        for (int i = 0; i < nv; i++) t = l[c][i] > l[c][t] ? i : t;
        for (int s = 0; s < 8; s++, np++) { /* greedy decoding: LServe selects among the pruned cache's pages */
            gen[c][s] = t;
            REQUIRE(next_logits(ctx, np, t, tmp, nv), "decode: %s", lv_last_error());
            t = 0;
            for (int i = 0; i < nv; i++) t = tmp[i] > tmp[t] ? i : t;
        }
        lv_context_free(ctx);
    }
    CHECK(memcmp(l[0], l[1], (size_t)nv * sizeof(float)) == 0 && memcmp(gen[0], gen[1], sizeof(gen[0])) == 0,
          "duo + LServe, keep 0.5: overlapped and sequential differ");
    CHECK(memcmp(l[2], l[3], (size_t)nv * sizeof(float)) == 0 && memcmp(gen[2], gen[3], sizeof(gen[2])) == 0,
          "duo: keep 1 differs from the plan without QuickPrefill");
    CHECK(kvb[0] < kvb[3], "duo: pruning saved no KV bytes (%lld vs %lld)", (long long)kvb[0], (long long)kvb[3]);
    for (int c = 0; c < 4; c++) free(l[c]);
    free(tmp);
    lv_head_pattern_free(pat);
    fixture_free(&f);
}

/* ---- VideoScan (carrier tokens) ---- */

/* the cap's rule on vectors made by hand: the most similar adjacent pair, its earlier member */
TEST(ask_videoscan_cap_rule) {
    const float a[5 * 3] = {1, 0, 0, /* 0 */ 0, 1, 0, /* 1 */ 0, 1, 0.1f, /* 2: almost 1 */ 0, 0, 1, /* 3 */ 0, 0.1f, 1 /* 4: almost 3 */};
    /* cos(1, 2) = 1 / sqrt(1.01) = cos(3, 4): a tie, the earlier pair wins */
    CHECK(lv_vq_carrier_victim(a, 5, 3) == 1, "victim %d, want 1", lv_vq_carrier_victim(a, 5, 3));
    CHECK(lv_vq_carrier_victim(a + 6, 3, 3) == 1, "without the first two: %d, want 1 (3 and 4)", lv_vq_carrier_victim(a + 6, 3, 3));
    const float b[3 * 2] = {2, 0, -1, 0, 0, 0}; /* cos -1 and 0 (a zero vector): the second pair */
    CHECK(lv_vq_carrier_victim(b, 3, 2) == 1, "zero vector: %d, want 1", lv_vq_carrier_victim(b, 3, 2));
    const float c[2 * 2] = {1, 1, 3, 3}; /* scale does not matter */
    CHECK(lv_vq_carrier_victim(c, 2, 2) == 0 && lv_vq_carrier_victim(c, 1, 2) == -1, "two, one");
}

/* The logits of the last of N rows (rotary position = row) under VideoScan's mask, with nothing
 * removed: unit[r] the row's unit (-1: text), car[u] the row of unit u's carrier; at each layer,
 * when the carrier row of unit u has attended, the k visual rows of u it attended to most (softmax
 * per query head, the mean over the heads; ties: the earlier row) stay visible to later rows, the
 * others are hidden from every row after the carrier at that layer; gone[u]: the row after which
 * all of unit u's rows are hidden (the memory cap dropped it; N: never). stream (NULL: none):
 * per (layer, KV head), 1 for a DuoAttention streaming head, which sees key j from row r iff
 * j < sink or r - j < window and is not pruned; the carrier's attention is then the mean over the
 * full heads' query heads. sl >= 0 (kv_select_layer): the visual rows kept are fixed[] in every
 * layer, and only unit probe's carrier chooses (at layer sl, into fixed); sl < 0: each layer's own
 * carrier attention chooses and fixed is unused. */
static void ref_forward_scan(const lv_model *m, int64_t N, const lv_token *tok, const float *embd, const int32_t *unit, const int64_t *car,
                             const int64_t *gone, int32_t k, const uint8_t *stream, int32_t sink, int32_t window, int32_t sl, uint8_t *fixed,
                             int32_t probe, double *logits) {
    if (N <= 0) return;
    const lv_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, H = hp->n_head, Hk = hp->n_head_kv, Dk = hp->n_embd_head_k, Dv = hp->n_embd_head_v, F = hp->n_ff;
    double *h = calloc((size_t)(N * E), sizeof(double)), *x = calloc((size_t)E, sizeof(double));
    double *q = calloc((size_t)(N * H * Dk), sizeof(double)), *kk = calloc((size_t)(N * Hk * Dk), sizeof(double));
    double *v = calloc((size_t)(N * Hk * Dv), sizeof(double)), *o = calloc((size_t)(H * Dv), sizeof(double));
    double *y = calloc((size_t)(E > F ? E : F) * 2, sizeof(double)), *g = calloc((size_t)F, sizeof(double)), *u = calloc((size_t)F, sizeof(double));
    double *sc = calloc((size_t)N, sizeof(double)), *att = calloc((size_t)N, sizeof(double));
    float *tmp = calloc((size_t)(hp->n_vocab > E ? hp->n_vocab : E) + (size_t)F + 16, sizeof(float));
    uint8_t *sel = sl >= 0 ? fixed : calloc((size_t)N, 1);
    norm_row *nr = calloc((size_t)N, sizeof(norm_row));
    for (int64_t r = 0; r < N; r++) {
        if (tok[r] == LV_TOKEN_EMBD) {
            for (int64_t e = 0; e < E; e++) h[r * E + e] = embd[r * E + e];
        } else {
            ref_row(&m->tok_embd, tok[r], tmp);
            for (int64_t e = 0; e < E; e++) h[r * E + e] = tmp[e];
        }
    }
    const bool neox = hp->rope_type == LV_ROPE_NEOX;
    for (int64_t il = 0; il < hp->n_layer; il++) {
        const lv_layer *L = &m->layers[il];
        for (int64_t r = 0; r < N; r++) {
            ref_rmsnorm(h + r * E, &L->attn_norm, hp->norm_rms_eps, E, x, tmp);
            ref_matvec(&L->wq, x, q + r * H * Dk, tmp);
            ref_matvec(&L->wk, x, kk + r * Hk * Dk, tmp);
            ref_matvec(&L->wv, x, v + r * Hk * Dv, tmp);
            for (int64_t hh = 0; hh < H; hh++) ref_rope(q + (r * H + hh) * Dk, Dk, hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale, (int32_t)r, neox);
            for (int64_t hh = 0; hh < Hk; hh++) ref_rope(kk + (r * Hk + hh) * Dk, Dk, hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale, (int32_t)r, neox);
        }
        if (sl < 0) memset(sel, 0, (size_t)N);
        /* attention, row after row (a carrier's choice hides rows from the rows after it) */
        double *hn = calloc((size_t)(N * E), sizeof(double));
        memcpy(hn, h, (size_t)(N * E) * sizeof(double));
        for (int64_t r = 0; r < N; r++) {
            const bool is_car = unit[r] >= 0 && car[unit[r]] == r && (sl < 0 || (il == sl && unit[r] == probe));
            for (int64_t j = 0; j <= r; j++) att[j] = 0;
            for (int64_t hh = 0; hh < H; hh++) {
                const int64_t kh = hh / (H / Hk);
                const bool st = stream && stream[il * Hk + kh];
                double mx = -INFINITY, den = 0;
                for (int64_t j = 0; j <= r; j++) {
                    sc[j] = -INFINITY;
                    const int32_t uj = unit[j];
                    if (st && !(j < sink || r - j < window)) continue;                      /* outside the streaming head's sink + window */
                    if (!st && uj >= 0 && r > gone[uj]) continue;                           /* dropped by the cap */
                    if (!st && uj >= 0 && j != car[uj] && r > car[uj] && !sel[j]) continue; /* a visual row its carrier did not keep */
                    double s = 0;
                    for (int64_t d = 0; d < Dk; d++) s += q[(r * H + hh) * Dk + d] * kk[(j * Hk + kh) * Dk + d];
                    sc[j] = s / sqrt((double)Dk);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int64_t d = 0; d < Dv; d++) o[hh * Dv + d] = 0;
                for (int64_t j = 0; j <= r; j++)
                    if (sc[j] != -INFINITY) den += exp(sc[j] - mx);
                for (int64_t j = 0; j <= r; j++) {
                    if (sc[j] == -INFINITY) continue;
                    const double p = exp(sc[j] - mx) / den;
                    if (!st) att[j] += p / (double)H;
                    for (int64_t d = 0; d < Dv; d++) o[hh * Dv + d] += p * v[(j * Hk + kh) * Dv + d];
                }
            }
            if (is_car) { /* the k visual rows of its unit it attended to most, at this layer */
                int64_t n = 0;
                for (int64_t j = 0; j < r; j++)
                    if (unit[j] == unit[r]) nr[n++] = (norm_row){-att[j], j}; /* ascending -att: the highest first, ties the earlier */
                qsort(nr, (size_t)n, sizeof(norm_row), cmp_norm_row);
                for (int64_t j = 0; j < n && j < k; j++) sel[nr[j].row] = 1;
            }
            ref_matvec(&L->wo, o, y, tmp);
            for (int64_t e = 0; e < E; e++) hn[r * E + e] += y[e];
            ref_rmsnorm(hn + r * E, &L->ffn_norm, hp->norm_rms_eps, E, x, tmp);
            ref_matvec(&L->ffn_gate, x, g, tmp);
            ref_matvec(&L->ffn_up, x, u, tmp);
            for (int64_t i = 0; i < F; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            ref_matvec(&L->ffn_down, g, y, tmp);
            for (int64_t e = 0; e < E; e++) hn[r * E + e] += y[e];
        }
        memcpy(h, hn, (size_t)(N * E) * sizeof(double));
        free(hn);
    }
    ref_rmsnorm(h + (N - 1) * E, &m->output_norm, hp->norm_rms_eps, E, x, tmp);
    ref_matvec(&m->output, x, logits, tmp);
    free(h), free(x), free(q), free(kk), free(v), free(o), free(y), free(g), free(u), free(sc), free(att), free(tmp), free(nr);
    if (sl < 0) free(sel);
}

/* the same with the selecting layer sl (-1: each layer chooses): unit by unit, the rows up to its
 * carrier run again under the choices of the units before it, and its carrier's attention at layer
 * sl makes its choice for every layer; then the whole sequence under all the choices */
static void ref_scan(const lv_model *m, int64_t N, const lv_token *tok, const float *embd, const int32_t *unit, const int64_t *car, int32_t U,
                     const int64_t *gone, int32_t k, const uint8_t *stream, int32_t sink, int32_t window, int32_t sl, double *logits) {
    uint8_t *fixed = calloc((size_t)N, 1);
    double *tmp = calloc((size_t)m->hp.n_vocab, sizeof(double));
    for (int32_t u = 0; sl >= 0 && u < U; u++)
        ref_forward_scan(m, car[u] + 1, tok, embd, unit, car, gone, k, stream, sink, window, sl, fixed, u, tmp);
    ref_forward_scan(m, N, tok, embd, unit, car, gone, k, stream, sink, window, sl, fixed, -1, logits);
    free(fixed), free(tmp);
}

/* the rows a sink + window head holds after n consecutive positions in pages of P: its sink pages
 * stay, a later page leaves once its newest position is outside the next query's window (not the
 * page being filled) */
static int64_t stream_rows(int64_t n, int64_t sink, int64_t window, int64_t P) {
    const int64_t pages = (n + P - 1) / P, first = (sink + P - 1) / P;
    int64_t k = first;
    while (k < pages - 1 && k * P + P - 1 <= n - window) k++;
    return k == first ? n : first * P + (n - k * P);
}

/* VideoScan against the reference: 7 frames of the two-layer GQA model, carrier_keep 0 and 3,
 * no cap and a cap of 3 carriers (the cap's choices made here from the carriers' embeddings);
 * duo: with DuoAttention (heads_2x2: one streaming head per layer, its window shorter than the
 * video), the streaming heads keeping sink + window, then also LServe's selection for the decode
 * (overlapped == sequential through greedy decoding); sl >= 0: carrier_layer sl (kv_select_layer) */
static void videoscan_reference(bool duo, int32_t sl) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open_2l(&f, path), "fixture: %s", lv_last_error());
    lv_head_pattern *pat = duo ? heads_2x2() : NULL;
    REQUIRE(!duo || pat, "pattern: %s", lv_last_error());
    const int32_t nv = lv_model_n_vocab(f.model), E = lv_model_n_embd(f.model);
    lv_video_ask_params p = lv_video_ask_default_params();
    p.prompt = "Look: <__media__> What moves?";
    p.n_frames = 7;
    p.carrier = true;
    lv_vq_layout l;
    REQUIRE(lv_vq_layout_build(f.model, f.mm, f.video, &p, 0, &l) == LV_OK, "%s", lv_last_error());
    REQUIRE(l.plan.n_frames == 7 && l.plan.n_units == 7, "%lld frames", (long long)l.plan.n_frames);
    lv_video_read_params rp = lv_video_default_read_params();
    rp.sample = LV_VIDEO_SAMPLE_INDICES;
    rp.indices = l.frame_idx;
    rp.n_indices = l.plan.n_frames;
    rp.width = l.plan.frame_w;
    rp.height = l.plan.frame_h;
    void *frames = NULL;
    int64_t nfr = 0, fsize = 0;
    REQUIRE(lv_video_read_all(f.video, &rp, &frames, &nfr, &fsize) == LV_OK && nfr == 7, "frames: %s", lv_last_error());
    const int64_t N = l.plan.n_rows, T = l.plan.unit_tokens, U = 7;
    /* the rows, built here: each unit's T embeddings, then its carrier (their mean), at the next position */
    lv_token *tok = calloc((size_t)N, sizeof(lv_token));
    float *embd = calloc((size_t)(N * E), sizeof(float)), *unit = calloc((size_t)(T * E), sizeof(float));
    int32_t *uof = calloc((size_t)N, sizeof(int32_t));
    int64_t car[7], gone[7];
    double *ref = calloc((size_t)nv, sizeof(double));
    float *got = calloc((size_t)nv, sizeof(float)), *dense = calloc((size_t)nv, sizeof(float)), *k0 = calloc((size_t)nv, sizeof(float));
    REQUIRE(tok && embd && unit && uof && ref && got && dense && k0, "memory");
    int64_t text = 0;
    for (int32_t s = 0; s < l.n_segs; s++) {
        const lv_vq_seg *sg = &l.segs[s];
        if (!sg->unit) {
            for (int32_t i = 0; i < sg->n; i++) {
                tok[sg->row0 + i] = l.tokens[sg->first + i];
                uof[sg->row0 + i] = -1;
            }
            text += sg->n;
            continue;
        }
        REQUIRE(sg->n == T + 1, "a unit's rows: %d, want %lld + the carrier", sg->n, (long long)T);
        REQUIRE(lv_mmproj_encode_frames(f.mm, f.tp, (const uint8_t *)frames + sg->first * fsize, NULL, l.plan.frame_w, l.plan.frame_h, unit) == LV_OK,
                "encode: %s", lv_last_error());
        const int64_t u = sg->first;
        car[u] = sg->row0 + T;
        for (int32_t i = 0; i <= T; i++) {
            tok[sg->row0 + i] = LV_TOKEN_EMBD;
            uof[sg->row0 + i] = (int32_t)u;
        }
        memcpy(embd + sg->row0 * E, unit, (size_t)(T * E) * sizeof(float));
        for (int32_t e = 0; e < E; e++) {
            double m = 0;
            for (int64_t i = 0; i < T; i++) m += unit[i * E + e];
            embd[car[u] * E + e] = (float)(m / (double)T);
        }
    }
    REQUIRE(text == l.plan.n_text && text + U * (T + 1) == N, "rows: %lld text + %lld units of %lld, N %lld", (long long)text, (long long)U,
            (long long)T + 1, (long long)N);
    const lv_hparams *hp = &f.model->hp;
    /* KV bytes (f32 keys and values) of one row in one head; duo: 2 of the 4 heads stream, and what
     * they hold (sink + window and the ring's slack) is the same without carriers */
    const int64_t row_bytes = (hp->n_embd_head_k + hp->n_embd_head_v) * 4, n_full = duo ? 2 : hp->n_layer * hp->n_head_kv;
    lv_context *c0 = new_ctx_plan(&f, 7, pat, false);
    REQUIRE(c0 && ask_into(&f, c0, 0, 0, false, 7, dense, NULL), "dense: %s", lv_last_error());
    const int64_t stream_bytes = duo ? 2 * stream_rows(N, 4, 24, 16) * row_bytes : 0;
    CHECK(lv_kv_used_bytes(c0) == (N - U) * n_full * row_bytes + (duo ? 2 * stream_rows(N - U, 4, 24, 16) * row_bytes : 0),
          "without carriers: KV bytes %lld for %lld rows", (long long)lv_kv_used_bytes(c0), (long long)(N - U));
    lv_context_free(c0);
    const int32_t keeps[2] = {0, duo ? 2 : 3}, caps[2] = {0, 3};
    for (int ci = 0; ci < 2; ci++) {
        /* the cap, simulated here: after unit u's carrier, above caps[ci] held carriers, the earlier of the
         * most similar adjacent pair (cosine of the carriers' embeddings) is gone for every later row */
        int32_t held[8], nh = 0, dropped = 0;
        for (int u = 0; u < U; u++) gone[u] = N;
        for (int u = 0; u < U; u++) {
            held[nh++] = u;
            if (caps[ci] == 0 || nh <= caps[ci]) continue;
            int32_t best = 0;
            double bs = -2;
            for (int i = 0; i + 1 < nh; i++) {
                const float *a = embd + car[held[i]] * E, *b = embd + car[held[i + 1]] * E;
                double d = 0, na = 0, nb = 0;
                for (int e = 0; e < E; e++) d += (double)a[e] * b[e], na += (double)a[e] * a[e], nb += (double)b[e] * b[e];
                if (d / sqrt(na * nb) > bs) bs = d / sqrt(na * nb), best = i;
            }
            gone[held[best]] = car[u];
            memmove(held + best, held + best + 1, (size_t)(nh - best - 1) * sizeof(int32_t));
            nh--;
            dropped++;
        }
        for (int ki = 0; ki < 2; ki++) {
            ref_scan(f.model, N, tok, embd, uof, car, U, gone, keeps[ki], duo ? stream_2x2 : NULL, 4, 24, sl, ref);
            for (int seq = 0; seq < 2; seq++) {
                lv_context *ctx = new_ctx_plan(&f, 7, pat, false);
                REQUIRE(ctx, "context");
                lv_video_ask_params q = p;
                q.carrier_keep = keeps[ki];
                q.carrier_max = caps[ci];
                q.carrier_layer = sl;
                q.sequential = seq;
                q.n_decode_threads = 2;
                lv_video_ask_result res;
                lv_pos np = 0;
                REQUIRE(lv_video_ask(ctx, f.mm, f.video, &q, &np, &res) == LV_OK, "ask: %s", lv_last_error());
                memcpy(got, lv_get_logits_ith(ctx, -1), (size_t)nv * sizeof(float));
                double maxd = 0, maxa = 0, maxdd = 0;
                for (int32_t i = 0; i < nv; i++) {
                    maxd = fmax(maxd, fabs((double)got[i] - ref[i]));
                    maxa = fmax(maxa, fabs(ref[i]));
                    maxdd = fmax(maxdd, fabs((double)dense[i] - ref[i]));
                }
                CHECK(maxd <= 1e-4 * maxa + 1e-5, "keep %d cap %d %s: logits differ from the reference by %g (max |logit| %g)", keeps[ki], caps[ci],
                      seq ? "sequential" : "overlapped", maxd, maxa);
                CHECK(maxdd > 100 * (1e-4 * maxa + 1e-5), "keep %d cap %d: no further from dense than the tolerance (%g)", keeps[ki], caps[ci], maxdd);
                const int64_t held_rows = (int64_t)(U - dropped) * (1 + keeps[ki]);
                CHECK(res.n_carriers == U - dropped && res.n_carriers_dropped == dropped && res.n_carrier_rows == held_rows &&
                          res.n_pruned == U * (T - keeps[ki]) && res.n_cap_rows_dropped == (int64_t)dropped * (1 + keeps[ki]),
                      "keep %d cap %d: %lld carriers held, %lld dropped, %lld rows held, %lld pruned, %lld dropped rows", keeps[ki], caps[ci],
                      (long long)res.n_carriers, (long long)res.n_carriers_dropped, (long long)res.n_carrier_rows, (long long)res.n_pruned,
                      (long long)res.n_cap_rows_dropped);
                CHECK(lv_kv_used_bytes(ctx) == (text + held_rows) * n_full * row_bytes + stream_bytes,
                      "keep %d cap %d: KV bytes %lld, want %lld text + %lld video rows", keeps[ki], caps[ci], (long long)lv_kv_used_bytes(ctx),
                      (long long)text, (long long)held_rows);
                CHECK(np == N && lv_kv_seq_n_tokens(ctx, 0) == N, "the positions: %d", np);
                if (ci == 0 && ki == 0 && seq == 0) memcpy(k0, got, (size_t)nv * sizeof(float));
                if (ci == 0 && ki == 1) CHECK(memcmp(k0, got, (size_t)nv * sizeof(float)) != 0, "carrier_keep %d changed nothing", keeps[ki]);
                lv_context_free(ctx);
            }
        }
    }
    if (duo) { /* LServe selects pages for the question's decode over the carriers' cache: overlapped == sequential */
        lv_token gen[2][8];
        for (int seq = 0; seq < 2; seq++) {
            lv_context *ctx = new_ctx_plan(&f, 7, pat, true);
            REQUIRE(ctx, "context: %s", lv_last_error());
            lv_video_ask_params q = p;
            q.carrier_keep = 3;
            q.carrier_max = 3;
            q.sequential = seq;
            q.n_decode_threads = 2;
            lv_pos np = 0;
            REQUIRE(lv_video_ask(ctx, f.mm, f.video, &q, &np, NULL) == LV_OK, "ask: %s", lv_last_error());
            memcpy(got, lv_get_logits_ith(ctx, -1), (size_t)nv * sizeof(float));
            if (seq == 0) memcpy(k0, got, (size_t)nv * sizeof(float));
            else CHECK(memcmp(k0, got, (size_t)nv * sizeof(float)) == 0, "duo + LServe: overlapped and sequential logits differ");
            lv_token t = 0;
            for (int i = 0; i < nv; i++) t = got[i] > got[t] ? i : t;
            for (int s = 0; s < 8; s++, np++) {
                gen[seq][s] = t;
                REQUIRE(next_logits(ctx, np, t, got, nv), "decode: %s", lv_last_error());
                t = 0;
                for (int i = 0; i < nv; i++) t = got[i] > got[t] ? i : t;
            }
            lv_context_free(ctx);
        }
        CHECK(memcmp(gen[0], gen[1], sizeof(gen[0])) == 0, "duo + LServe: overlapped and sequential decode differently");
    }
    free(tok), free(embd), free(unit), free(uof), free(ref), free(got), free(dense), free(k0);
    lv_head_pattern_free(pat);
    lv_video_frames_free(frames);
    lv_vq_layout_free(&l);
    fixture_free(&f);
}
TEST(ask_videoscan_against_the_reference) { videoscan_reference(false, -1); }
TEST(ask_videoscan_with_duo_against_the_reference) { videoscan_reference(true, -1); }
TEST(ask_videoscan_select_layer_against_the_reference) { videoscan_reference(false, 1); }

/* overlapped == sequential bit for bit with carriers (VideoScan+ 2 rows, a cap of 3), and the next
 * token; carrier_keep 0 differs from 2; Qwen: the carrier row's M-RoPE position */
static int ask_scan(fixture *f, lv_context *ctx, int32_t ckeep, int32_t cmax, bool sequential, int64_t n_frames, float *out, lv_video_ask_result *res) {
    lv_video_ask_params p = ask_params(sequential, n_frames);
    p.carrier = true;
    p.carrier_keep = ckeep;
    p.carrier_max = cmax;
    return ask_run(f, ctx, &p, out, res);
}

static void videoscan_executions(const char *family) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open(&f, family, path), "%s fixture: %s", family, lv_last_error());
    const int32_t nv = lv_model_n_vocab(f.model);
    float *l[3], *nx[2];
    for (int i = 0; i < 3; i++) l[i] = malloc((size_t)nv * sizeof(float));
    for (int i = 0; i < 2; i++) nx[i] = malloc((size_t)nv * sizeof(float));
    lv_context *c[3];
    for (int i = 0; i < 3; i++) c[i] = new_ctx(&f, 7);
    REQUIRE(c[0] && c[1] && c[2], "contexts: %s", lv_last_error());
    const int64_t frames = !strcmp(family, "smolvlm2") ? 7 : 12; /* Qwen: 6 pairs */
    lv_video_ask_result r[3];
    REQUIRE(ask_scan(&f, c[0], 2, 3, false, frames, l[0], &r[0]), "%s overlapped: %s", family, lv_last_error());
    REQUIRE(ask_scan(&f, c[1], 2, 3, true, frames, l[1], &r[1]), "%s sequential: %s", family, lv_last_error());
    CHECK(memcmp(l[0], l[1], (size_t)nv * sizeof(float)) == 0, "%s: overlapped and sequential logits differ", family);
    CHECK(r[0].n_carriers == 3 && r[1].n_carriers == 3 && r[0].n_carriers_dropped == r[0].plan.n_units - 3 && r[0].n_carrier_rows == 9 &&
              r[1].n_carrier_rows == 9 && r[0].n_pruned == r[1].n_pruned,
          "%s: %lld / %lld carriers held, %lld dropped, %lld rows", family, (long long)r[0].n_carriers, (long long)r[1].n_carriers,
          (long long)r[0].n_carriers_dropped, (long long)r[0].n_carrier_rows);
    CHECK(lv_kv_used_bytes(c[0]) == lv_kv_used_bytes(c[1]), "%s: KV bytes differ", family);
    REQUIRE(next_logits(c[0], (lv_pos)r[0].n_past, 5, nx[0], nv) && next_logits(c[1], (lv_pos)r[1].n_past, 5, nx[1], nv), "next: %s", lv_last_error());
    CHECK(memcmp(nx[0], nx[1], (size_t)nv * sizeof(float)) == 0, "%s: the next token's logits differ", family);
    REQUIRE(ask_scan(&f, c[2], 0, 3, false, frames, l[2], &r[2]), "%s keep 0: %s", family, lv_last_error());
    CHECK(memcmp(l[0], l[2], (size_t)nv * sizeof(float)) != 0 && lv_kv_used_bytes(c[2]) <= lv_kv_used_bytes(c[0]) && r[2].n_carrier_rows == 3,
          "%s: carrier_keep 2 and 0 alike", family);
    if (strcmp(family, "smolvlm2")) { /* the carrier: the pair's t, the grid's last (h, w); the text after the block as without carriers */
        lv_video_ask_params p = lv_video_ask_default_params();
        p.n_frames = frames;
        p.carrier = true;
        lv_vq_layout lc, ld;
        REQUIRE(lv_vq_layout_build(f.model, f.mm, f.video, &p, 0, &lc) == LV_OK, "%s", lv_last_error());
        p.carrier = false;
        REQUIRE(lv_vq_layout_build(f.model, f.mm, f.video, &p, 0, &ld) == LV_OK, "%s", lv_last_error());
        CHECK(lc.plan.n_rows == ld.plan.n_rows + ld.plan.n_units && lc.rope_end == ld.rope_end, "rows %lld vs %lld, rope end %d vs %d",
              (long long)lc.plan.n_rows, (long long)ld.plan.n_rows, lc.rope_end, ld.rope_end);
        for (int32_t s = 0; s < lc.n_segs; s++) {
            const lv_vq_seg *sg = &lc.segs[s];
            if (!sg->unit) continue;
            int32_t t, h, w, e, t0, h0, w0, e0;
            lv_vq_row_pos(&lc, sg, sg->n - 1, &t, &h, &w, &e);
            lv_vq_row_pos(&lc, sg, sg->n - 2, &t0, &h0, &w0, &e0); /* the unit's last embedding */
            CHECK(sg->n == lc.plan.unit_tokens + 1 && t == t0 && h == sg->rope0 + lc.plan.ny - 1 && w == sg->rope0 + lc.plan.nx - 1 && h == h0 &&
                      w == w0 && e == 0,
                  "unit %lld: carrier at (%d, %d, %d)", (long long)sg->first, t, h, w);
        }
        lv_vq_layout_free(&lc);
        lv_vq_layout_free(&ld);
    }
    for (int i = 0; i < 3; i++) {
        lv_context_free(c[i]);
        free(l[i]);
    }
    for (int i = 0; i < 2; i++) free(nx[i]);
    fixture_free(&f);
}

TEST(ask_videoscan_executions_smolvlm2) { videoscan_executions("smolvlm2"); }
TEST(ask_videoscan_executions_qwen25vl) { videoscan_executions("qwen2.5vl"); }

/* an abort once 3 frames are in: carriers pruned, one dropped by a cap of 2 */
static void setup_abort_scan(lv_video_ask_params *p) {
    p->carrier = true;
    p->carrier_keep = 1;
    p->carrier_max = 1;
    p->n_frames = 8;
    prefilled_3 = false;
    p->progress = note_prefilled;
    p->abort_fn = abort_when_prefilled_3;
}
static void setup_abort_scan_seq(lv_video_ask_params *p) {
    setup_abort_scan(p);
    p->sequential = true;
}

TEST(ask_videoscan_abort_restores_the_context) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    const char *fams[2] = {"smolvlm2", "qwen2.5vl"};
    for (int i = 0; i < 2; i++) {
        fixture f;
        REQUIRE(fixture_open(&f, fams[i], path), "fixture: %s", lv_last_error());
        check_rollback(&f, fams[i], LV_ERR_ABORTED, setup_abort_scan);
        check_rollback(&f, fams[i], LV_ERR_ABORTED, setup_abort_scan_seq);
        fixture_free(&f);
    }
}

/* bad combinations: clear errors, nothing decoded; a model with recurrent layers is refused */
TEST(ask_videoscan_errors) {
    const char *path = clip();
    if (!path) SKIP("ffmpeg cannot generate test files");
    fixture f;
    REQUIRE(fixture_open_2l(&f, path), "fixture: %s", lv_last_error());
    lv_context *ctx = new_ctx(&f, 7);
    REQUIRE(ctx, "context");
    struct {
        bool carrier;
        double keep;
        int32_t ckeep, cmax, clayer;
        const char *says;
    } bad[7] = {{true, 0.5, 0, 64, -1, "choose one"}, {true, 0, -1, 64, -1, "negative"},      {true, 0, 0, -2, -1, "negative"},
                {false, 0, 2, 64, -1, "needs carrier"}, {false, 0, 0, 64, 1, "needs carrier"}, {true, 0, 2, 64, -2, "is -1 or a layer"},
                {true, 0, 2, 64, 2, "not a layer of the model"}};
    for (int i = 0; i < 7; i++) {
        lv_video_ask_params p = lv_video_ask_default_params();
        p.prompt = "Q";
        p.n_frames = 3;
        p.carrier = bad[i].carrier;
        p.keep = bad[i].keep;
        p.carrier_keep = bad[i].ckeep;
        p.carrier_max = bad[i].cmax;
        p.carrier_layer = bad[i].clayer;
        lv_pos np = 0;
        const lv_status st = lv_video_ask(ctx, f.mm, f.video, &p, &np, NULL);
        CHECK(st == LV_ERR_INVALID_ARG && strstr(lv_last_error(), bad[i].says) && np == 0 && lv_kv_seq_n_tokens(ctx, 0) == 0, "case %d: %s (%s)", i,
              lv_status_str(st), lv_last_error());
    }
    lv_context_free(ctx);
    /* recurrent layers (qwen35): refused before anything is decoded, their state cannot drop tokens */
    char mpath[512];
    snprintf(mpath, sizeof(mpath), "%s/ask-text-qwen35.gguf", lv_test_tmpdir());
    lv_genmodel_params gp = lv_genmodel_default_params();
    gp.arch = "qwen35";
    gp.n_embd = 64;
    gp.n_layer = 2;
    gp.n_head = 4;
    gp.n_head_kv = 2;
    gp.n_ff = 96;
    gp.ssm_state = 16;
    gp.ssm_k_heads = 2;
    gp.ssm_v_heads = 2;
    gp.full_attn_interval = 2;
    gp.vocab_path = GOLDEN_DIR "/vocab-vlm.gguf";
    gp.ftype = LV_FTYPE_F32;
    lv_model *rm = NULL;
    REQUIRE(lv_genmodel_write(&gp, mpath) == LV_OK && lv_model_load(mpath, lv_model_default_params(), &rm) == LV_OK, "qwen35: %s", lv_last_error());
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = 4096;
    cp.threadpool = f.tp;
    REQUIRE(lv_context_create(rm, cp, &ctx) == LV_OK, "context: %s", lv_last_error());
    lv_video_ask_params p = lv_video_ask_default_params();
    p.prompt = "Q";
    p.n_frames = 3;
    p.carrier = true;
    lv_pos np = 0;
    const lv_status st = lv_video_ask(ctx, f.mm, f.video, &p, &np, NULL);
    CHECK(st == LV_ERR_UNSUPPORTED && strstr(lv_last_error(), "recurrent") && lv_kv_seq_n_tokens(ctx, 0) == 0, "qwen35: %s (%s)", lv_status_str(st),
          lv_last_error());
    lv_context_free(ctx);
    lv_model_free(rm);
    fixture_free(&f);
}
