#ifndef MH_FILEIO_H
#define MH_FILEIO_H

#include <stddef.h>

/*
 * Reads a whole regular file of at most max bytes into a buffer owned by the caller, with a
 * NUL after the *len bytes read. what names the file in messages ("manifest"), or is NULL.
 * Returns NULL after logging if it cannot be read, is not a regular file or is larger than max.
 */
char *mh_read_file(const char *path, size_t max, const char *what, size_t *len);
/*
 * mh_read_file for text: a NUL-terminated string owned by the caller.
 * Returns NULL after logging if it cannot be read, is larger than max or holds a NUL byte.
 */
char *mh_read_text_file(const char *path, size_t max);

#endif
