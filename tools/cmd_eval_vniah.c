/*
 * cmd_eval_vniah.c: `longview eval vniah` (issue 20, docs/vniah.md "Evaluation: eval vniah"): V-NIAH
 * accuracy and cost per video mode. For every (length, depth, sample) it writes one real H.264
 * evaluation video (the haystack looped, the needles drawn at the depth: tools/common/vnvideo.c, the
 * writer `longview video-vniah` uses, with the same seed rule), then asks the question of every mode
 * about that same file through the library path `longview run --video` takes (lv_video_ask on a fresh
 * context, then greedy decoding), and scores the answer: right when the response's first number is the
 * expected number (vn_answer_right). Output: a table per mode (rows: lengths, columns: depths, cells:
 * accuracy) with the time to the first token and the KV memory, JSON lines (-o) and an SVG heat map
 * (--plot), as `eval niah`.
 *
 * Modes (--mode, comma-separated):
 *   dense                every visual token kept
 *   quickprefill:F       QuickPrefill: groups of --group frames, each group's visual tokens pruned in
 *                        every layer's cache to the fraction F of smallest key norm (F = 1: dense)
 *   videoscan            VideoScan: one carrier per frame kept (--carrier-max cap)
 *   videoscan+:K         VideoScan+: and K visual tokens per frame, the carrier's most attended
 *   ...+duo, ...+duo+lserve  each of them with DuoAttention heads (--heads at --sparsity; streaming
 *                        heads keep --sink + --window) and, +lserve, LServe page selection for the
 *                        question (--kv-budget, --select-every)
 */
#define _GNU_SOURCE
#include "common/cli.h"
#include "common/svg.h"
#include "common/vniah.h"
#include "common/vnvideo.h"
#include "commands.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LENGTHS 32
#define MAX_DEPTHS 32
#define MAX_MODES 16

typedef enum vkind { VK_DENSE, VK_QUICKPREFILL, VK_VIDEOSCAN } vkind;
typedef enum vattn { VA_NONE, VA_DUO, VA_DUO_LSERVE } vattn;

typedef struct vmode {
    char name[64];
    vkind kind;
    double keep;       /* quickprefill:F */
    int32_t ckeep;     /* videoscan+:K */
    vattn attn;
} vmode;

typedef struct vcell {
    int n, right;
} vcell;

typedef struct vresult {
    vcell cells[MAX_LENGTHS][MAX_DEPTHS];
    double len_ttft[MAX_LENGTHS], len_prefill[MAX_LENGTHS];
    int len_n[MAX_LENGTHS];
    int64_t len_kv[MAX_LENGTHS]; /* the most after a question's prompt at that length */
} vresult;

/* "60,10m,1h" -> seconds (a number with an optional s, m or h) */
static int parse_lengths(const char *s, double *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0) || n == max) goto bad;
        if (*end == 's') end++;
        else if (*end == 'm') v *= 60, end++;
        else if (*end == 'h') v *= 3600, end++;
        if (!(v <= 86400)) goto bad;
        out[n++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) goto bad;
    }
    if (n == 0) goto bad;
    return n;
bad:
    cli_error("--lengths: '%s' is not a list of video lengths in seconds (60, 10m, 1h; at most 24 h, at most %d)", s, max);
    return -1;
}

static const char *const k_mode_help = "dense, quickprefill:F (0 < F <= 1), videoscan, videoscan+:K (K >= 1), each optionally +duo or +duo+lserve";

/* one mode: BASE[+duo|+duo+lserve] */
static bool parse_mode(const char *s, size_t len, vmode *m) {
    memset(m, 0, sizeof(*m));
    char b[64];
    if (len == 0 || len >= sizeof(b)) return false;
    memcpy(b, s, len);
    b[len] = '\0';
    size_t bl = len;
    if (bl > 11 && strcmp(b + bl - 11, "+duo+lserve") == 0) m->attn = VA_DUO_LSERVE, bl -= 11;
    else if (bl > 4 && strcmp(b + bl - 4, "+duo") == 0) m->attn = VA_DUO, bl -= 4;
    b[bl] = '\0';
    char *end;
    if (strcmp(b, "dense") == 0) {
        m->kind = VK_DENSE;
        snprintf(m->name, sizeof(m->name), "dense");
    } else if (strncmp(b, "quickprefill:", 13) == 0) {
        m->kind = VK_QUICKPREFILL;
        m->keep = strtod(b + 13, &end);
        if (end == b + 13 || *end || !(m->keep > 0 && m->keep <= 1)) return false;
        snprintf(m->name, sizeof(m->name), "quickprefill:%g", m->keep);
    } else if (strcmp(b, "videoscan") == 0) {
        m->kind = VK_VIDEOSCAN;
        snprintf(m->name, sizeof(m->name), "videoscan");
    } else if (strncmp(b, "videoscan+:", 11) == 0) {
        m->kind = VK_VIDEOSCAN;
        const long k = strtol(b + 11, &end, 10);
        if (end == b + 11 || *end || k < 1 || k > 1 << 20) return false;
        m->ckeep = (int32_t)k;
        snprintf(m->name, sizeof(m->name), "videoscan+:%ld", k);
    } else {
        return false;
    }
    if (m->attn) strcat(m->name, m->attn == VA_DUO ? "+duo" : "+duo+lserve");
    return true;
}

static int parse_modes(const char *s, vmode *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        const size_t l = strcspn(p, ",");
        if (n == max || !parse_mode(p, l, &out[n])) {
            cli_error("--mode: '%.*s' is not a mode: %s (comma-separate several; at most %d)", (int)l, p, k_mode_help, max);
            return -1;
        }
        for (int j = 0; j < n; j++)
            if (strcmp(out[j].name, out[n].name) == 0) {
                cli_error("--mode: '%s' is listed twice", out[n].name);
                return -1;
            }
        n++;
        p += l;
        if (*p == ',') p++;
    }
    if (n == 0) cli_error("--mode: empty list");
    return n ? n : -1;
}

