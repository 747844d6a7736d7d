# Gatehouse build. `make` builds build/gatehouse; `make test` installs what is missing,
# builds and runs every test; `make run` serves on 127.0.0.1:8080 with SQLite in ./var.
# SANITIZER=address builds into build-asan/ with ASan+UBSan+LSan.

CC        ?= cc
SANITIZER ?=
PKGS      := libmicrohttpd libsodium jansson sqlite3 inih libcurl
BUILD     := build$(if $(SANITIZER),-$(SANITIZER))

CFLAGS_BASE := -std=c17 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
               -D_GNU_SOURCE -Isrc -pthread
ifeq ($(SANITIZER),address)
CFLAGS_OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS_SAN := -fsanitize=address,undefined
else
CFLAGS_OPT := -O2
LDFLAGS_SAN :=
endif

DEPS_STAMP := build/.deps-stamp
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  += $(CFLAGS_BASE) $(CFLAGS_OPT) $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lm -pthread
LDFLAGS += $(LDFLAGS_SAN)

LIB_SRC   := $(sort $(shell find src -name '*.c' ! -path src/main.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC  := $(sort $(shell find tests/unit -name 'test_*.c' 2>/dev/null))
UNIT_BIN  := $(UNIT_SRC:%.c=$(BUILD)/%)
INTEG_SRC := $(sort $(shell find tests/integration -name 'test_*.c' 2>/dev/null))
INTEG_BIN := $(INTEG_SRC:%.c=$(BUILD)/%)
INTEG_LIB := $(BUILD)/obj/tests/integration/harness.o

.SECONDARY:
.PHONY: all deps run test test-unit test-integration check-alloc clean format bench
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

$(BUILD)/gatehouse: $(BUILD)/obj/src/main.o $(BUILD)/libgatehouse.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/libgatehouse.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/tests/integration/%: $(BUILD)/obj/tests/integration/%.o $(INTEG_LIB) $(BUILD)/libgatehouse.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# ---- bench: bench/bench_X.c -> $(BUILD)/bench/bench_X, linked like the unit tests ----
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BUILD)/libgatehouse.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

.PHONY: bench-store
bench-store: $(BUILD)/bench/bench_store
	./$(BUILD)/bench/bench_store

# `make bench` runs every benchmark; each prints its figures and fails only when it cannot run.
# Figures and method: docs/BENCHMARKS.md.
BENCHES := bench-store
bench: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory all
	@for b in $(BENCHES); do echo "== $$b"; $(MAKE) --no-print-directory $$b || exit 1; done

run: $(BUILD)/gatehouse
	@mkdir -p var
	./$(BUILD)/gatehouse serve --listen 127.0.0.1:8080 --data-dir ./var --log-format text

# No allocation may bypass src/mem: the accounting is only true if nothing escapes it.
check-alloc:
	@bash scripts/check-alloc.sh

test-unit: $(UNIT_BIN)
test-integration: $(BUILD)/gatehouse $(INTEG_BIN)

test: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory all test-unit test-integration
	@GATEHOUSE_BIN=$(BUILD)/gatehouse bash scripts/run-tests.sh $(BUILD)

format:
	clang-format -i $$(find src tests bench -name '*.[ch]')

clean:
	rm -rf build build-*

-include $(LIB_OBJ:.o=.d) $(BUILD)/obj/src/main.d
# Test objects depend on the headers they include too (harness.h changes struct layouts).
-include $(UNIT_SRC:%.c=$(BUILD)/obj/%.d) $(INTEG_SRC:%.c=$(BUILD)/obj/%.d) $(INTEG_LIB:.o=.d)
