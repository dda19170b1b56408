/* Subcommands of the `dalign` binary: each lives in its own file and gets
 * argv starting at its own name. Exit codes: 0 ok, 1 failure, 2 usage error. */
#ifndef DALIGN_CLI_H
#define DALIGN_CLI_H

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} cli_command;

int cmd_inspect(int argc, char **argv);
int cmd_toy(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_reward(int argc, char **argv);
int cmd_eval_base(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_pairs(int argc, char **argv);
int cmd_eval(int argc, char **argv);

/* Strict integer parse (whole string, no overflow); 0 on success. */
int cli_parse_int(const char *s, int *out);

#endif
