#ifndef LV_TEST_SHA256_H
#define LV_TEST_SHA256_H
#include <stdint.h>
/* SHA-256 of a file as 64 lowercase hex digits. Returns 0, or -1 if the file cannot be read. */
int lv_sha256_file(const char *path, char hex[65]);
#endif
