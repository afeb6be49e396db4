// lv_oracle_image.cpp: llama.cpp v0.4.0's own image code (tools/mtmd/mtmd-image.cpp, compiled in
// whole from the oracle's source tree, never copied here) run on the inputs of
// tests/golden/vision, so that scripts/check-mtmd-image.py can compare mtmd with the goldens that
// longview's tests use (Pillow's resize, Pillow's whole preprocessings, the Python geometry).
//
//   lv_oracle_image resize SRC.ppm W H bilinear|bicubic|lanczos OUT.ppm
//       img_tool::resize(..., PAD_NONE), i.e. mtmd's resize_pillow
//   lv_oracle_image prep TYPE S P MERGE E MIN_TOKENS MAX_TOKENS (SRC.ppm | WxH) [OUT.ppm]
//       the preprocessor mtmd.cpp picks for TYPE, with the hparams clip.cpp sets for it (mean 0,
//       std 1, so the f32 output is u8 / 255 and is written back as u8); WxH runs it on a
//       placeholder image (sizes only). Prints "ok OUT_W OUT_H GRID_Y GRID_X N_IMAGES" or "err".
// Built by scripts/check-mtmd-image.py with g++ -I<llama.cpp>/tools/mtmd -I<llama.cpp>/ggml/include.
#include "mtmd-image.cpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

// the two symbols mtmd-image.cpp needs from clip.cpp / ggml, and the hparams lookup
struct clip_logger_state g_logger_state = {clip_log_callback_default, nullptr};
extern "C" void ggml_abort(const char * file, int line, const char * fmt, ...) {
    (void) fmt;
    fprintf(stderr, "ggml_abort at %s:%d\n", file, line);
    throw std::runtime_error("abort");
}
const clip_hparams * clip_get_hparams(const clip_ctx * ctx) { return (const clip_hparams *) ctx; }

static bool read_ppm(const char * path, clip_image_u8 & img) {
    FILE * f = fopen(path, "rb");
    if (!f) return false;
    int w, h, m;
    bool ok = fscanf(f, "P6 %d %d %d", &w, &h, &m) == 3 && fgetc(f) == '\n';
    std::vector<uint8_t> b(ok ? (size_t) w * h * 3 : 0);
    ok = ok && fread(b.data(), 1, b.size(), f) == b.size();
    fclose(f);
    if (ok) { img.set_size({w, h}, false); img.cpy_buf(b); }
    return ok;
}

static void write_ppm(const char * path, int w, int h, const std::vector<uint8_t> & b) {
    FILE * f = fopen(path, "wb");
    fprintf(f, "P6\n%d %d\n255\n", w, h);
    fwrite(b.data(), 1, b.size(), f);
    fclose(f);
}

// img_tool is local to mtmd-image.cpp; its resize is public
static int cmd_resize(char ** a) {
    clip_image_u8 src, dst;
    if (!read_ppm(a[0], src)) return 3;
    resize_algo algo = !strcmp(a[3], "bilinear") ? RESIZE_ALGO_BILINEAR : !strcmp(a[3], "bicubic") ? RESIZE_ALGO_BICUBIC : RESIZE_ALGO_LANCZOS;
    img_tool::resize(src, dst, {atoi(a[1]), atoi(a[2])}, algo, PAD_NONE);
    write_ppm(a[4], dst.get_size().width, dst.get_size().height, dst.get_ro_buf());
    return 0;
}

static int cmd_prep(int argc, char ** a) {
    const std::string type = a[0];
    clip_hparams hp;
    hp.image_size = atoi(a[1]);
    hp.patch_size = atoi(a[2]);
    const int merge = atoi(a[3]), E = atoi(a[4]), mint = atoi(a[5]), maxt = atoi(a[6]);
    if (mint > 0) hp.custom_image_min_tokens = mint;   // clip.cpp: from ctx_params.image_min_tokens
    if (maxt > 0) hp.custom_image_max_tokens = maxt;
    for (int i = 0; i < 3; i++) { hp.image_mean[i] = 0.0f; hp.image_std[i] = 1.0f; }
    const clip_ctx * ctx = (const clip_ctx *) &hp;
    std::unique_ptr<mtmd_image_preprocessor> pp;
    if (type == "idefics3") {                       // clip.cpp PROJECTOR_TYPE_IDEFICS3
        hp.image_resize_algo = RESIZE_ALGO_LANCZOS;
        hp.n_merge = merge > 0 ? merge : 1;         // clip.vision.projector.scale_factor
        hp.image_longest_edge = E;                  // clip.vision.preproc_image_size
        hp.set_limit_image_tokens();
        pp.reset(new mtmd_image_preprocessor_idefics3(ctx));
    } else if (type == "qwen2vl" || type == "qwen25vl") {  // PROJECTOR_TYPE_QWEN2VL / QWEN25VL
        hp.n_merge = merge > 0 ? merge : 2;
        hp.image_resize_algo = RESIZE_ALGO_BICUBIC;
        hp.set_limit_image_tokens(8, 4096);
        pp.reset(new mtmd_image_preprocessor_dyn_size(ctx));
    } else {                                        // PROJECTOR_TYPE_MLP without pinpoints
        hp.image_pad_color = {122, 116, 104};
        hp.image_pad_ov = PAD_NONE;
        hp.image_pad_rf = PAD_CEIL;
        hp.image_pad_color_rf = {122, 116, 104};
        pp.reset(new mtmd_image_preprocessor_fixed_size(ctx));
    }
    if (hp.image_max_pixels < hp.image_min_pixels) { printf("err\n"); return 0; }  // clip.cpp's check
    clip_image_u8 img;
    int w, h;
    if (sscanf(a[7], "%dx%d", &w, &h) == 2) img.set_size({w, h}, true);
    else if (!read_ppm(a[7], img)) return 3;
    mtmd_image_preproc_out out;
    try {
        out = pp->preprocess(img);
    } catch (...) {
        printf("err\n");
        return 0;
    }
    std::vector<clip_image_f32 *> all;
    for (auto & e : out.entries) all.push_back(&e);
    if (out.has_overview()) all.push_back(&out.overview);  // mtmd.cpp puts idefics3's overview last
    if (all.empty()) { printf("err\n"); return 0; }
    printf("ok %d %d %d %d %zu\n", all[0]->nx(), all[0]->ny(), out.grid_y, out.grid_x, all.size());
    if (argc > 8) {
        const int ow = all[0]->nx(), oh = all[0]->ny();
        std::vector<uint8_t> b;
        for (auto * e : all) {
            if (e->nx() != ow || e->ny() != oh) return 4;
            for (float v : e->get_ro_buf()) b.push_back((uint8_t) lrintf(v * 255.0f));
        }
        write_ppm(a[8], ow, oh * (int) all.size(), b);
    }
    return 0;
}

int main(int argc, char ** argv) {
    if (argc == 7 && !strcmp(argv[1], "resize")) return cmd_resize(argv + 2);
    if (argc >= 10 && !strcmp(argv[1], "prep")) return cmd_prep(argc - 2, argv + 2);
    fprintf(stderr, "usage: see the top of oracle/lv_oracle_image.cpp\n");
    return 2;
}
