/* The library's version at run time: a program compiled against one
 * version's headers may run with another build of libdalign.so.0. */
#include "dalign/core.h"

const char *da_version(void)
{
    return DA_VERSION;
}

int da_version_number(void)
{
    return DA_VERSION_NUMBER;
}