/* 60 -> "1m", 3600 -> "1h", 4 -> "4s", 90 -> "90s" */
static void fmt_len(double s, char *out, size_t n) {
    if (s >= 3600 && fmod(s, 3600) == 0) snprintf(out, n, "%gh", s / 3600);
    else if (s >= 60 && fmod(s, 60) == 0) snprintf(out, n, "%gm", s / 60);
    else snprintf(out, n, "%gs", s);
}

static void one_line(const char *s, char *out, size_t size) {
    size_t j = 0;
    for (size_t i = 0; s[i] && j + 4 < size; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '\n') out[j++] = '\\', out[j++] = 'n';
        else if (c < 0x20) out[j++] = ' ';
        else out[j++] = (char)c;
        if (j >= 60) {
            memcpy(out + j, "...", 3);
            j += 3;
            break;
        }
    }
    out[j] = '\0';
}

/* Replace every byte that does not belong to a valid UTF-8 sequence by '?' (a response cut inside a
 * character, or a random model's stray bytes), so the text goes into JSON as it is otherwise. */
static void utf8_clean(char *s, int64_t n) {
    unsigned char *u = (unsigned char *)s;
    for (int64_t i = 0; i < n;) {
        const unsigned char c = u[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (int k = 1; ok && k < len; k++) ok = (u[i + k] & 0xC0) == 0x80;
        if (ok && len == 2) ok = c >= 0xC2;                                             /* overlong */
        if (ok && len == 3) ok = !(c == 0xE0 && u[i + 1] < 0xA0) && !(c == 0xED && u[i + 1] >= 0xA0); /* overlong, surrogates */
        if (ok && len == 4) ok = c <= 0xF4 && !(c == 0xF0 && u[i + 1] < 0x90) && !(c == 0xF4 && u[i + 1] >= 0x90);
        if (!ok) {
            u[i++] = '?';
            continue;
        }
        i += len;
    }
}

static const char *default_haystack(void) {
    static const char *const cand[] = {"../shared/data/video/nasa_13013.mp4", "../../shared/data/video/nasa_13013.mp4"};
    for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++)
        if (access(cand[i], R_OK) == 0) return cand[i];
    return NULL;
}

static void ask_progress(const lv_video_ask_progress *p, void *user) {
    cli_progress *prog = user;
    char detail[128];
    snprintf(detail, sizeof(detail), "frames %lld/%lld decoded, %lld encoded, %lld prefilled", (long long)p->n_decoded, (long long)p->n_frames,
             (long long)p->n_encoded, (long long)p->n_prefilled);
    cli_progress_update(prog, p->n_rows > 0 ? (double)p->n_rows_done / (double)p->n_rows : 0, detail);
}

static int write_plot(const char *path, const char *title, const vresult *res, const vmode *modes, int n_modes, const double *lengths,
                      int n_len, const double *depths, int n_dep) {
    const double cw = n_len <= 8 ? 56 : 30, ch = n_dep <= 11 ? 26 : 14;
    const double left = 70, top = 56, panel_w = cw * n_len, panel_gap = 40, grid_h = ch * n_dep;
    const double width = left + n_modes * (panel_w + panel_gap) + 60 > 520 ? left + n_modes * (panel_w + panel_gap) + 60 : 520;
    const double height = top + 24 + grid_h + 70;
    FILE *f = svg_begin(path, width, height);
    if (!f) return 1;
    svg_text(f, 12, 22, 14, "start", "%s", title);
    svg_text(f, 12, 40, 11, "start", "colour: accuracy (red 0, green 1); x: video length, y: needle depth");
    for (int m = 0; m < n_modes; m++) {
        const double x0 = left + m * (panel_w + panel_gap), y0 = top + 24;
        int acc = 0, n = 0;
        for (int i = 0; i < n_len; i++)
            for (int d = 0; d < n_dep; d++) acc += res[m].cells[i][d].right, n += res[m].cells[i][d].n;
        svg_text(f, x0 + panel_w / 2, top + 14, 12, "middle", "%s (mean %.2f)", modes[m].name, n ? (double)acc / n : 0.0);
        for (int d = 0; d < n_dep; d++) {
            if (m == 0) svg_text(f, x0 - 6, y0 + (d + 0.5) * ch + 4, 10, "end", "%.0f%%", depths[d] * 100);
            for (int i = 0; i < n_len; i++) {
                const vcell *c = &res[m].cells[i][d];
                const double a = c->n ? (double)c->right / c->n : NAN;
                char col[8], tip[200], lab[32];
                fmt_len(lengths[i], lab, sizeof(lab));
                svg_red_green(a, col);
                snprintf(tip, sizeof(tip), "%s: %s video, depth %.2f: %d of %d right", modes[m].name, lab, depths[d], c->right, c->n);
                svg_rect(f, x0 + i * cw, y0 + d * ch, cw, ch, col, "#ffffff", 1, tip);
                if (c->n && cw >= 30) {
                    fprintf(f, "<g fill=\"%s\">", svg_ink_on(col));
                    svg_text(f, x0 + (i + 0.5) * cw, y0 + (d + 0.5) * ch + 4, 10, "middle", "%.2f", a);
                    fputs("</g>\n", f);
                }
            }
        }
        for (int i = 0; i < n_len; i++) {
            char lab[32];
            fmt_len(lengths[i], lab, sizeof(lab));
            svg_text(f, x0 + (i + 0.5) * cw, y0 + grid_h + 14, 10, "middle", "%s", lab);
        }
    }
    svg_text(f, left + (width - left - 60) / 2, top + 24 + grid_h + 36, 11, "middle", "video length");
    svg_text_vertical(f, 16, top + 24 + grid_h / 2, 11, "depth");
    return svg_end(f, path);
}

