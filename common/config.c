#include "config.h"
#include "alloc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_MAX_LINE 4096

static void *field(const mh_cfg_section_t *s, const mh_cfg_key_t *k)
{
    return (char *)s->dst + k->offset;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int set_value(const mh_cfg_section_t *s, const mh_cfg_key_t *k, const char *v, char *err,
                     size_t errlen)
{
    switch (k->type) {
    case MH_CFG_INT: {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0') {
            snprintf(err, errlen, "%s.%s: '%s' is not an integer", s->name, k->name, v);
            return -1;
        }
        if (n < k->min || n > k->max) {
            snprintf(err, errlen, "%s.%s: %ld is out of range [%ld, %ld]", s->name, k->name, n,
                     k->min, k->max);
            return -1;
        }
        *(long *)field(s, k) = n;
        return 0;
    }
    case MH_CFG_BOOL:
        if (parse_bool(v, (bool *)field(s, k)) != 0) {
            snprintf(err, errlen, "%s.%s: '%s' is not a boolean", s->name, k->name, v);
            return -1;
        }
        return 0;
    case MH_CFG_STR:
    case MH_CFG_SECRET: {
        char **p = field(s, k);
        free(*p);
        *p = mh_strdup(v);
        return 0;
    }
    }
    snprintf(err, errlen, "%s.%s: bad key type", s->name, k->name);
    return -1;
}

int mh_config_defaults(const mh_cfg_section_t *sections, size_t nsections, char *err, size_t errlen)
{
    for (size_t i = 0; i < nsections; i++) {
        const mh_cfg_section_t *s = &sections[i];
        for (size_t j = 0; j < s->nkeys; j++) {
            const mh_cfg_key_t *k = &s->keys[j];
            if (k->def == NULL) {
                if (k->type == MH_CFG_STR || k->type == MH_CFG_SECRET) {
                    char **p = field(s, k);
                    free(*p);
                    *p = NULL;
                }
                continue;
            }
            if (set_value(s, k, k->def, err, errlen) != 0)
                return -1;
        }
    }
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* "key = value   # comment": a '#' or ';' after whitespace starts a comment, unless the value
 * is double-quoted. */
static void strip_inline_comment(char *v)
{
    char *p = v;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '"')
        return;
    for (; *p; p++) {
        if ((*p == '#' || *p == ';') && p > v && isspace((unsigned char)p[-1])) {
            *p = '\0';
            return;
        }
    }
}

static const mh_cfg_section_t *find_section(const mh_cfg_section_t *sections, size_t n,
                                            const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(sections[i].name) == len && strncmp(sections[i].name, name, len) == 0)
            return &sections[i];
    return NULL;
}

static const mh_cfg_key_t *find_key(const mh_cfg_section_t *s, const char *name)
{
    for (size_t j = 0; j < s->nkeys; j++)
        if (strcmp(s->keys[j].name, name) == 0)
            return &s->keys[j];
    return NULL;
}

static int apply_pair(const mh_cfg_section_t *s, char *key, char *val, char *err, size_t errlen)
{
    const mh_cfg_key_t *k = find_key(s, key);
    if (k == NULL) {
        snprintf(err, errlen, "unknown key '%s' in section [%s]", key, s->name);
        return -1;
    }
    size_t vl = strlen(val);
    /* Optional double quotes allow leading/trailing spaces and '#' in values. */
    if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
        val[vl - 1] = '\0';
        val++;
    }
    return set_value(s, k, val, err, errlen);
}

