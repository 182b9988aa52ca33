/*
 * rgpu_client_conf_man: prints rgpu-client.conf(5) from the client rows
 * (common/src/client_conf.c) that the ICD, rgpu and the Slurm plugin read.
 * A program of its own, so that a client-only build (no rgpu command) has
 * the page too; man/CMakeLists.txt runs it at build time.
 */
#include <stdio.h>
#include <string.h>

#include "rgpu/client_conf.h"

int main(int argc, char **argv)
{
    rgpu_opt_table_t table;

    if (argc != 2 || strcmp(argv[1], "--man-conf") != 0) {
        fprintf(stderr, "usage: %s --man-conf\n", argv[0]);
        return 2;
    }
    rgpu_client_conf_table(&table, "rgpu");
    rgpu_opt_man_conf(&table, stdout);
    return 0;
}
