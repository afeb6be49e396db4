/*
 * commands.h: the `longview` subcommands. Each lives in tools/cmd_<name>.c and is listed in the
 * table in tools/longview.c.
 */
#ifndef LV_COMMANDS_H
#define LV_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_gen_model(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_heads(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_eval_vniah(int argc, char **argv); /* `eval vniah`, dispatched by cmd_eval */
int cmd_train(int argc, char **argv);
int cmd_train_video(int argc, char **argv);
int cmd_identify(int argc, char **argv);
int cmd_video_info(int argc, char **argv);
int cmd_video_frames(int argc, char **argv);
int cmd_video_vniah(int argc, char **argv);
int cmd_gen_mmproj(int argc, char **argv);
int cmd_image_embed(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