int mh_config_load(const char *path, const mh_cfg_section_t *sections, size_t nsections, char *err,
                   size_t errlen)
{
    FILE *f = NULL;
    char line[CFG_MAX_LINE];
    char msg[512];
    const mh_cfg_section_t *cur = NULL;
    int lineno = 0;

    if (mh_config_defaults(sections, nsections, err, errlen) != 0)
        goto fail;
    if (path == NULL)
        return 0;
    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", path, lineno);
            goto fail;
        }
        char *p = trim(line);
        if (*p == '\0' || *p == '#' || *p == ';')
            continue;
        if (*p == '[') {
            char *end = strchr(p, ']');
            if (end == NULL || end[1] != '\0') {
                snprintf(err, errlen, "%s:%d: malformed section header", path, lineno);
                goto fail;
            }
            cur = find_section(sections, nsections, p + 1, (size_t)(end - p - 1));
            if (cur == NULL) {
                snprintf(err, errlen, "%s:%d: unknown section %.*s", path, lineno,
                         (int)(end - p + 1), p);
                goto fail;
            }
            continue;
        }
        char *eq = strchr(p, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
            goto fail;
        }
        if (cur == NULL) {
            snprintf(err, errlen, "%s:%d: key outside of any [section]", path, lineno);
            goto fail;
        }
        *eq = '\0';
        strip_inline_comment(eq + 1);
        if (apply_pair(cur, trim(p), trim(eq + 1), msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
            goto fail;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    return 0;
fail:
    if (f != NULL)
        fclose(f);
    return -1;
}

int mh_config_set(const mh_cfg_section_t *sections, size_t nsections, const char *assignment,
                  char *err, size_t errlen)
{
    char buf[CFG_MAX_LINE];
    if (strlen(assignment) >= sizeof(buf)) {
        snprintf(err, errlen, "override too long");
        return -1;
    }
    strcpy(buf, assignment);
    char *dot = strchr(buf, '.');
    char *eq = strchr(buf, '=');
    if (dot == NULL || eq == NULL || dot > eq) {
        snprintf(err, errlen, "'%s': expected section.key=value", assignment);
        return -1;
    }
    *dot = '\0';
    *eq = '\0';
    const mh_cfg_section_t *s = find_section(sections, nsections, buf, strlen(buf));
    if (s == NULL) {
        snprintf(err, errlen, "unknown section [%s]", buf);
        return -1;
    }
    return apply_pair(s, trim(dot + 1), trim(eq + 1), err, errlen);
}

void mh_config_dump(FILE *out, const mh_cfg_section_t *sections, size_t nsections)
{
    for (size_t i = 0; i < nsections; i++) {
        const mh_cfg_section_t *s = &sections[i];
        fprintf(out, "[%s]\n", s->name);
        for (size_t j = 0; j < s->nkeys; j++) {
            const mh_cfg_key_t *k = &s->keys[j];
            const void *v = (const char *)s->dst + k->offset;
            switch (k->type) {
            case MH_CFG_INT:
                fprintf(out, "%s = %ld\n", k->name, *(const long *)v);
                break;
            case MH_CFG_BOOL:
                fprintf(out, "%s = %s\n", k->name, *(const bool *)v ? "true" : "false");
                break;
            case MH_CFG_STR: {
                const char *str = *(char *const *)v;
                fprintf(out, "%s = %s\n", k->name, str ? str : "");
                break;
            }
            case MH_CFG_SECRET:
                fprintf(out, "%s = %s\n", k->name, *(char *const *)v ? "<redacted>" : "");
                break;
            }
        }
        fprintf(out, "\n");
    }
}

void mh_config_dispose(const mh_cfg_section_t *sections, size_t nsections)
{
    for (size_t i = 0; i < nsections; i++) {
        const mh_cfg_section_t *s = &sections[i];
        for (size_t j = 0; j < s->nkeys; j++) {
            const mh_cfg_key_t *k = &s->keys[j];
            if (k->type == MH_CFG_STR || k->type == MH_CFG_SECRET) {
                char **p = field(s, k);
                free(*p);
                *p = NULL;
            }
        }
    }
}

char *mh_config_read_secret_file(const char *path, char *err, size_t errlen)
{
    char buf[1024];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
        snprintf(err, errlen, "%s: secret file must not be accessible by group or others", path);
        close(fd);
        return NULL;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0') {
        snprintf(err, errlen, "%s: empty secret file", path);
        return NULL;
    }
    char *s = mh_strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return s;
}
