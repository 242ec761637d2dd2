#include "common/argv.h"

#include "common/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const mh_opt_def_t *find_opt(const mh_opt_def_t *defs, size_t ndefs, const char *arg,
                                    size_t namelen)
{
    for (size_t i = 0; i < ndefs; i++)
        if (strlen(defs[i].name) == namelen && strncmp(defs[i].name, arg, namelen) == 0)
            return &defs[i];
    return NULL;
}

int mh_argv_split(int argc, char **argv, const mh_opt_def_t *defs, size_t ndefs, mh_argv_t *out,
                  char *err, size_t errlen)
{
    size_t n = argc > 1 ? (size_t)argc - 1 : 0;
    bool options_done = false;

    memset(out, 0, sizeof(*out));
    err[0] = '\0';
    /* Help wins over everything else, so "tool command --help" helps. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            out->help = true;
            return 0;
        }
    }
    /* Both arrays are bounded by argc; a command line is small. */
    out->pos = mh_calloc(n + 1, sizeof(*out->pos));
    out->seen = mh_calloc(n + 1, sizeof(*out->seen));
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            out->pos[out->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t namelen = eq ? (size_t)(eq - arg) : strlen(arg);
        const mh_opt_def_t *def = find_opt(defs, ndefs, arg, namelen);
        if (def == NULL) {
            snprintf(err, errlen, "unknown option '%.*s'", (int)(namelen > 60 ? 60 : namelen), arg);
            return -1;
        }
        const char *value = NULL;
        if (def->has_value) {
            if (eq != NULL) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                snprintf(err, errlen, "option %s needs a value", def->name);
                return -1;
            }
        } else if (eq != NULL) {
            snprintf(err, errlen, "option %s takes no value", def->name);
            return -1;
        }
        out->seen[out->nseen].def = def;
        out->seen[out->nseen].value = value;
        out->nseen++;
    }
    return 0;
}

void mh_argv_dispose(mh_argv_t *a)
{
    free(a->pos);
    free(a->seen);
    a->pos = NULL;
    a->seen = NULL;
    a->npos = a->nseen = 0;
}
