#ifndef GH_COMMON_VERSION_H
#define GH_COMMON_VERSION_H
#define GH_VERSION "0.1.0"
#endif
