#ifndef MH_LOG_H
#define MH_LOG_H

#include <stddef.h>

/*
 * Logging to stderr, one line per event: "<UTC time> <program>[<pid>] <LEVEL> <message>".
 * Thread-safe (each line is written with a single write). The level is checked before any
 * formatting. Never pass keys, tokens or passwords.
 */

typedef enum mh_log_level {
    MH_LOG_DEBUG = 0,
    MH_LOG_INFO,
    MH_LOG_WARN,
    MH_LOG_ERROR,
} mh_log_level_t;

/* Sets the program name shown in each line (borrowed; must outlive logging). */
void mh_log_init(const char *program);
void mh_log_set_level(mh_log_level_t level);
/* Parses "debug", "info", "warn" or "error". Returns 0, or -1 if unknown. */
int mh_log_parse_level(const char *name, mh_log_level_t *out);
int mh_log_enabled(mh_log_level_t level);

void mh_log(mh_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs `what` followed by every entry of this thread's OpenSSL error queue, and clears it. */
/* Formats a one-line error message into a caller's buffer err (nothing when err is NULL or
 * errlen 0): the err/errlen convention of functions that return -1 and let the caller say it. */
void mh_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void mh_log_openssl(mh_log_level_t level, const char *what);

/* Routes libevent's internal warnings and errors through mh_log. */
void mh_log_capture_libevent(void);

#endif
