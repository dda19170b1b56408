/* `dalign train reward` as a library call (src/cli/train.c, its test
 * tests/test_train_reward.c): create the preference model, initialise it,
 * train it on rater pairs (da_reward_net_train) and save it where the `pref`
 * reward loads it: DIR/reward_net.json + DIR/reward_net.safetensors. */
#ifndef DA_TRAIN_REWARD_RUN_H
#define DA_TRAIN_REWARD_RUN_H

#include "dalign/train.h"

#define DA_REWARD_NET_NAME "reward_net"   /* the basename rewards.c loads for `pref` */

/* cfg: the network (NULL: da_reward_net_config_default()); tc: training,
 * its seed also seeds the init, its run options (checkpoint, resume,
 * metrics, signals) go to the shared trainer; out_dir is created if
 * missing. The weights are written only when all tc->steps are done (both
 * files atomically): a run stopped early (rep->stop_signal, tc->stop_at)
 * leaves only its checkpoint. rep may be NULL. DA_ERR_INVALID for a bad
 * config or out_dir. */
da_status da_reward_net_train_to_dir(const da_reward_net_config *cfg, const da_reward_train_config *tc,
                                     const char *out_dir, da_reward_train_report *rep);

#endif
