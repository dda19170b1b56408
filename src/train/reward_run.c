/* Train the preference model and save it for the `pref` reward (reward_run.h). */
#include "train/reward_run.h"

#include <stdio.h>

#include "train/pretrain.h"

#define PATH_CAP 4096

static da_status out_path(char *buf, const char *dir, const char *ext)
{
    int n = snprintf(buf, PATH_CAP, "%s/%s%s", dir, DA_REWARD_NET_NAME, ext);
    if (n < 0 || n >= PATH_CAP) return da_fail(DA_ERR_INVALID, "output directory path too long: %s", dir);
    return DA_OK;
}

da_status da_reward_net_train_to_dir(const da_reward_net_config *cfg, const da_reward_train_config *tc,
                                     const char *out_dir, da_reward_train_report *rep)
{
    if (!tc || !out_dir || !*out_dir) return da_fail(DA_ERR_INVALID, "da_reward_net_train_to_dir: bad argument");
    da_reward_net_config c = cfg ? *cfg : da_reward_net_config_default();
    char json[PATH_CAP], st[PATH_CAP];
    da_status s = out_path(json, out_dir, ".json");
    if (!s) s = out_path(st, out_dir, ".safetensors");
    if (!s) s = da_reward_net_config_check(&c);
    if (s) return s;
    /* create the directory first: a long run must not fail at its very end */
    s = dp_ensure_dir(out_dir);
    if (s) return s;
    da_reward_net *m = da_reward_net_create(&c, 1);
    if (!m) return DA_ERR_NOMEM;   /* the config passed its check: only memory is left (message set) */
    /* a resumed run overwrites these with the checkpoint's weights */
    da_rng rng;
    da_rng_seed(&rng, tc->seed);
    da_reward_net_init(m, &rng);
    da_reward_train_report r;
    s = da_reward_net_train(m, tc, &r);
    /* stopped early (a signal, stop_at): its checkpoint is the output */
    int finished = !s && !r.stop_signal && r.steps_done == tc->steps;
    if (finished) s = da_reward_net_config_save(&c, json);
    if (finished && !s) s = da_reward_net_save(m, st);
    if (!s && rep) *rep = r;
    da_reward_net_free(m);
    return s;
}
