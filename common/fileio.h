#ifndef MH_FILEIO_H
#define MH_FILEIO_H

#include <stddef.h>

/*
 * Reads a whole file of at most max bytes into a NUL-terminated string owned by the caller.
 * Returns NULL after logging if it cannot be read, is larger than max or holds a NUL byte.
 */
char *mh_read_text_file(const char *path, size_t max);

#endif