int cmd_eval_vniah(int argc, char **argv) {
    const char *model_path = NULL, *mmproj_path = NULL, *haystack = NULL, *lengths_arg = "60,600,3600", *depths_arg = "0,0.25,0.5,0.75,1";
    const char *mode_arg = "dense", *task_arg = "single", *fps_s = "1", *size_s = "1280x720", *preset = "veryfast", *videos_dir = NULL;
    const char *heads_path = NULL, *out_path = NULL, *plot_path = NULL;
    cli_kv kvo = {.both = "f16"};
    int64_t samples = 1, n_predict = 16, needle_frames = 1, keyed_needles = 3, group = 16, carrier_max = 64, carrier_layer = -1;
    int64_t sink = 64, window = 256, kv_budget = 4096, select_every = 4, n_ctx = 0, n_batch = 512, n_threads = 0, dthreads = 0;
    int64_t seed = 0, head_seed = 42, crf = 23, cache_mb = 512, verbose = 0;
    double sparsity = 0.5, box_min = 0.45, box_max = 0.9;
    bool quiet = false;
    cli_opt opts[] = {
        {"-m", "--model", CLI_STR, &model_path, "TEXT.gguf", "the text model", .required = true},
        {NULL, "--mmproj", CLI_STR, &mmproj_path, "MM.gguf", "its vision tower + projector (llama.cpp mmproj GGUF)", .required = true},
        {NULL, "--haystack", CLI_STR, &haystack, "VIDEO[,VIDEO]",
         "haystack footage: every video stream of each file, looped (default ../shared/data/video/nasa_13013.mp4)"},
        {NULL, "--task", CLI_STR, &task_arg, "T", "single | keyed | order: the question (docs/vniah.md; default single)"},
        {NULL, "--lengths", CLI_STR, &lengths_arg, "S[,S]", "video lengths in seconds, e.g. 60,10m,1h (default 60,600,3600)"},
        {NULL, "--depths", CLI_STR, &depths_arg, "D[,D]", "needle depths: the needle starts at frame round(D x (frames - needle frames)) (default 0,0.25,0.5,0.75,1)"},
        {NULL, "--samples", CLI_INT, &samples, "N", "videos per (length, depth), seeds --seed, --seed+1, ... (default 1)", .lo = 1, .hi = 100000},
        {NULL, "--fps", CLI_STR, &fps_s, "F", "frames per second of the video and of the question's sampling, F or N/D (default 1; 0.1: one frame every 10 s)"},
        {NULL, "--needle-frames", CLI_INT, &needle_frames, "N", "frames a needle stays on screen (default 1)", .lo = 1, .hi = 100000},
        {NULL, "--needles", CLI_INT, &keyed_needles, "N", "keyed: needles per video, 2..8 (default 3)", .lo = 2, .hi = 8},
        {NULL, "--size", CLI_STR, &size_s, "WxH", "frame size of the videos, even sides (default 1280x720)"},
        {NULL, "--box", CLI_FLOAT, &box_min, "F", "smallest needle box, a fraction of the width (default 0.45)", .flo = 0.01, .fhi = 1},
        {NULL, "--box-max", CLI_FLOAT, &box_max, "F", "largest needle box, a fraction of the width (default 0.9)", .flo = 0.01, .fhi = 1},
        {NULL, "--crf", CLI_INT, &crf, "N", "x264 quality, 0 (lossless) to 51 (default 23)", .lo = 0, .hi = 51},
        {NULL, "--preset", CLI_STR, &preset, "P", "x264 preset: ultrafast ... veryslow (default veryfast)"},
        {NULL, "--cache", CLI_INT, &cache_mb, "MB", "keep one pass of the resized haystack in memory when it fits (default 512)", .lo = 0, .hi = 1 << 20},
        {NULL, "--videos", CLI_STR, &videos_dir, "DIR", "keep the evaluation videos and their JSON truth in DIR (created; default: a temporary directory, removed)"},
        {NULL, "--mode", CLI_STR, &mode_arg, "M[,M]",
         "dense | quickprefill:F | videoscan | videoscan+:K, each optionally +duo or +duo+lserve; comma-separated (default dense)"},
        {NULL, "--group", CLI_INT, &group, "N", "quickprefill: frames per group (default 16)", .lo = 1, .hi = 1 << 22},
        {NULL, "--carrier-max", CLI_INT, &carrier_max, "N", "videoscan: at most N carriers held (default 64; 0 = no cap)", .lo = 0, .hi = 1 << 22},
        {NULL, "--carrier-layer", CLI_INT, &carrier_layer, "L", "videoscan+: keep layer L's choice of visual tokens in every layer (default: each layer its own)",
         .lo = 0, .hi = 1 << 20},
        {NULL, "--heads", CLI_STR, &heads_path, "FILE.tsv", "DuoAttention pattern for the +duo and +duo+lserve modes"},
        {NULL, "--sparsity", CLI_FLOAT, &sparsity, "S", "+duo: fraction of KV heads made streaming (default 0.5)", .flo = 0, .fhi = 1},
        {NULL, "--head-seed", CLI_INT, &head_seed, "N", "+duo: seed of the pattern's tie-breaking noise (default 42)", .lo = 0, .hi = INT64_MAX},
        {NULL, "--sink", CLI_INT, &sink, "N", "+duo: tokens streaming heads keep at the start (default 64)", .lo = 0, .hi = 1 << 30},
        {NULL, "--window", CLI_INT, &window, "N", "+duo: recent tokens they keep (default 256)", .lo = 1, .hi = 1 << 30},
        {NULL, "--kv-budget", CLI_INT, &kv_budget, "N", "+duo+lserve: tokens of selected pages per head (default 4096)", .lo = 1, .hi = 1 << 30},
        {NULL, "--select-every", CLI_INT, &select_every, "N", "+duo+lserve: re-select pages every N decode steps (default 4)", .lo = 1, .hi = 1 << 20},
        {"-n", "--n-predict", CLI_INT, &n_predict, "N", "answer tokens at most, up to 1024 (default 16; stops at end-of-generation)", .lo = 1, .hi = 1024},
        {"-c", "--ctx-size", CLI_INT, &n_ctx, "N", "KV capacity (default: each question's rows plus -n)", .lo = 0, .hi = 1 << 30},
        {"-b", "--batch", CLI_INT, &n_batch, "N", "prefill batch in rows (default 512)", .lo = 1, .hi = 1 << 20},
        {"-t", "--threads", CLI_INT, &n_threads, "N", "threads (default: all cores)", .lo = 0, .hi = 512},
        {"-j", "--decode-threads", CLI_INT, &dthreads, "N", "video decode threads, within the budget of -t (default: one per core)", .lo = 0, .hi = 512},
        CLI_KV_OPTS(kvo, "f16"),
        {NULL, "--seed", CLI_INT, &seed, "N", "first sample's seed: the needles' numbers, places and styles (default 0)", .lo = 0, .hi = INT64_MAX},
        {"-o", "--output", CLI_STR, &out_path, "FILE", "write every (video, mode) as a JSON line"},
        {NULL, "--plot", CLI_STR, &plot_path, "OUT.svg", "write an SVG heat map (length x depth, colour = accuracy), one panel per mode"},
        {"-q", "--quiet", CLI_FLAG, &quiet, NULL, "no progress and per-question lines on stderr"},
        {"-v", "--verbose", CLI_INT, &verbose, "N", "log level: 0 warnings, 1 info, 2 debug", .lo = 0, .hi = 2},
    };
    const int n_opts = (int)(sizeof(opts) / sizeof(opts[0]));
    int r = cli_parse(argc, argv, opts, n_opts,
                      "longview eval vniah -m TEXT.gguf --mmproj MM.gguf [--haystack VIDEO[,VIDEO]] [--task single|keyed|order]\n"
                      "       [--lengths 60,10m,1h] [--depths 0,0.5,1] [--samples N] [--fps F] [--size WxH] [-n N] [--seed N]\n"
                      "       [--mode dense,quickprefill:0.5,videoscan,videoscan+:4,dense+duo+lserve ...] [--group N] [--carrier-max N]\n"
                      "       [--heads FILE.tsv --sparsity S --kv-budget N] [--videos DIR] [-o results.jsonl] [--plot heat.svg]",
                      "V-NIAH (docs/vniah.md): for every video length, needle depth and sample, a real H.264 video (the haystack\n"
                      "looped at --fps, a 5-digit number drawn on the needle's frames, as `longview video-vniah` writes it with the\n"
                      "sample's seed), asked in every mode through lv_video_ask (the path of `longview run --video`; SmolVLM2: every\n"
                      "frame of the video sampled) with the question of the task after the video; greedy answer. Right when the answer's\n"
                      "first number (its first run of digits) is the needle's number. Prints accuracy per (length, depth), the\n"
                      "time to the first token and the KV memory per mode. Modes: dense; quickprefill:F (QuickPrefill, keep F of\n"
                      "each group's visual tokens); videoscan (one carrier per frame); videoscan+:K (and K visual tokens per frame);\n"
                      "each with +duo (DuoAttention heads) or +duo+lserve (and LServe page selection for the question).",
                      NULL, 0, NULL);
    if (r) return r > 0 ? 0 : 2;
    cli_set_verbosity(verbose);
    lv_video_route_libav_log();
    vn_kind kind;
    if (strcmp(task_arg, "single") == 0) kind = VN_SINGLE;
    else if (strcmp(task_arg, "keyed") == 0) kind = VN_KEYED;
    else if (strcmp(task_arg, "order") == 0) kind = VN_ORDER;
    else return cli_error("--task: '%s' is not single, keyed or order", task_arg), 2;
    double lengths[MAX_LENGTHS], depths[MAX_DEPTHS];
    vmode modes[MAX_MODES];
    const int n_len = parse_lengths(lengths_arg, lengths, MAX_LENGTHS);
    const int n_dep = n_len < 0 ? -1 : cli_parse_fractions("--depths", depths_arg, depths, MAX_DEPTHS);
    const int n_modes = n_dep < 0 ? -1 : parse_modes(mode_arg, modes, MAX_MODES);
    if (n_modes < 0) return 2;
    bool need_heads = false, any_qp = false, any_vs = false, any_vsplus = false;
    for (int m = 0; m < n_modes; m++) {
        need_heads |= modes[m].attn != VA_NONE;
        any_qp |= modes[m].kind == VK_QUICKPREFILL;
        any_vs |= modes[m].kind == VK_VIDEOSCAN;
        any_vsplus |= modes[m].ckeep > 0;
    }
    if (need_heads && !heads_path) return cli_error("the +duo and +duo+lserve modes need a head pattern: --heads full_attention_heads.tsv"), 2;
    if (heads_path && !need_heads) fprintf(stderr, "longview: warning: --heads is used only by the +duo and +duo+lserve modes\n");
    if (cli_seen(opts, n_opts, "--group") && !any_qp) return cli_error("--group is for the quickprefill:F modes"), 2;
    if ((cli_seen(opts, n_opts, "--carrier-max") || cli_seen(opts, n_opts, "--carrier-layer")) && !any_vs)
        return cli_error("--carrier-max and --carrier-layer are for the videoscan modes"), 2;
    if (cli_seen(opts, n_opts, "--carrier-layer") && !any_vsplus) return cli_error("--carrier-layer is for the videoscan+:K modes"), 2;
    if (cli_seen(opts, n_opts, "--needles") && kind != VN_KEYED) return cli_error("--needles is for --task keyed"), 2;
    int32_t fnum, fden, W, H;
    if (!vn_parse_fps(fps_s, &fnum, &fden)) return cli_error("--fps: '%s' is not a rate in (0, 1000] (F or N/D)", fps_s), 2;
    if (!vn_parse_size(size_s, &W, &H)) return cli_error("--size: '%s' is not WxH with even sides in 2..16384", size_s), 2;
    if (box_max < box_min) return cli_error("--box-max %g is below --box %g", box_max, box_min), 2;
    const double fps = (double)fnum / fden;
    lv_kv_type kvt, kvt_v;
    if (cli_kv_types(&kvo, &kvt, &kvt_v) != 0) return 2;
    if (!haystack && !(haystack = default_haystack())) return cli_error("no haystack footage: --haystack VIDEO[,VIDEO] (e.g. ../shared/data/video/nasa_13013.mp4)"), 2;
    /* every video's needles can be laid out (a length too short for the task fails here, before any work) */
    for (int li = 0; li < n_len; li++) {
        const int64_t nf = llround(lengths[li] * fps);
        vn_eval_needles en;
        if (nf < 1 || vn_eval_layout(kind, nf, fps, (int32_t)needle_frames, (int32_t)keyed_needles, 5, depths[0], (uint64_t)seed, &en) != 0) {
            char lab[32];
            fmt_len(lengths[li], lab, sizeof(lab));
            cli_error("--lengths %s at --fps %s: %lld frames, too few for --task %s", lab, fps_s, (long long)nf, task_arg);
            return 2;
        }
    }

    int rc = 1;
    lv_model *model = NULL;
    lv_mmproj *mm = NULL;
    lv_threadpool *tp = NULL;
    lv_head_pattern *pattern = NULL;
    lv_sampler *smp = NULL;
    lv_context *ctx = NULL;
    lv_video *video = NULL;
    vn_hay *hay = NULL;
    lv_batch batch = {0};
    FILE *jf = NULL;
    char *tmpdir = NULL, *resp = NULL;
    char vpath[4096] = "", jpath[4096] = "";
    cli_out vo = {0}, jo = {0};
    vresult *res = calloc((size_t)n_modes, sizeof(vresult));
    const int64_t resp_cap = n_predict * 256 + 64;
    resp = malloc((size_t)resp_cap + 1);
    if (!res || !resp) {
        cli_error("out of memory");
        goto end;
    }
    if (vn_hay_open(haystack, W, H, fps, n_threads, cache_mb, &hay)) goto end; /* a bad haystack fails before any model work */
    lv_status st = lv_model_load(model_path, lv_model_default_params(), &model);
    if (st != LV_OK) {
        cli_fail("loading the model", st);
        goto end;
    }
    const char *model_base = strrchr(model_path, '/') ? strrchr(model_path, '/') + 1 : model_path;
    if ((st = lv_mmproj_load(mmproj_path, lv_model_n_embd(model), &mm)) != LV_OK) {
        cli_fail("loading the mmproj", st);
        goto end;
    }
    if (!(tp = lv_threadpool_create((int)n_threads))) {
        cli_error("cannot create the thread pool");
        goto end;
    }
    if (heads_path) {
        if ((st = lv_head_pattern_load(heads_path, &pattern)) != LV_OK) {
            cli_fail("loading the head pattern", st);
            goto end;
        }
        if (lv_head_pattern_n_layer(pattern) != lv_model_n_layer(model) || lv_head_pattern_n_head_kv(pattern) != lv_model_n_head_kv(model)) {
            cli_error("the head pattern '%s' is %d layers x %d KV heads but the model has %d layers x %d KV heads: it was trained for another model",
                      heads_path, lv_head_pattern_n_layer(pattern), lv_head_pattern_n_head_kv(pattern), lv_model_n_layer(model),
                      lv_model_n_head_kv(model));
            goto end;
        }
    }
    lv_sampler_params sp = lv_sampler_default_params();
    sp.temp = 0;
    if ((st = lv_sampler_create(sp, lv_model_n_vocab(model), &smp)) != LV_OK) {
        cli_fail("sampler", st);
        goto end;
    }
    batch = lv_batch_init(1);
    if (!batch.token) {
        cli_error("out of memory");
        goto end;
    }
    const char *dir = videos_dir;
    if (videos_dir) {
        if (mkdir(videos_dir, 0777) != 0 && errno != EEXIST) {
            cli_error("--videos: cannot create directory '%s': %s", videos_dir, strerror(errno));
            goto end;
        }
    } else {
        const char *td = getenv("TMPDIR");
        if (asprintf(&tmpdir, "%s/lv-vniah-XXXXXX", td && *td ? td : "/tmp") < 0) {
            tmpdir = NULL;
            cli_error("out of memory");
            goto end;
        }
        if (!mkdtemp(tmpdir)) {
            cli_error("cannot create a temporary directory '%s': %s", tmpdir, strerror(errno));
            free(tmpdir);
            tmpdir = NULL;
            goto end;
        }
        dir = tmpdir;
    }
    if (out_path && !(jf = fopen(out_path, "w"))) {
        cli_error("cannot write '%s'", out_path);
        goto end;
    }
    lv_video_writer_params wp = lv_video_default_writer_params();
    wp.width = W, wp.height = H, wp.fps_num = fnum, wp.fps_den = fden;
    wp.crf = (int32_t)crf, wp.preset = preset, wp.n_threads = (int32_t)n_threads;

    const int64_t n_videos = (int64_t)n_len * n_dep * samples;
    int64_t vi = 0;
    bool warned_frames = false;
    const double t_start = cli_now_s();
    for (int li = 0; li < n_len; li++)
        for (int di = 0; di < n_dep; di++)
            for (int64_t s = 0; s < samples; s++, vi++) {
                const uint64_t vseed = (uint64_t)seed + (uint64_t)s;
                const int64_t nf = llround(lengths[li] * fps);
                char lab[32];
                fmt_len(lengths[li], lab, sizeof(lab));
                /* the needles, and the video (as video-vniah writes it with --seed vseed and these needles) */
                vn_eval_needles en;
                if (vn_eval_layout(kind, nf, fps, (int32_t)needle_frames, (int32_t)keyed_needles, 5, depths[di], vseed, &en) != 0) goto end;
                vn_vneedle nd[8];
                for (int k = 0; k < en.n_needles; k++) {
                    memset(&nd[k], 0, sizeof(nd[k]));
                    snprintf(nd[k].text, sizeof(nd[k].text), "%s", en.needles[k].text);
                    nd[k].t = en.needles[k].t;
                    nd[k].dur = (double)needle_frames / fps;
                    if (vn_vneedle_place(&nd[k], k, fps, nf, W, H, vseed, box_min, box_max) != 0 || nd[k].f0 != en.needles[k].f0 ||
                        nd[k].f1 != en.needles[k].f1) {
                        cli_error("internal: needle %d at frames [%lld, %lld) is not the layout's [%d, %d)", k, (long long)nd[k].f0,
                                  (long long)nd[k].f1, en.needles[k].f0, en.needles[k].f1);
                        goto end;
                    }
                }
                snprintf(vpath, sizeof(vpath), "%s/vniah-%s-%s-d%.2f-s%llu.mp4", dir, task_arg, lab, depths[di], (unsigned long long)vseed);
                snprintf(jpath, sizeof(jpath), "%s/vniah-%s-%s-d%.2f-s%llu.json", dir, task_arg, lab, depths[di], (unsigned long long)vseed);
                if (!quiet)
                    fprintf(stderr, "video %lld/%lld: %s at %g fps (%lld frames), depth %.2f, seed %llu: needle%s", (long long)vi + 1,
                            (long long)n_videos, lab, fps, (long long)nf, depths[di], (unsigned long long)vseed, en.n_needles > 1 ? "s" : "");
                for (int k = 0; !quiet && k < en.n_needles; k++) {
                    char ts[32];
                    lv_video_ask_timestamp(nd[k].t, ts, sizeof(ts));
                    fprintf(stderr, " %s at %s (frame %lld)", nd[k].text, ts, (long long)nd[k].f0);
                }
                if (!quiet) fprintf(stderr, "; question \"%s\", answer %s\n", en.question, en.answer);
                if (vn_hay_rewind(hay) != 0 || !cli_out_open(&vo, vpath, true)) goto end;
                if (vn_write_video(hay, vo.tmp, &wp, nf, nd, en.n_needles, quiet ? NULL : "writing the video") != 0 || cli_out_commit(&vo) != 0)
                    goto end;
                FILE *sf = cli_out_open(&jo, jpath, false);
                if (!sf) goto end;
                vn_write_json(sf, vpath, hay, &wp, nf, vseed, nd, en.n_needles);
                if (cli_out_commit(&jo) != 0) goto end;
                if ((st = lv_video_open(vpath, lv_video_default_open_params(), &video)) != LV_OK) {
                    cli_fail("reading the evaluation video back", st);
                    goto end;
                }
                for (int m = 0; m < n_modes; m++) {
                    const vmode *md = &modes[m];
                    lv_video_ask_params vp = lv_video_ask_default_params();
                    vp.prompt = en.question; /* after the video, as train-video lays its samples out */
                    vp.fps = fps;
                    vp.max_frames = nf; /* every frame of the video */
                    vp.n_decode_threads = (int32_t)dthreads;
                    if (md->kind == VK_QUICKPREFILL) vp.keep = md->keep, vp.group = (int32_t)group;
                    if (md->kind == VK_VIDEOSCAN) {
                        vp.carrier = true;
                        vp.carrier_keep = md->ckeep;
                        vp.carrier_max = (int32_t)carrier_max;
                        vp.carrier_layer = md->ckeep > 0 ? (int32_t)carrier_layer : -1;
                    }
                    lv_video_ask_plan plan;
                    if ((st = lv_video_ask_plan_for(model, mm, video, &vp, &plan)) != LV_OK) {
                        cli_fail(vpath, st);
                        goto end;
                    }
                    if (plan.n_frames != nf && !warned_frames) {
                        fprintf(stderr, "longview: warning: the %s format samples %lld of the video's %lld frames: a needle may fall between them\n",
                                plan.family, (long long)plan.n_frames, (long long)nf);
                        warned_frames = true;
                    }
                    const int64_t need = plan.n_rows + n_predict;
                    const int64_t cap = n_ctx > 0 ? n_ctx : need;
                    if (need > cap) {
                        cli_error("the question (%lld rows) plus -n %lld does not fit -c %lld", (long long)plan.n_rows, (long long)n_predict,
                                  (long long)n_ctx);
                        goto end;
                    }
                    lv_context_params cp = lv_context_default_params();
                    cp.n_ctx = (uint32_t)cap;
                    cp.n_batch = (uint32_t)n_batch;
                    cp.n_ubatch = (uint32_t)n_batch;
                    cp.n_threads = (int32_t)n_threads;
                    cp.threadpool = tp;
                    cp.kv_type = kvt;
                    cp.kv_type_v = kvt_v;
                    lv_attention_params *ap = &cp.attention;
                    if (md->attn != VA_NONE) {
                        ap->heads = pattern;
                        ap->sparsity = (float)sparsity;
                        ap->pattern_seed = (uint64_t)head_seed;
                        ap->sink = (int32_t)sink;
                        ap->window = (int32_t)window;
                    }
                    if (md->attn == VA_DUO_LSERVE) {
                        ap->select = true;
                        ap->kv_budget = (int32_t)kv_budget;
                        ap->select_every = (int32_t)select_every;
                    }
                    if ((st = lv_context_create(model, cp, &ctx)) != LV_OK) {
                        char what[96];
                        snprintf(what, sizeof(what), "creating the context (mode %s)", md->name);
                        cli_fail(what, st);
                        goto end;
                    }
                    cli_progress prog;
                    char plabel[96];
                    snprintf(plabel, sizeof(plabel), "[%s]", md->name);
                    const bool tty = !quiet && isatty(STDERR_FILENO);
                    if (tty) {
                        cli_progress_start(&prog, plabel);
                        vp.progress = ask_progress;
                        vp.progress_user = &prog;
                    }
                    lv_video_ask_result vr;
                    lv_pos n_past = 0;
                    const double t0 = cli_now_s();
                    if ((st = lv_video_ask(ctx, mm, video, &vp, &n_past, &vr)) != LV_OK) {
                        if (tty) cli_progress_done(&prog, "failed");
                        char what[4200];
                        snprintf(what, sizeof(what), "asking %s (mode %s)", vpath, md->name);
                        cli_fail(what, st);
                        goto end;
                    }
                    const int64_t kv_bytes = lv_kv_used_bytes(ctx);
                    /* greedy answer */
                    lv_token gen[1024]; /* -n is at most 1024 */
                    int64_t n_gen = 0;
                    double ttft = 0;
                    const double t1 = cli_now_s();
                    for (;;) {
                        const lv_token tok = lv_sampler_sample(smp, lv_get_logits_ith(ctx, -1));
                        if (n_gen == 0) ttft = cli_now_s() - t0;
                        if (lv_token_is_eog(model, tok)) break;
                        gen[n_gen++] = tok;
                        if (n_gen == n_predict) break;
                        batch.n_tokens = 1;
                        batch.token[0] = tok;
                        batch.pos[0] = n_past++;
                        batch.seq_id[0] = 0;
                        batch.logits[0] = 1;
                        if ((st = lv_decode(ctx, &batch)) != LV_OK) {
                            cli_fail("decode", st);
                            goto end;
                        }
                    }
                    const double t_gen = cli_now_s() - t1;
                    int64_t rl = n_gen ? lv_detokenize(model, gen, (int32_t)n_gen, resp, resp_cap, false, false) : 0;
                    if (rl < 0) rl = 0;
                    resp[rl] = '\0';
                    utf8_clean(resp, rl); /* for the JSON string: bytes of no valid UTF-8 sequence (a cut character) as '?' */
                    const bool right = vn_answer_right(resp, en.answer);
                    char first[32];
                    vn_first_number(resp, first, sizeof(first));
                    lv_context_free(ctx);
                    ctx = NULL;
                    vresult *vr_ = &res[m];
                    vr_->cells[li][di].n++;
                    vr_->cells[li][di].right += right;
                    vr_->len_ttft[li] += ttft;
                    vr_->len_prefill[li] += vr.prefill_s;
                    vr_->len_n[li]++;
                    if (kv_bytes > vr_->len_kv[li]) vr_->len_kv[li] = kv_bytes;
                    if (!quiet) {
                        char shown[96], detail[160];
                        one_line(resp, shown, sizeof(shown));
                        snprintf(detail, sizeof(detail), "%s \"%s\" (expected %s) | %lld frames, %lld rows, first token after %.2f s, KV %.2f MiB",
                                 right ? "right" : "wrong", shown, en.answer, (long long)plan.n_frames, (long long)plan.n_rows, ttft,
                                 (double)kv_bytes / (1024.0 * 1024.0));
                        if (tty) cli_progress_done(&prog, detail);
                        else fprintf(stderr, "%s: %s\n", plabel, detail);
                    }
                    if (jf) {
                        json_t *o = json_object(), *jn = json_array();
                        for (int k = 0; k < en.n_needles; k++) {
                            char ts[32];
                            lv_video_ask_timestamp(nd[k].t, ts, sizeof(ts));
                            json_array_append_new(jn, json_pack("{s:s, s:f, s:s, s:I, s:I, s:[i,i,i,i]}", "text", nd[k].text, "t", nd[k].t, "mmss",
                                                                ts, "f0", (json_int_t)nd[k].f0, "f1", (json_int_t)nd[k].f1, "box", nd[k].st.x,
                                                                nd[k].st.y, nd[k].st.box_w, nd[k].st.box_h));
                        }
                        json_object_set_new(o, "task", json_string(task_arg));
                        json_object_set_new(o, "mode", json_string(md->name));
                        json_object_set_new(o, "model", json_string(model_base));
                        json_object_set_new(o, "length", json_real(lengths[li]));
                        json_object_set_new(o, "depth", json_real(depths[di]));
                        json_object_set_new(o, "sample", json_integer(s));
                        json_object_set_new(o, "seed", json_integer((json_int_t)vseed));
                        json_object_set_new(o, "fps", json_real(fps));
                        json_object_set_new(o, "video_frames", json_integer(nf));
                        json_object_set_new(o, "needles", jn);
                        json_object_set_new(o, "needle", json_string(en.needles[en.at_depth].text));
                        json_object_set_new(o, "needle_t", json_real(en.needles[en.at_depth].t));
                        json_object_set_new(o, "question", json_string(en.question));
                        json_object_set_new(o, "answer", json_string(en.answer));
                        json_object_set_new(o, "response", json_string(resp));
                        json_t *jt = json_array();
                        for (int64_t i = 0; i < n_gen; i++) json_array_append_new(jt, json_integer(gen[i]));
                        json_object_set_new(o, "response_tokens", jt);
                        json_object_set_new(o, "first_number", json_string(first));
                        json_object_set_new(o, "right", json_boolean(right));
                        json_object_set_new(o, "n_frames", json_integer(plan.n_frames));
                        json_object_set_new(o, "n_tokens", json_integer(plan.n_rows));
                        json_object_set_new(o, "kv_bytes", json_integer(kv_bytes));
                        json_object_set_new(o, "ttft_s", json_real(ttft));
                        json_object_set_new(o, "prefill_s", json_real(vr.prefill_s));
                        json_object_set_new(o, "encode_s", json_real(vr.encode_s));
                        json_object_set_new(o, "ask_s", json_real(vr.total_s));
                        json_object_set_new(o, "gen_tokens", json_integer(n_gen));
                        json_object_set_new(o, "gen_s", json_real(t_gen));
                        if (md->kind == VK_QUICKPREFILL) json_object_set_new(o, "n_pruned", json_integer(vr.n_pruned));
                        if (md->kind == VK_VIDEOSCAN) {
                            json_object_set_new(o, "n_carriers", json_integer(vr.n_carriers));
                            json_object_set_new(o, "n_carrier_rows", json_integer(vr.n_carrier_rows));
                        }
                        if (videos_dir) json_object_set_new(o, "video", json_string(vpath));
                        json_dumpf(o, jf, JSON_COMPACT | JSON_PRESERVE_ORDER);
                        fputc('\n', jf);
                        fflush(jf);
                        json_decref(o);
                    }
                }
                lv_video_free(video);
                video = NULL;
                if (!videos_dir) unlink(vpath), unlink(jpath);
                if (!quiet) {
                    char el[32], eta[32];
                    const double dt = cli_now_s() - t_start;
                    cli_fmt_duration(dt, el, sizeof(el));
                    cli_fmt_duration(dt / (double)(vi + 1) * (double)(n_videos - vi - 1), eta, sizeof(eta));
                    fprintf(stderr, "%lld/%lld videos done, %s elapsed, about %s left\n", (long long)vi + 1, (long long)n_videos, el, eta);
                }
            }

    /* tables */
    for (int m = 0; m < n_modes; m++) {
        const vresult *mr = &res[m];
        printf("%s%s | mode %s | %s | %lld sample%s per cell, %g fps, greedy, -n %lld\n", m ? "\n" : "", task_arg, modes[m].name, model_base,
               (long long)samples, samples == 1 ? "" : "s", fps, (long long)n_predict);
        printf("%8s", "length");
        for (int d = 0; d < n_dep; d++) printf(" %6.2f", depths[d]);
        printf(" | %5s | %8s | %9s | %8s\n", "mean", "TTFT s", "prefill s", "KV MiB");
        int tc = 0, tn = 0;
        for (int i = 0; i < n_len; i++) {
            char lab[32];
            fmt_len(lengths[i], lab, sizeof(lab));
            printf("%8s", lab);
            int rr = 0, rn = 0;
            for (int d = 0; d < n_dep; d++) {
                const vcell *c = &mr->cells[i][d];
                printf(" %6.2f", c->n ? (double)c->right / c->n : 0.0);
                rr += c->right, rn += c->n;
            }
            tc += rr, tn += rn;
            const int nn = mr->len_n[i] ? mr->len_n[i] : 1;
            printf(" | %5.2f | %8.2f | %9.2f | %8.2f\n", rn ? (double)rr / rn : 0.0, mr->len_ttft[i] / nn, mr->len_prefill[i] / nn,
                   (double)mr->len_kv[i] / (1024.0 * 1024.0));
        }
        printf("%8s", "all");
        for (int d = 0; d < n_dep; d++) {
            int dc = 0, dn = 0;
            for (int i = 0; i < n_len; i++) dc += mr->cells[i][d].right, dn += mr->cells[i][d].n;
            printf(" %6.2f", dn ? (double)dc / dn : 0.0);
        }
        printf(" | %5.2f |\n", tn ? (double)tc / tn : 0.0);
    }
    if (n_modes > 1) {
        int imax = 0;
        for (int i = 0; i < n_len; i++)
            if (lengths[i] > lengths[imax]) imax = i;
        char lab[32];
        fmt_len(lengths[imax], lab, sizeof(lab));
        printf("\n%-26s %8s %10s %14s %14s\n", "mode", "accuracy", "of dense", "TTFT s @ max", "KV MiB @ max");
        int dense_m = -1;
        for (int m = 0; m < n_modes; m++)
            if (modes[m].kind == VK_DENSE && modes[m].attn == VA_NONE) dense_m = m;
        double dense_acc = 0;
        if (dense_m >= 0) {
            int tc = 0, tn = 0;
            for (int i = 0; i < n_len; i++)
                for (int d = 0; d < n_dep; d++) tc += res[dense_m].cells[i][d].right, tn += res[dense_m].cells[i][d].n;
            dense_acc = tn ? (double)tc / tn : 0.0;
        }
        for (int m = 0; m < n_modes; m++) {
            int tc = 0, tn = 0;
            for (int i = 0; i < n_len; i++)
                for (int d = 0; d < n_dep; d++) tc += res[m].cells[i][d].right, tn += res[m].cells[i][d].n;
            const double acc = tn ? (double)tc / tn : 0.0;
            char rel[16] = "-";
            if (dense_m >= 0 && dense_acc > 0) snprintf(rel, sizeof(rel), "%.2f", acc / dense_acc);
            const int nn = res[m].len_n[imax] ? res[m].len_n[imax] : 1;
            printf("%-26s %8.2f %10s %14.2f %14.2f\n", modes[m].name, acc, rel, res[m].len_ttft[imax] / nn,
                   (double)res[m].len_kv[imax] / (1024.0 * 1024.0));
        }
    }
    fflush(stdout);
    if (plot_path) {
        char title[512];
        snprintf(title, sizeof(title), "V-NIAH (%s): %s, %lld sample%s per cell, %g fps", task_arg, model_base, (long long)samples,
                 samples == 1 ? "" : "s", fps);
        if (write_plot(plot_path, title, res, modes, n_modes, lengths, n_len, depths, n_dep) != 0) goto end;
        if (!quiet) fprintf(stderr, "wrote %s\n", plot_path);
    }
    rc = 0;
end:
    if (jf && fclose(jf) != 0 && rc == 0) {
        cli_error("writing '%s' failed", out_path);
        rc = 1;
    }
    cli_out_abort(&vo);
    cli_out_abort(&jo);
    lv_video_free(video);
    if (tmpdir) {
        if (vpath[0]) unlink(vpath);
        if (jpath[0]) unlink(jpath);
        rmdir(tmpdir);
        free(tmpdir);
    }
    vn_hay_free(hay);
    lv_context_free(ctx);
    lv_batch_free(&batch);
    lv_sampler_free(smp);
    lv_head_pattern_free(pattern);
    lv_threadpool_free(tp);
    lv_mmproj_free(mm);
    lv_model_free(model);
    free(resp);
    free(res);
    return rc;
}
