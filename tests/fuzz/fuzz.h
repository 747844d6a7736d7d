/*
 * fuzz.h — what every fuzz target shares. A target is one file tests/fuzz/fuzz_<name>.c that
 * defines LLVMFuzzerTestOneInput (and may define LLVMFuzzerInitialize). Built with
 * SANITIZER=fuzzer it links libFuzzer's main; in every other build it links replay.c, which runs
 * the seed corpus and the regression inputs once each, so `make test` replays them everywhere.
 *
 * A target checks properties, not only "does not crash": FUZZ_CHECK aborts with the failed
 * condition, which libFuzzer reports as a crash and saves as an input to reproduce.
 */
#ifndef GH_TESTS_FUZZ_FUZZ_H
#define GH_TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
