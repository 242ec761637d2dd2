#ifndef MH_ARGV_H
#define MH_ARGV_H

/*
 * The command lines of the operators' tools (meterhub-admin, meterhub-release):
 * `tool [options] command [subcommand] [arguments] [options]`, options anywhere, as
 * `--name value` or `--name=value`, "--" ending them, -h/--help anywhere before "--". This
 * file only splits argv: which command takes which option, and what a value means, is the
 * tool's (it applies the options once it knows the command).
 */

#include <stdbool.h>
#include <stddef.h>

typedef struct mh_opt_def {
    const char *name; /* "--pg" */
    int id;           /* the tool's own enum */
    bool has_value;
    unsigned cmds; /* the tool's: which commands take it (a bit per command) */
} mh_opt_def_t;

/* An option as found on the command line. */
typedef struct mh_opt_seen {
    const mh_opt_def_t *def; /* borrowed from the tool's table */
    const char *value;       /* borrowed from argv; NULL for an option without a value */
} mh_opt_seen_t;

typedef struct mh_argv {
    bool help;        /* -h or --help before "--": the rest is not parsed */
    const char **pos; /* owned array of the positional arguments (borrowed from argv) */
    size_t npos;
    mh_opt_seen_t *seen; /* owned array, in command line order */
    size_t nseen;
} mh_argv_t;

/*
 * Splits argv[1..argc-1] against defs. Returns 0, or -1 with a one-line message in err (an
 * unknown option, a value missing or given to an option that takes none). out must be
 * disposed either way.
 */
int mh_argv_split(int argc, char **argv, const mh_opt_def_t *defs, size_t ndefs, mh_argv_t *out,
                  char *err, size_t errlen);
void mh_argv_dispose(mh_argv_t *a);

#endif
