#ifndef MH_CLI_H
#define MH_CLI_H

/*
 * The daemons' common command line:
 *   -c, --config FILE  -s, --set section.key=value (repeatable)  --check  --dump  -h, --help
 * and loading the configuration it names.
 */

#include "common/config.h"

#include <stdbool.h>
#include <stdio.h>

typedef struct mh_cli {
    const char *config_path; /* borrowed from argv */
    const char **overrides;  /* owned array of strings borrowed from argv */
    int noverrides;
    bool check; /* --check: validate and exit */
    bool dump;  /* --dump: print the effective configuration */
} mh_cli_t;

enum { MH_CLI_RUN = -1 }; /* mh_cli_parse: go on; otherwise the exit status */

/*
 * Parses argv into cli. Returns MH_CLI_RUN, or an exit status: 0 after --help (usage printed
 * on stdout), 2 after a usage error (usage printed on stderr). Dispose cli either way.
 */
int mh_cli_parse(mh_cli_t *cli, int argc, char **argv, void (*usage)(FILE *out));

/* Loads cli's configuration file into sections, then applies the -s overrides in order.
 * Returns 0, or -1 with err ("path:line: what" or "-s ...: what"). */
int mh_cli_load(const mh_cli_t *cli, const mh_cfg_section_t *sections, size_t nsections, char *err,
                size_t errlen);

void mh_cli_dispose(mh_cli_t *cli);

#endif
