# Gatehouse build. `make` builds build/gatehouse; `make test` installs what is missing,
# builds and runs every test and check (the leak gate: docs/CONTRIBUTING.md); `make run` serves
# on 127.0.0.1:8080 with SQLite in ./var.
#
# Build variants, each in its own directory:
#   SANITIZER=address  build-address/  ASan + UBSan + LSan (gcc or clang)
#   SANITIZER=thread   build-thread/   ThreadSanitizer (the heap profiler's tables under threads)
#   SANITIZER=fuzzer   build-fuzzer/   clang, libFuzzer + ASan + UBSan (the fuzz targets)
#   VARIANT=name       adds -name     (the lint build is CC=clang VARIANT=clang: build-clang/)
#   PLANT_LEAK=1       adds -plantleak: -DGH_PLANT_LEAK, the mutant with a leak planted in session
#                      cleanup that scripts/planted-leak.sh builds to prove the gate fails on it.
#                      Never for anything else.

CC        ?= cc
SANITIZER ?=
VARIANT   ?=
PLANT_LEAK ?=
PKGS      := libmicrohttpd libsodium jansson sqlite3 inih libcurl hiredis libpq liboath libqrencode libcbor libcrypto libdw
BUILD     := build$(if $(SANITIZER),-$(SANITIZER))$(if $(VARIANT),-$(VARIANT))$(if $(PLANT_LEAK),-plantleak)

CFLAGS_BASE := -std=c17 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
               -D_GNU_SOURCE -Isrc -pthread
ifeq ($(SANITIZER),address)
CFLAGS_OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS_SAN := -fsanitize=address,undefined
else ifeq ($(SANITIZER),thread)
CFLAGS_OPT := -O1 -fno-omit-frame-pointer -fsanitize=thread
LDFLAGS_SAN := -fsanitize=thread
else ifeq ($(SANITIZER),fuzzer)
ifeq ($(origin CC),default)
CC := clang
endif
# The library is instrumented for coverage (fuzzer-no-link); only the targets link libFuzzer.
CFLAGS_OPT := -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
              -fno-sanitize-recover=all
LDFLAGS_SAN := -fsanitize=address,undefined
else
CFLAGS_OPT := -O2
LDFLAGS_SAN :=
endif
CFLAGS_BASE += $(if $(PLANT_LEAK),-DGH_PLANT_LEAK)

DEPS_STAMP := build/.deps-stamp
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  += $(CFLAGS_BASE) $(CFLAGS_OPT) $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lm -pthread
LDFLAGS += $(LDFLAGS_SAN)

