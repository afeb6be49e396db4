/*
 * longview.c: the command line tool's entry point: dispatches `longview <command> [options]`.
 * Each command's options and --help live in its own tools/cmd_*.c file.
 */
#include "common/cli.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

static const cli_command g_commands[] = {
    {"run", cmd_run, "generate a completion for a prompt"},
    {"serve", cmd_serve, "an OpenAI-compatible HTTP server with continuous batching and packed prefill"},
    {"logits", cmd_logits, "write the logits of a token sequence as float32"},
    {"bench", cmd_bench, "measure prompt processing and generation speed (llama-bench compatible output)"},
    {"info", cmd_info, "describe a GGUF model: architecture, shapes, tensor types, support"},
    {"gen-model", cmd_gen_model, "write a GGUF model with random weights (for tests and benchmarks)"},
    {"tokenize", cmd_tokenize, "print the token ids (and pieces) of a text"},
    {"eval", cmd_eval, "needle-in-a-haystack / passkey retrieval accuracy and speed per attention mode; `eval vniah`: video needles per video mode"},
    {"train-video", cmd_train_video, "train a small video model (text model + idefics3 tower) end to end on V-NIAH questions"},
    {"train", cmd_train, "train a llama-architecture model on synthetic passkey + haystack LM data (AdamW, checkpoints)"},
    {"identify", cmd_identify, "DuoAttention retrieval-head identification: optimize per-(layer, KV head) gates, write the TSV"},
    {"heads", cmd_heads, "show a DuoAttention head pattern: threshold, retrieval/streaming map, SVG heat map"},
    {"video-info", cmd_video_info, "describe a video: streams, duration, keyframes, GOP structure"},
    {"video-frames", cmd_video_frames, "sampled video frames (fps / count / times), resized, as RGB24 or PNG"},
    {"video-vniah", cmd_video_vniah, "write a V-NIAH evaluation video: looped haystack footage with text needles, H.264"},
    {"image-embed", cmd_image_embed, "an image through an mmproj vision tower + projector: its text-model embeddings as float32"},
    {"gen-mmproj", cmd_gen_mmproj, "write an mmproj (vision tower) GGUF with random weights of a published shape"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: longview <command> [options]   (longview <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(g_commands) / sizeof(g_commands[0]); i++)
        fprintf(f, "  %-14s %s\n", g_commands[i].name, g_commands[i].summary);
    fprintf(f, "  %-14s %s\n", "version", "print the version");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("longview %s\n", LV_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof(g_commands) / sizeof(g_commands[0]); i++)
        if (strcmp(argv[1], g_commands[i].name) == 0) return g_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "longview: error: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
