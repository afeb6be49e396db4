/*
 * cmd_run.c: `longview run`: prefill a prompt (in chunks of -b tokens) and generate up to -n
 * tokens, printing the completion to stdout as it is produced (never half a UTF-8 character);
 * progress and timings go to stderr.
 */
#include "common/cli.h"
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --video: the progress line (frames decoded / encoded / prefilled, rows in the cache, elapsed and estimated time) */
static void video_progress(const lv_video_ask_progress *p, void *user) {
    cli_progress *prog = user;
    const double frac = p->n_rows > 0 ? (double)p->n_rows_done / (double)p->n_rows : 0;
    const double eta = frac > 0.02 ? p->elapsed_s * (1 - frac) / frac : -1;
    char detail[160];
    if (eta >= 0)
        snprintf(detail, sizeof(detail), "frames %lld/%lld decoded, %lld encoded, %lld prefilled, %lld tokens cached, %.1f s, about %.0f s left",
                 (long long)p->n_decoded, (long long)p->n_frames, (long long)p->n_encoded, (long long)p->n_prefilled, (long long)p->n_rows_done,
                 p->elapsed_s, eta);
    else
        snprintf(detail, sizeof(detail), "frames %lld/%lld decoded, %lld encoded, %lld prefilled, %lld tokens cached, %.1f s", (long long)p->n_decoded,
                 (long long)p->n_frames, (long long)p->n_encoded, (long long)p->n_prefilled, (long long)p->n_rows_done, p->elapsed_s);
    cli_progress_update(prog, frac, detail);
}

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL, *tokens_arg = NULL, *mmproj_path = NULL, *video_path = NULL;
    cli_kv kvo = {.both = "f16"};
    double vfps = 0;
    int64_t vframes = 0, vmax_frames = 0, vthreads = 0, vgroup = 16, vckeep = 0, vcmax = 64, vclayer = -1;
    bool vcarrier = false;
    double vkeep = 0;
    bool vsequential = false, vno_budget = false, vprint_prompt = false;
    cli_list images = {0};
    int64_t n_predict = 64, n_ctx = -1, n_batch = 512, n_threads = 0, seed = 0x5eed, top_k = 40, verbose = 0;
    double temp = 0.8, top_p = 0.95, min_p = 0.05;
    bool print_ids = false, ignore_eos = false, no_bos = false;
    cli_attention att;
    cli_opt base[] = {
        {"-m", "--model", CLI_STR, &model_path, "FILE", "GGUF model", .required = true},
        {"-p", "--prompt", CLI_STR, &prompt, "TEXT", "prompt text"},
        {"-f", "--file", CLI_STR, &prompt_file, "FILE", "read the prompt from a file ('-' for stdin)"},
        {NULL, "--tokens", CLI_STR, &tokens_arg, "1,2,3", "prompt as token ids instead of text"},
        {NULL, "--no-bos", CLI_FLAG, &no_bos, NULL, "do not add BOS/EOS to a text prompt"},
        {NULL, "--mmproj", CLI_STR, &mmproj_path, "FILE", "vision tower + projector (llama.cpp mmproj GGUF) for --image"},
        {NULL, "--image", CLI_LIST, &images, "FILE", "an image (repeatable), placed where the prompt says <__media__>, else before the prompt"},
        {NULL, "--video", CLI_STR, &video_path, "FILE", "a video, sampled and laid out as the mmproj's model family was trained (docs/video-questions.md), placed at <__media__>"},
        {NULL, "--fps", CLI_FLOAT, &vfps, "F", "--video: frames per second to sample (default: the family's, SmolVLM2 1, Qwen 2)", .flo = 0, .fhi = 1000},
        {NULL, "--frames", CLI_INT, &vframes, "N", "--video: sample N frames spread evenly instead", .lo = 0, .hi = 1 << 22},
        {NULL, "--max-frames", CLI_INT, &vmax_frames, "N", "--video: at most N frames (default: the family's, SmolVLM2 64, Qwen 768)", .lo = 0, .hi = 1 << 22},
        {"-j", "--decode-threads", CLI_INT, &vthreads, "N", "--video: video decode threads (default: one per core); with -t threads for encoding and prefill they share one budget of -t busy threads: the decode threads run when the encoder is about to run out of frames or the pool is idle", .lo = 0, .hi = 512},
        {NULL, "--video-sequential", CLI_FLAG, &vsequential, NULL, "--video: decode every frame, then encode, then prefill (the reference; no overlap)"},
        {NULL, "--video-no-budget", CLI_FLAG, &vno_budget, NULL, "--video: run the -j decode threads beside the -t threads instead of within one budget of -t (the older overlap; for comparison)"},
        {NULL, "--print-prompt", CLI_FLAG, &vprint_prompt, NULL, "--video: print the prompt as text (each embedding row as <image>; Qwen: <|video_pad|>), then exit without decoding a frame"},
        {NULL, "--keep", CLI_FLOAT, &vkeep, "F", "--video: QuickPrefill: after each group of frames, keep this fraction (0 < F <= 1) of its visual tokens in every layer's cache, those of smallest key norm (1: dense, bit for bit)", .flo = 0, .fhi = 1},
        {NULL, "--carrier", CLI_FLAG, &vcarrier, NULL, "--video: VideoScan: a carrier token (the mean of a frame's, Qwen: a pair's, embeddings) after each frame; after the frame's forward every layer's cache keeps only the carrier (and --carrier-keep visual tokens) of it. Needs carrier-trained weights to answer well (none exist yet): this is the mechanics and the memory"},
        {NULL, "--carrier-keep", CLI_INT, &vckeep, "K", "--carrier: VideoScan+: also keep the K visual tokens of each frame most attended from its carrier, per layer (default 0)", .lo = -(1 << 22), .hi = 1 << 22},
        {NULL, "--carrier-layer", CLI_INT, &vclayer, "L", "--carrier-keep: the visual tokens layer L's carrier attended to most are kept in every layer (the reference's kv_select_layer; default: each layer its own)", .lo = -(1 << 22), .hi = 1 << 22},
        {NULL, "--carrier-max", CLI_INT, &vcmax, "N", "--carrier: memory cap: at most N carriers; above it the earlier of the two adjacent carriers with the most similar input embeddings leaves the cache with its frame's kept tokens (default 64; 0 = no cap)", .lo = -(1 << 22), .hi = 1 << 22},
        {NULL, "--group", CLI_INT, &vgroup, "N", "--video --keep: frames per QuickPrefill group (default 16; Qwen: rounded up to whole pairs)", .lo = 1, .hi = 1 << 22},
        {"-n", "--n-predict", CLI_INT, &n_predict, "N", "tokens to generate (default 64)", .lo = 0, .hi = 1 << 30},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, "N", "context size in tokens (default: the prompt plus -n, at least 4096; 0 = the model's training context)", .lo = 0, .hi = 1 << 30},
        {"-b", "--batch", CLI_INT, &n_batch, "N", "prefill chunk in tokens (default 512)", .lo = 1, .hi = 1 << 20},
        {"-t", "--threads", CLI_INT, &n_threads, "N", "threads (default: all cores)", .lo = 0, .hi = 512},
        {NULL, "--temp", CLI_FLOAT, &temp, "T", "temperature; 0 = greedy (default 0.8)", .flo = 0, .fhi = 100},
        {NULL, "--top-k", CLI_INT, &top_k, "N", "top-k, 0 = off (default 40)", .lo = 0, .hi = INT32_MAX},
        {NULL, "--top-p", CLI_FLOAT, &top_p, "P", "top-p, 1 = off (default 0.95)", .flo = 0, .fhi = 1},
        {NULL, "--min-p", CLI_FLOAT, &min_p, "P", "min-p, 0 = off (default 0.05)", .flo = 0, .fhi = 1},
        {NULL, "--seed", CLI_INT, &seed, "N", "sampling seed", .lo = 0, .hi = INT64_MAX},
        CLI_KV_OPTS(kvo, "f16"),
        {NULL, "--ids", CLI_FLAG, &print_ids, NULL, "print generated token ids (space separated) instead of text"},
        {NULL, "--ignore-eos", CLI_FLAG, &ignore_eos, NULL, "keep generating after an end-of-generation token"},
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    const int nb = (int)(sizeof(base) / sizeof(base[0]));
    cli_opt opts[sizeof(base) / sizeof(base[0]) + CLI_ATTENTION_N_OPTS];
    memcpy(opts, base, sizeof(base));
    const int n_opts = nb + cli_attention_opts(&att, opts + nb);
    int r = cli_parse(argc, argv, opts, n_opts,
                      "longview run -m MODEL (-p TEXT | -f FILE | --tokens IDS) [--mmproj MM (--image IMG ... | --video V [--fps F | --frames N] [-j N] [--keep F [--group N] | --carrier [--carrier-keep K [--carrier-layer L]] [--carrier-max N]])] [-n N] [-c CTX] [-b N] [-t THREADS] [--temp T] [--seed S]",
                      "Generate a completion. The completion goes to stdout; progress and timings to stderr.\n"
                      "Images (--mmproj, --image): each is encoded by the vision tower and its embeddings take its place in\n"
                      "the prompt, laid out as llama.cpp's mtmd does (docs/vision.md).\n"
                      "A video (--mmproj, --video): frames sampled, decoded in parallel, encoded and prefilled in an overlapped\n"
                      "pipeline, in the prompt format of the mmproj's family: SmolVLM2 (idefics3) or Qwen2-VL / Qwen2.5-VL\n"
                      "(docs/video-questions.md). QuickPrefill (--keep F, --group N): prefilled group by group, each group's\n"
                      "visual tokens pruned in every layer's cache to the fraction F of smallest key norm. VideoScan (--carrier):\n"
                      "one carrier token per frame kept in the cache, the frame's own tokens dropped after its forward (needs\n"
                      "carrier-trained weights to answer well; the video's visual part of the cache grows by one token per frame\n"
                      "(+ --carrier-keep K), capped by --carrier-max; text such as timestamps stays).\n"
                      "Long-context attention (DuoAttention heads, LServe selection, LongGen layers): see docs/long-context.md.", NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    cli_set_verbosity(verbose);
    if (!!prompt + !!prompt_file + !!tokens_arg != 1 && !((images.n > 0 || video_path) && !prompt_file && !tokens_arg)) {
        cli_error("give exactly one of -p, -f, --tokens");
        return 2;
    }
    if (video_path && images.n) {
        cli_error("--video and --image do not go together (one video per question)");
        return 2;
    }
    if ((images.n > 0 || video_path) != (mmproj_path != NULL)) {
        cli_error(images.n ? "--image needs --mmproj (the vision tower)" : video_path ? "--video needs --mmproj (the vision tower)" : "--mmproj needs at least one --image or a --video");
        return 2;
    }
    if (video_path && (tokens_arg || prompt_file)) {
        cli_error("--video goes with a text prompt (-p), not --tokens or -f");
        return 2;
    }
    if (!video_path && (cli_seen(opts, n_opts, "--fps") || cli_seen(opts, n_opts, "--frames") || cli_seen(opts, n_opts, "--max-frames") ||
                        cli_seen(opts, n_opts, "--decode-threads") || vsequential || vno_budget || vprint_prompt)) {
        cli_error("--fps, --frames, --max-frames, -j, --video-sequential, --video-no-budget and --print-prompt are for --video");
        return 2;
    }
    if (!video_path && (cli_seen(opts, n_opts, "--keep") || cli_seen(opts, n_opts, "--group"))) {
        cli_error("--keep and --group are for --video (QuickPrefill)");
        return 2;
    }
    if (cli_seen(opts, n_opts, "--keep") && !(vkeep > 0)) {
        cli_error("--keep %g: the fraction of visual tokens kept must be above 0 (at most 1)", vkeep);
        return 2;
    }
    const bool carrier_opts = cli_seen(opts, n_opts, "--carrier-keep") || cli_seen(opts, n_opts, "--carrier-max") || cli_seen(opts, n_opts, "--carrier-layer");
    if ((vcarrier || carrier_opts) && !video_path) {
        cli_error("--carrier, --carrier-keep, --carrier-layer and --carrier-max are for --video (VideoScan)");
        return 2;
    }
    if (carrier_opts && !vcarrier) {
        cli_error("--carrier-keep, --carrier-layer and --carrier-max are VideoScan's: give --carrier too");
        return 2;
    }
    if (cli_seen(opts, n_opts, "--carrier-layer") && vckeep <= 0) {
        cli_error("--carrier-layer chooses VideoScan+'s kept tokens: give --carrier-keep K too");
        return 2;
    }
    if (vcarrier && (cli_seen(opts, n_opts, "--keep") || cli_seen(opts, n_opts, "--group"))) {
        cli_error("--carrier (VideoScan) and --keep / --group (QuickPrefill) both prune the video's cache: choose one");
        return 2;
    }
    if (vckeep < 0 || vcmax < 0 || (cli_seen(opts, n_opts, "--carrier-layer") && vclayer < 0)) {
        if (vclayer < 0 && cli_seen(opts, n_opts, "--carrier-layer"))
            cli_error("--carrier-layer %lld: must not be negative (layers count from 0)", (long long)vclayer);
        else
            cli_error("--carrier-keep %lld / --carrier-max %lld: must not be negative", (long long)vckeep, (long long)vcmax);
        return 2;
    }
    if (cli_seen(opts, n_opts, "--group") && !cli_seen(opts, n_opts, "--keep")) {
        cli_error("--group sets QuickPrefill's groups: give --keep F too (--keep 1 groups without pruning)");
        return 2;
    }
    if (images.n && tokens_arg) {
        cli_error("--image goes with a text prompt (-p or -f), not --tokens");
        return 2;
    }
    lv_kv_type kvt, kvt_v;
    if (cli_kv_types(&kvo, &kvt, &kvt_v) != 0) return 2;

    int rc = 1;
    lv_model *model = NULL;
    lv_context *ctx = NULL;
    lv_sampler *smp = NULL;
    lv_detok_stream *ds = NULL;
    lv_token *toks = NULL;
    char *text = NULL;
    int32_t n_toks = 0;
    lv_batch batch = {0};
    lv_mmproj *mm = NULL;
    lv_threadpool *tp = NULL;
    lv_image_embd *embds = NULL;
    lv_mm_prompt mmp = {0};
    lv_video *video = NULL;
    lv_video_ask_params vp = lv_video_ask_default_params();
    lv_video_ask_plan vplan = {0};
    double t0 = cli_now_s(), t_encode = 0;
    lv_status st = lv_model_load(model_path, lv_model_default_params(), &model);
    if (st != LV_OK) {
        cli_fail("loading the model", st);
        goto end;
    }
    double t_load = cli_now_s() - t0;
    if (!(tp = lv_threadpool_create((int)n_threads))) {
        cli_error("cannot create the thread pool");
        goto end;
    }
    if (mmproj_path) {
        if ((st = lv_mmproj_load(mmproj_path, lv_model_n_embd(model), &mm)) != LV_OK) {
            cli_fail("loading the mmproj", st);
            goto end;
        }
        lv_video_route_libav_log();
    }
    if (video_path) {
        if ((st = lv_video_open(video_path, lv_video_default_open_params(), &video)) != LV_OK) {
            cli_fail(video_path, st);
            goto end;
        }
        vp.prompt = prompt ? prompt : "";
        vp.add_special = !no_bos;
        vp.fps = vfps;
        vp.n_frames = vframes;
        vp.max_frames = vmax_frames;
        vp.n_decode_threads = (int32_t)vthreads;
        vp.sequential = vsequential;
        vp.no_budget = vno_budget;
        vp.keep = vkeep;
        vp.group = (int32_t)vgroup;
        vp.carrier = vcarrier;
        vp.carrier_keep = (int32_t)vckeep;
        vp.carrier_max = (int32_t)vcmax;
        vp.carrier_layer = (int32_t)vclayer;
        if ((st = lv_video_ask_plan_for(model, mm, video, &vp, &vplan)) != LV_OK) {
            cli_fail(video_path, st);
            goto end;
        }
        fprintf(stderr, "video %s: %s format, %lld frames (%.3g per second of video) at %dx%d, %lld %s of %d embeddings%s, %lld text tokens, %lld positions\n",
                video_path, vplan.family, (long long)vplan.n_frames, vplan.sample_fps, vplan.frame_w, vplan.frame_h, (long long)vplan.n_units,
                vplan.n_units == vplan.n_frames ? "frames" : "pairs", vplan.unit_tokens, vcarrier ? " + a carrier" : "", (long long)vplan.n_text,
                (long long)vplan.n_rows);
        n_toks = (int32_t)vplan.n_rows;
        if (vprint_prompt) {
            const int64_t need = lv_video_ask_prompt_text(model, mm, video, &vp, NULL, 0);
            char *ptext = need >= 0 ? malloc((size_t)need + 1) : NULL;
            if (need < 0 || !ptext || lv_video_ask_prompt_text(model, mm, video, &vp, ptext, (size_t)need + 1) != need) {
                free(ptext);
                cli_fail("the prompt text", need < 0 ? LV_ERR_INVALID_ARG : LV_ERR_NOMEM);
                goto end;
            }
            fwrite(ptext, 1, (size_t)need, stdout);
            fflush(stdout);
            free(ptext);
            rc = 0;
            goto end;
        }
    } else if (mm) {
        if (!(embds = calloc((size_t)images.n, sizeof(*embds)))) {
            cli_error("out of memory");
            goto end;
        }
        const double te = cli_now_s();
        for (int i = 0; i < images.n; i++) {
            if ((st = lv_mmproj_encode_file(mm, tp, images.items[i], &embds[i])) != LV_OK) {
                cli_fail(images.items[i], st);
                goto end;
            }
            fprintf(stderr, "image %s: %dx%d, %d chunks, %d embeddings\n", images.items[i], embds[i].width, embds[i].height, embds[i].n_chunks,
                    embds[i].n_tokens);
        }
        t_encode = cli_now_s() - te;
        const char *ptext = prompt ? prompt : "";
        if ((st = lv_mm_tokenize(model, ptext, (int64_t)strlen(ptext), embds, images.n, !no_bos, &mmp)) != LV_OK) {
            cli_fail("the prompt with images", st);
            goto end;
        }
        n_toks = mmp.n_rows;
    } else if (tokens_arg) {
        if (!(toks = cli_parse_tokens(tokens_arg, &n_toks, "--tokens"))) goto end;
    } else {
        int64_t len = 0;
        if (prompt_file) {
            if (!(text = cli_read_file(prompt_file, &len))) goto end;
        } else {
            len = (int64_t)strlen(prompt);
        }
        if (!(toks = cli_tokenize(model, text ? text : prompt, len, !no_bos, &n_toks))) goto end;
    }
    if (n_toks == 0) {
        cli_error("the prompt is empty");
        goto end;
    }
    if (n_ctx < 0) n_ctx = (int64_t)n_toks + n_predict > 4096 ? (int64_t)n_toks + n_predict : 4096;
    if (n_ctx > 1 << 30) {
        cli_error("the prompt (%d tokens) plus -n %lld is more than the largest context, 2^30 tokens", n_toks, (long long)n_predict);
        goto end;
    }
    lv_context_params cp = lv_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)n_batch;
    cp.n_ubatch = (uint32_t)n_batch;
    cp.n_threads = (int32_t)n_threads;
    cp.threadpool = tp;
    cp.kv_type = kvt;
    cp.kv_type_v = kvt_v;
    if (cli_attention_params(&att, &cp.attention) != 0) goto end;
    if ((st = lv_context_create(model, cp, &ctx)) != LV_OK) {
        cli_fail("creating the context", st);
        goto end;
    }
    if ((int64_t)n_toks + n_predict > (int64_t)lv_context_n_ctx(ctx)) {
        cli_error("the prompt (%d tokens) plus -n %lld does not fit the context of %u tokens (raise -c)", n_toks, (long long)n_predict,
                  lv_context_n_ctx(ctx));
        goto end;
    }
    if (cli_seen(opts, n_opts, "--ctx-size") && n_ctx > 0) cli_warn_ctx_train(model, n_ctx, "-c");
    else cli_warn_ctx_train(model, (int64_t)n_toks + n_predict, "the prompt plus -n");
    lv_sampler_params sp = lv_sampler_default_params();
    sp.temp = (float)temp;
    sp.top_k = (int32_t)top_k;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.seed = (uint64_t)seed;
    if ((st = lv_sampler_create(sp, lv_model_n_vocab(model), &smp)) != LV_OK) {
        cli_fail("sampler", st);
        goto end;
    }
    if (!print_ids && lv_detok_stream_create(model, &ds) != LV_OK) {
        cli_fail("this model has no usable tokenizer; use --ids", LV_ERR_UNSUPPORTED);
        goto end;
    }
    batch = lv_batch_init((int32_t)n_batch);
    if (!batch.token) {
        cli_error("out of memory");
        goto end;
    }

    /* prefill */
    cli_progress prog;
    cli_progress_start(&prog, "prefill");
    double t1 = cli_now_s();
    lv_video_ask_result vres = {0};
    int64_t kv_video = 0;
    if (video) {
        vp.progress = video_progress;
        vp.progress_user = &prog;
        lv_pos n_past = 0;
        if ((st = lv_video_ask(ctx, mm, video, &vp, &n_past, &vres)) != LV_OK) {
            cli_progress_done(&prog, "failed");
            cli_fail("asking the video", st);
            goto end;
        }
        kv_video = lv_kv_used_bytes(ctx);
    } else if (mm) {
        lv_pos n_past = 0;
        if ((st = lv_mm_decode(ctx, &mmp, 0, &n_past)) != LV_OK) {
            cli_progress_done(&prog, "failed");
            cli_fail("prefill", st);
            goto end;
        }
    }
    for (int32_t i0 = 0; !mm && i0 < n_toks; i0 += (int32_t)n_batch) {
        const int32_t n = (int32_t)(n_toks - i0 < n_batch ? n_toks - i0 : n_batch);
        batch.n_tokens = n;
        for (int32_t i = 0; i < n; i++) {
            batch.token[i] = toks[i0 + i];
            batch.pos[i] = i0 + i;
            batch.seq_id[i] = 0;
            batch.logits[i] = i0 + i == n_toks - 1;
        }
        if ((st = lv_decode(ctx, &batch)) != LV_OK) {
            cli_progress_done(&prog, "failed");
            cli_fail("prefill", st);
            goto end;
        }
        cli_progress_update(&prog, (double)(i0 + n) / n_toks, NULL);
    }
    double t_prefill = cli_now_s() - t1;
    char detail[128];
    snprintf(detail, sizeof(detail), "%d tokens, %.1f tokens/s", n_toks, n_toks / (t_prefill > 0 ? t_prefill : 1e-9));
    cli_progress_done(&prog, detail);

    /* generate */
    double t2 = cli_now_s();
    int64_t n_gen = 0;
    lv_pos pos = n_toks;
    for (; n_gen < n_predict; n_gen++) {
        const float *lg = lv_get_logits_ith(ctx, -1);
        lv_token tok = lv_sampler_sample(smp, lg);
        if (print_ids) {
            printf("%s%d", n_gen ? " " : "", tok);
        } else {
            const char *piece;
            int64_t plen;
            if (lv_detok_stream_push(ds, tok, &piece, &plen) == LV_OK && plen > 0) fwrite(piece, 1, (size_t)plen, stdout);
        }
        fflush(stdout);
        if (!ignore_eos && lv_token_is_eog(model, tok)) {
            n_gen++;
            break;
        }
        if (n_gen + 1 == n_predict) {
            n_gen++;
            break;
        }
        batch.n_tokens = 1;
        batch.token[0] = tok;
        batch.pos[0] = pos++;
        batch.seq_id[0] = 0;
        batch.logits[0] = 1;
        if ((st = lv_decode(ctx, &batch)) != LV_OK) {
            printf("\n");
            cli_fail("decode", st);
            goto end;
        }
    }
    if (ds) {
        const char *piece;
        int64_t plen;
        if (lv_detok_stream_flush(ds, &piece, &plen) == LV_OK && plen > 0) fwrite(piece, 1, (size_t)plen, stdout);
    }
    printf("\n");
    fflush(stdout);
    double t_gen = cli_now_s() - t2;
    if (video)
        fprintf(stderr, "video: %lld frames, %s | decode %.2f s (%s), encode %.2f s, prefill %.2f s (CPU %.2f s), waited for frames %.2f s, "
                "first token after %.2f s (CPU %.2f s) | ", (long long)vplan.n_frames, vsequential ? "sequential" : "overlapped", vres.decode_s,
                vsequential ? "wall" : "busy, summed over the decode threads", vres.encode_s,
                vres.prefill_s, vres.prefill_cpu_s, vres.wait_s, vres.total_s, vres.total_cpu_s);
    if (video && vres.budget_tokens > 0)
        fprintf(stderr, "thread budget: %d tokens, at most %d held, in use %.0f%% of the time, the pool yielded %lld times | ", vres.budget_tokens,
                vres.budget_max_held, 100 * vres.budget_use, (long long)vres.budget_yields);
    if (video && vkeep > 0)
        fprintf(stderr, "QuickPrefill: %lld groups of %lld frames, keep %g: %lld of %lld embedding rows pruned from each full-attention head, "
                "pruning %.2f s, KV after the video %.1f MiB (%lld bytes) | ", (long long)vres.n_groups, (long long)vres.group_frames, vkeep,
                (long long)vres.n_pruned, (long long)(vplan.n_units * vplan.unit_tokens), vres.prune_s, (double)kv_video / (1024.0 * 1024.0),
                (long long)kv_video);
    else if (video && vcarrier)
        fprintf(stderr, "VideoScan: %lld carriers held (of %lld units), %lld video rows in each full-attention head's cache (carriers + %lld kept visual "
                "rows each), %lld visual rows dropped after their unit's forward, %lld carriers (%lld rows) dropped by the cap (--carrier-max %lld), "
                "KV after the video %.1f MiB (%lld bytes) | ", (long long)vres.n_carriers, (long long)vplan.n_units, (long long)vres.n_carrier_rows, (long long)vckeep,
                (long long)vres.n_pruned, (long long)vres.n_carriers_dropped, (long long)vres.n_cap_rows_dropped, (long long)vcmax, (double)kv_video / (1024.0 * 1024.0), (long long)kv_video);
    else if (video)
        fprintf(stderr, "KV after the video %.1f MiB (%lld bytes) | ", (double)kv_video / (1024.0 * 1024.0), (long long)kv_video);
    else if (mm) fprintf(stderr, "images: %d, encoded in %.2f s | ", images.n, t_encode);
    fprintf(stderr, "load: %.2f s | prompt: %d tokens, %.2f s, %.1f tokens/s | generation: %lld tokens, %.2f s, %.1f tokens/s | KV %.1f MiB\n",
            t_load, n_toks, t_prefill, n_toks / (t_prefill > 0 ? t_prefill : 1e-9), (long long)n_gen, t_gen,
            n_gen / (t_gen > 0 ? t_gen : 1e-9), (double)lv_kv_used_bytes(ctx) / (1024.0 * 1024.0));
    rc = 0;
end:
    lv_mm_prompt_free(&mmp);
    lv_video_free(video);
    for (int i = 0; embds && i < images.n; i++) lv_image_embd_free(&embds[i]);
    free(embds);
    lv_mmproj_free(mm);
    lv_batch_free(&batch);
    lv_detok_stream_free(ds);
    lv_sampler_free(smp);
    free(toks);
    free(text);
    lv_context_free(ctx);
    lv_model_free(model);
    lv_threadpool_free(tp);
    cli_attention_free(&att);
    return rc;
}
