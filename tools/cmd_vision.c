/*
 * cmd_vision.c: `longview gen-mmproj` (random-weight mmproj files of the published towers' shapes)
 * and `longview image-embed` (an image through the vision tower and projector, as float32 rows).
 */
#include "common/cli.h"
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static double peak_rss_mib(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0.0;
}

int cmd_gen_mmproj(int argc, char **argv) {
    const char *preset = NULL, *type = "f16", *out = NULL;
    int64_t n_text = 0, seed = 42, preproc = -1;
    double std = 0.02;
    char presets[512];
    snprintf(presets, sizeof(presets), "%s", lv_mmproj_preset_list());
    cli_opt opts[] = {
        {NULL, "--preset", CLI_STR, &preset, "NAME", presets, .required = true},
        {NULL, "--type", CLI_STR, &type, "T", "matrix type: f32 | f16 | q8_0 (default f16; rows that are not whole q8_0 blocks stay f16)"},
        {NULL, "--n-text", CLI_INT, &n_text, "N", "output width: the text model's embedding size (default: the preset's)", .lo = 1, .hi = 1 << 20},
        {NULL, "--preproc-size", CLI_INT, &preproc, "N", "idefics3: clip.vision.preproc_image_size (0: none, mtmd's generic slicing; default: the preset's)", .lo = 0, .hi = 32768},
        {NULL, "--seed", CLI_INT, &seed, "N", "random seed (default 42)", .lo = 0, .hi = INT64_MAX},
        {NULL, "--std", CLI_FLOAT, &std, "F", "standard deviation of the matrices (default 0.02)", .flo = 1e-6, .fhi = 10},
        {"-o", "--output", CLI_STR, &out, "FILE", "output mmproj GGUF file", .required = true},
    };
    int r = cli_parse(argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])), "longview gen-mmproj --preset NAME [--type T] [--n-text N] [--seed S] -o OUT.gguf",
                      "Write an mmproj GGUF (clip architecture, as llama.cpp's converters write them) with RANDOM\n"
                      "weights: the published towers' shapes (SigLIP-B/16-512 of SmolVLM2-256M/500M, SigLIP-so400m-384\n"
                      "of SmolVLM2-2.2B, the Qwen2-VL and Qwen2.5-VL ViTs, CLIP-L/14-336 of LLaVA-1.5) or tiny ones for\n"
                      "tests. For speed measurements and tests; its output is noise.",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    lv_status st = lv_mmproj_write_random(preset, type, (int32_t)n_text, (int32_t)preproc, (uint64_t)seed, (float)std, out);
    if (st != LV_OK) return cli_fail("gen-mmproj", st);
    fprintf(stderr, "gen-mmproj: wrote %s\n", out);
    return 0;
}

