/* err.c — messages and names for the GH_E* table in err.h. */
#include "common/err.h"

const char *gh_strerror(int code)
{
    switch (code) {
    case 0:
        return "ok";
#define GH__ERR_MSG(name, num, msg)                                                                \
    case -(num):                                                                                   \
        return msg;
        GH_ERRNO_MAP(GH__ERR_MSG)
#undef GH__ERR_MSG
    }
    return "unknown error";
}

const char *gh_errname(int code)
{
    switch (code) {
    case 0:
        return "GH_OK";
#define GH__ERR_NAME(name, num, msg)                                                               \
    case -(num):                                                                                   \
        return "GH_E" #name;
        GH_ERRNO_MAP(GH__ERR_NAME)
#undef GH__ERR_NAME
    }
    return "GH_E?";
}
