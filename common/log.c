#include "log.h"

#include <event2/event.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *log_program = "meterhub";
static atomic_int log_level = MH_LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void mh_log_init(const char *program)
{
    log_program = program;
}

void mh_log_set_level(mh_log_level_t level)
{
    atomic_store(&log_level, (int)level);
}

int mh_log_parse_level(const char *name, mh_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (mh_log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = MH_LOG_WARN;
        return 0;
    }
    return -1;
}

int mh_log_enabled(mh_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

static void log_write(mh_log_level_t level, const char *msg)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s %s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, log_program, (int)getpid(), level_names[level], msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    /* One write per line keeps lines from different threads whole. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void mh_log(mh_log_level_t level, const char *fmt, ...)
{
    if (!mh_log_enabled(level))
        return;
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_write(level, msg);
}

void mh_log_openssl(mh_log_level_t level, const char *what)
{
    unsigned long e;
    char buf[256];
    int any = 0;
    while ((e = ERR_get_error()) != 0) {
        if (mh_log_enabled(level)) {
            ERR_error_string_n(e, buf, sizeof(buf));
            mh_log(level, "%s: %s", what, buf);
        }
        any = 1;
    }
    if (!any)
        mh_log(level, "%s", what);
}

static void libevent_log_cb(int severity, const char *msg)
{
    mh_log_level_t level = MH_LOG_DEBUG;
    if (severity == EVENT_LOG_WARN)
        level = MH_LOG_WARN;
    else if (severity == EVENT_LOG_ERR)
        level = MH_LOG_ERROR;
    else if (severity == EVENT_LOG_MSG)
        level = MH_LOG_INFO;
    mh_log(level, "libevent: %s", msg);
}

void mh_log_capture_libevent(void)
{
    event_set_log_callback(libevent_log_cb);
}

void mh_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