int cmd_image_embed(int argc, char **argv) {
    const char *model_path = NULL, *mmproj_path = NULL, *out_path = NULL, *image = NULL, *image2 = NULL;
    int64_t threads = 0, verbose = 0, reps = 1;
    cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model_path, "FILE", "text model GGUF (its embedding width is checked against the projector's)"},
        {NULL, "--mmproj", CLI_STR, &mmproj_path, "FILE", "mmproj GGUF (vision tower + projector)", .required = true},
        {NULL, "--image", CLI_STR, &image, "FILE", "image file (PNG, JPEG, PPM, anything libavcodec decodes)", .required = true},
        {NULL, "--image2", CLI_STR, &image2, "FILE", "Qwen: a second frame of the same size, encoded with --image as one temporal pair"},
        {"-o", "--output", CLI_STR, &out_path, "FILE", "output: float32 [n_tokens][n_embd], token-major, all chunks in mtmd's order", .required = true},
        {"-t", "--threads", CLI_INT, &threads, "N", "threads (default: one per core)", .lo = 0, .hi = 1024},
        {"-r", "--reps", CLI_INT, &reps, "N", "for timing: encode N times after one warm-up run and report the median (default 1: one run, no warm-up)", .lo = 1, .hi = 1000},
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    int r = cli_parse(argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])),
                      "longview image-embed [-m TEXT.gguf] --mmproj MM.gguf --image IMG [--image2 IMG2] [-r REPS] -o OUT.f32",
                      "Decode an image, preprocess it as llama.cpp's mtmd does for the projector type, run the\n"
                      "vision tower and projector, and write the embeddings the text model would read. stderr gets\n"
                      "one line per chunk and a summary: n_tokens, n_embd, the position advance (n_pos) and the time.",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    cli_set_verbosity(verbose);
    int64_t n_text = 0;
    if (model_path) {
        lv_model *model = NULL;
        lv_status st = lv_model_load(model_path, lv_model_default_params(), &model);
        if (st != LV_OK) return cli_fail("text model", st);
        n_text = lv_model_n_embd(model);
        lv_model_free(model);
    }
    lv_video_route_libav_log(); /* libav's messages through longview's log, not straight to stderr */
    lv_mmproj *mm = NULL;
    lv_status st = lv_mmproj_load(mmproj_path, n_text, &mm);
    if (st != LV_OK) return cli_fail("mmproj", st);
    lv_threadpool *tp = lv_threadpool_create((int)threads);
    if (!tp) {
        lv_mmproj_free(mm);
        cli_error("cannot create the thread pool");
        return 1;
    }
    lv_image_embd e = {0};
    double times[1001] = {0};
    const int runs = reps > 1 ? (int)reps + 1 : 1;
    uint8_t *a = NULL, *b = NULL;
    int32_t wa = 0, ha = 0, wb = 0, hb = 0;
    if (image2) { /* both frames must decode to the same size */
        if ((st = lv_image_decode_file(image, &a, &wa, &ha)) == LV_OK && (st = lv_image_decode_file(image2, &b, &wb, &hb)) == LV_OK &&
            (wa != wb || ha != hb)) {
            cli_error("--image is %dx%d but --image2 is %dx%d: a temporal pair needs two frames of one size", wa, ha, wb, hb);
            lv_image_rgb_free(a);
            lv_image_rgb_free(b);
            lv_threadpool_free(tp);
            lv_mmproj_free(mm);
            return 1;
        }
    }
    for (int run = 0; run < runs && st == LV_OK; run++) {
        lv_image_embd_free(&e);
        const double t0 = cli_now_s(); /* decoding the file is part of it, as for mtmd's bitmap from a file */
        if (image2) st = lv_mmproj_encode_pair(mm, tp, a, b, wa, ha, &e);
        else st = lv_mmproj_encode_file(mm, tp, image, &e);
        times[run] = cli_now_s() - t0;
    }
    lv_image_rgb_free(a);
    lv_image_rgb_free(b);
    /* the median of the timed runs (the first is a warm-up when there are several) */
    const int first = runs > 1 ? 1 : 0, nt = runs - first;
    for (int i = first; i < runs; i++)
        for (int j = i + 1; j < runs; j++)
            if (times[j] < times[i]) {
                const double t = times[i];
                times[i] = times[j];
                times[j] = t;
            }
    const double dt = times[first + nt / 2];
    lv_threadpool_free(tp);
    if (st != LV_OK) {
        lv_mmproj_free(mm);
        return cli_fail(image, st);
    }
    for (int32_t i = 0; i < e.n_chunks; i++) {
        const lv_image_chunk *c = &e.chunks[i];
        fprintf(stderr, "chunk %d: %d tokens (%dx%d), n_pos %d", i, c->n_tokens, c->nx, c->ny, c->n_pos);
        if (c->tile_row) fprintf(stderr, ", tile row %d col %d", c->tile_row, c->tile_col);
        else if (e.tile_rows) fprintf(stderr, ", overview");
        fputc('\n', stderr);
    }
    cli_out o;
    FILE *f = cli_out_open(&o, out_path, true);
    int rc = 0;
    if (!f) {
        rc = 1;
    } else if (fwrite(e.embd, sizeof(float) * (size_t)e.n_embd, (size_t)e.n_tokens, f) != (size_t)e.n_tokens) {
        cli_error("writing %s failed", out_path);
        cli_out_abort(&o);
        rc = 1;
    } else if (cli_out_commit(&o) != 0) {
        rc = 1;
    }
    if (rc == 0)
        fprintf(stderr, "image-embed: %s %dx%d -> n_tokens %d, n_embd %d, n_pos %d, chunks %d, %.3f s%s (%s), peak RSS %.0f MiB\n", image, e.width,
                e.height, e.n_tokens, e.n_embd, e.n_pos, e.n_chunks, dt, nt > 1 ? " (median)" : "", lv_mmproj_projector(mm), peak_rss_mib());
    lv_image_embd_free(&e);
    lv_mmproj_free(mm);
    return rc;
}
