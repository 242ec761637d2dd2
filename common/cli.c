#include "common/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

int mh_cli_parse(mh_cli_t *cli, int argc, char **argv, void (*usage)(FILE *out))
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"check", no_argument, NULL, 'k'},        {"dump", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    int opt;

    memset(cli, 0, sizeof(*cli));
    cli->overrides = calloc((size_t)argc, sizeof(*cli->overrides));
    if (cli->overrides == NULL)
        return 1;
    while ((opt = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            cli->config_path = optarg;
            break;
        case 's':
            cli->overrides[cli->noverrides++] = optarg;
            break;
        case 'k':
            cli->check = true;
            break;
        case 'd':
            cli->dump = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (cli->config_path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    return MH_CLI_RUN;
}

int mh_cli_load(const mh_cli_t *cli, const mh_cfg_section_t *sections, size_t nsections, char *err,
                size_t errlen)
{
    if (mh_config_load(cli->config_path, sections, nsections, err, errlen) != 0)
        return -1;
    for (int i = 0; i < cli->noverrides; i++)
        if (mh_config_set(sections, nsections, cli->overrides[i], err, errlen) != 0)
            return -1;
    return 0;
}

void mh_cli_dispose(mh_cli_t *cli)
{
    free(cli->overrides);
    cli->overrides = NULL;
    cli->noverrides = 0;
}
