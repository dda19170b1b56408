/* dalign inspect FILE: one line per tensor (placeholder until safetensors lands) */
#include <stdio.h>

#include "cli/cli.h"
#include "dalign.h"

int cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "dalign inspect: not implemented yet\n");
    return 1;
}