# src/mem/heap_malloc.c interposes malloc (the sampling heap profiler, src/mem/heap.h): it is
# linked into the gatehouse binary (and the profiler's own test) only, never into the library.
HEAP_MALLOC := $(BUILD)/obj/src/mem/heap_malloc.o
LIB_SRC   := $(sort $(shell find src -name '*.c' ! -path src/main.c ! -path src/mem/heap_malloc.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC  := $(sort $(shell find tests/unit -name 'test_*.c' 2>/dev/null))
UNIT_BIN  := $(UNIT_SRC:%.c=$(BUILD)/%)
INTEG_SRC := $(sort $(shell find tests/integration -name 'test_*.c' 2>/dev/null))
INTEG_BIN := $(INTEG_SRC:%.c=$(BUILD)/%)
INTEG_LIB := $(BUILD)/obj/tests/integration/harness.o
FUZZ_SRC  := $(sort $(shell find tests/fuzz -maxdepth 1 -name 'fuzz_*.c' 2>/dev/null))
FUZZ_BIN  := $(FUZZ_SRC:%.c=$(BUILD)/%)
# tests/support/*.c (starting real redis-server and PostgreSQL) is linked into every test binary;
# it uses nothing of libgatehouse, so its place after the library on the link line is harmless.
TEST_SUPPORT := $(patsubst %.c,$(BUILD)/obj/%.o,$(sort $(wildcard tests/support/*.c)))

.SECONDARY:
.PHONY: all deps run test test-unit test-integration check-alloc clean format bench \
        fuzz-targets test-asan test-valgrind test-oom fuzz lint soak
all: $(BUILD)/gatehouse

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	@bash scripts/deps.sh
	@mkdir -p $(dir $@) && touch $@

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libgatehouse.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# -rdynamic: the heap profiler names the binary's functions through dladdr.
$(BUILD)/gatehouse: $(BUILD)/obj/src/main.o $(HEAP_MALLOC) $(BUILD)/libgatehouse.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LDLIBS)

# The profiler's own test runs with the interposer, like the binary.
$(BUILD)/tests/unit/mem/test_heap_profile: $(BUILD)/obj/tests/unit/mem/test_heap_profile.o \
		$(HEAP_MALLOC) $(BUILD)/libgatehouse.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/libgatehouse.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/tests/integration/%: $(BUILD)/obj/tests/integration/%.o $(INTEG_LIB) $(BUILD)/libgatehouse.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(UNIT_BIN) $(INTEG_BIN): $(TEST_SUPPORT)

# ---- fuzz targets: tests/fuzz/fuzz_X.c -> $(BUILD)/tests/fuzz/fuzz_X ----
# With SANITIZER=fuzzer they are libFuzzer binaries; in every other build replay.c is their
# main(), which runs given inputs once (the corpora and regressions, in `make test`).
ifeq ($(SANITIZER),fuzzer)
FUZZ_MAIN :=
FUZZ_LINK := -fsanitize=fuzzer
else
FUZZ_MAIN := $(BUILD)/obj/tests/fuzz/replay.o
FUZZ_LINK :=
endif
$(BUILD)/tests/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(FUZZ_MAIN) $(BUILD)/libgatehouse.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(FUZZ_LINK) -o $@ $^ $(LDLIBS)

fuzz-targets: $(FUZZ_BIN)

# ---- bench: bench/bench_X.c -> $(BUILD)/bench/bench_X, linked like the unit tests ----
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BUILD)/libgatehouse.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

.PHONY: bench-metrics
bench-metrics: $(BUILD)/bench/bench_metrics
	./$(BUILD)/bench/bench_metrics

.PHONY: bench-store
bench-store: $(BUILD)/bench/bench_store
	./$(BUILD)/bench/bench_store

.PHONY: bench-audit
bench-audit: $(BUILD)/bench/bench_audit
	./$(BUILD)/bench/bench_audit

.PHONY: bench-watchdog
bench-watchdog: $(BUILD)/bench/bench_watchdog
	./$(BUILD)/bench/bench_watchdog

# Token checks through the Redis backend next to the memory backend, and redis-benchmark GET as
# the ceiling; starts its own redis-server on a free loopback port.
.PHONY: bench-redis
$(BUILD)/bench/bench_redis: $(TEST_SUPPORT)
bench-redis: $(BUILD)/bench/bench_redis
	./$(BUILD)/bench/bench_redis

# The email outbox: cost per queued message, and one node's delivery rate to a loopback SMTP
# server (aiosmtpd, started by tests/support/smtp.c).
.PHONY: bench-email
$(BUILD)/bench/bench_email: $(TEST_SUPPORT)
bench-email: $(BUILD)/bench/bench_email
	./$(BUILD)/bench/bench_email

# The OpenID Connect grant store: bytes per refresh-token family and per code (memory:
# accounted and resident at 100,000 families; Redis: used_memory), store operations per second.
.PHONY: bench-grants
$(BUILD)/bench/bench_grants: $(TEST_SUPPORT)
bench-grants: $(BUILD)/bench/bench_grants
	./$(BUILD)/bench/bench_grants

.PHONY: bench-load
bench-load: $(BUILD)/bench/bench_load
	./$(BUILD)/bench/bench_load

# Token checks alone and under a login flood, through the real binary with wrk.
.PHONY: bench-flood
bench-flood: $(BUILD)/gatehouse
	bash bench/bench_flood.sh $(BUILD)/gatehouse

# Guarded pages per second through the shipped nginx config against the same nginx proxying the
# same app without auth (and without upstream keep-alive).
.PHONY: bench-proxy
bench-proxy: $(BUILD)/gatehouse
	@bash bench/bench_proxy.sh $(BUILD)

# A login storm and the token checks of its own address, at every default: direct and through
# the shipped nginx config.
.PHONY: bench-storm
bench-storm: $(BUILD)/gatehouse
	@bash bench/bench_storm.sh $(BUILD)

# Against the ceilings of this machine (docs/BENCHMARKS.md, "Against the ceilings"), each on a
# node with the default serve settings:
# GET /v1/auth and GET /v1/session against Debian's nginx answering `return 200` (same wrk
# settings, interleaved), the request log's cost, and token-check latency at half the maximum,
# open loop.
.PHONY: bench-ceiling
bench-ceiling: $(BUILD)/gatehouse
	@bash bench/bench_ceiling.sh $(BUILD)

# Token checks with the sampling heap profiler on against off (interleaved, one run), and its
# cost per malloc + free pair (bench_heap_malloc, linked with the interposer like the binary).
$(BUILD)/bench/bench_heap_malloc: $(BUILD)/obj/bench/bench_heap_malloc.o $(HEAP_MALLOC) \
		$(BUILD)/libgatehouse.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LDLIBS)
.PHONY: bench-heap
bench-heap: $(BUILD)/gatehouse $(BUILD)/bench/bench_heap_malloc
	@bash bench/bench_heap.sh $(BUILD)
	./$(BUILD)/bench/bench_heap_malloc

# Login throughput against the raw argon2id verify rate at the same cost on as many threads.
.PHONY: bench-login
bench-login: $(BUILD)/gatehouse $(BUILD)/bench/bench_login
	@bash bench/bench_login.sh $(BUILD)

# A node on a sessions.db of one million sessions: RSS and accounted bytes per session, start-up.
.PHONY: bench-rss
bench-rss: $(BUILD)/gatehouse $(BUILD)/bench/bench_load
	@bash bench/bench_rss.sh $(BUILD)

# What the second factor adds to a login: one-step against two-step logins (TOTP from oathtool).
.PHONY: bench-mfa
bench-mfa: $(BUILD)/gatehouse
	@bash bench/bench_mfa.sh $(BUILD)

# The OpenID provider's token endpoint (refresh_token grants, authorization_code exchanges) against
# logins, measured in the same run (wrk with bench/oidc_token.lua and bench/login_ok.lua).
.PHONY: bench-oidc
bench-oidc: $(BUILD)/gatehouse
	@bash bench/bench_oidc.sh $(BUILD)

# `make bench` runs every benchmark; each prints its figures and fails only when it cannot run.
# Figures and method: docs/BENCHMARKS.md.
BENCHES := bench-store bench-load bench-redis bench-flood bench-watchdog bench-metrics
BENCHES += bench-engine bench-ceiling bench-login bench-rss bench-proxy bench-storm bench-audit
BENCHES += bench-mfa bench-email bench-heap bench-grants
BENCHES += bench-oidc
bench: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory all
	@for b in $(BENCHES); do echo "== $$b"; $(MAKE) --no-print-directory $$b || exit 1; done

# Test-only LD_PRELOAD library that makes a real server leak (tests/integration/test_watchdog.c,
# test_load.c).
LEAK_SO := $(BUILD)/tests/integration/leak_preload.so
$(LEAK_SO): tests/integration/leak_preload.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -fPIC -shared -o $@ $< -pthread

# ---- gatehouse load (src/load): the soak gate, the engine benchmark, the noise floor ----

# `make soak` (also the soak stage of `make test`): a fresh node soaked for 60 s by
# `gatehouse load` in waves; fails unless the verdict is pass. scripts/soak.sh says what it runs
# (SOAK_DURATION= and SOAK_RATE= override duration and rate); build/soak.{json,html} is its report.
.PHONY: soak
soak: $(BUILD)/gatehouse
	@bash scripts/soak.sh --against $(BUILD)/gatehouse

# The `gatehouse load` engine against wrk -t1 on the token check (scripts/deps.sh installs wrk).
.PHONY: bench-engine
bench-engine: $(BUILD)/gatehouse
	@bash bench/bench_engine.sh $(BUILD)

# The noise floor the leak verdict's default threshold comes from (about 25 minutes; not in
# BENCHES). docs/BENCHMARKS.md, "Leak verdict noise floor".
.PHONY: bench-noise
bench-noise: $(BUILD)/gatehouse
	@bash bench/noise_floor.sh $(BUILD)

run: $(BUILD)/gatehouse
	@mkdir -p var
	./$(BUILD)/gatehouse serve --listen 127.0.0.1:8080 --data-dir ./var --log-format text \
	  --webauthn-rp-id localhost --webauthn-origin http://localhost:8080

# No allocation may bypass src/mem: the accounting is only true if nothing escapes it.
check-alloc:
	@bash scripts/check-alloc.sh

test-unit: $(UNIT_BIN)
test-integration: $(BUILD)/gatehouse $(INTEG_BIN) $(LEAK_SO)

# ---- the gate: scripts/run-tests.sh runs named stages (all of them for `make test`), one line
# each, the full log of a failing one, and "N passed, N failed" last. docs/CONTRIBUTING.md.
GATE = MAKE="$(MAKE)" bash scripts/run-tests.sh
FUZZ_SECONDS ?=

test: $(DEPS_STAMP)
	@$(GATE) all

test-asan: $(DEPS_STAMP)
	@$(GATE) asan

test-valgrind: $(DEPS_STAMP)
	@$(GATE) build valgrind

test-oom: $(DEPS_STAMP)
	@$(GATE) oom

fuzz: $(DEPS_STAMP)
	@FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60) $(GATE) fuzz

lint: $(DEPS_STAMP)
	@$(GATE) lint

format:
	clang-format -i $$(find src tests bench -name '*.[ch]')

clean:
	rm -rf build build-*

-include $(LIB_OBJ:.o=.d) $(BUILD)/obj/src/main.d $(HEAP_MALLOC:.o=.d)
# Test objects depend on the headers they include too (harness.h changes struct layouts).
-include $(UNIT_SRC:%.c=$(BUILD)/obj/%.d) $(INTEG_SRC:%.c=$(BUILD)/obj/%.d) $(INTEG_LIB:.o=.d)
-include $(FUZZ_SRC:%.c=$(BUILD)/obj/%.d) $(BUILD)/obj/tests/fuzz/replay.d
-include $(TEST_SUPPORT:.o=.d)
