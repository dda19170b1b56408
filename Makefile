# dalign build. Variants (each in its own build directory):
#   make BLAS=none      portable GEMM, no OpenBLAS
#   make NO_OMP=1       no OpenMP (single-threaded)
#   make SANITIZE=1     AddressSanitizer + UndefinedBehaviorSanitizer
# Targets: all (default), check, demo, bench, oracle, deps, install, uninstall, clean

CC      ?= cc
PREFIX  ?= /usr/local
BLAS    ?= openblas
PYTHON  ?= /usr/bin/python3

# -ffp-contract=off: never fuse a*b+c into an FMA behind our back; the same
# source must give the same bits on x86 and ARM (golden outputs).
CFLAGS  ?= -O2
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -fPIC -ffp-contract=off -Iinclude -Isrc
LDLIBS  := -lstb -lm

VARIANT :=
# OpenBLAS: headers from libopenblas-dev. With OpenMP we link the OpenMP
# flavour (libopenblas0-openmp) so sgemm runs on libgomp's own thread pool:
# the pthread flavour's threads busy-wait after each call and starve our
# OpenMP loops (a 3x3 conv ran 10x slower on 2 threads than on 1).
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
OPENBLAS_OMP_DIR := /usr/lib/$(MULTIARCH)/openblas-openmp
ifeq ($(BLAS),openblas)
  CFLAGS += -DDA_USE_OPENBLAS $(shell pkg-config --cflags openblas 2>/dev/null)
  ifeq ($(NO_OMP),1)
    LDLIBS += $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
  else
    LDLIBS += -L$(OPENBLAS_OMP_DIR) -l:libopenblas.so.0 -Wl,-rpath,$(OPENBLAS_OMP_DIR)
    BLAS_PKGS := libopenblas0-openmp
  endif
  BLAS_PKGS += libopenblas-dev
else ifeq ($(BLAS),none)
  VARIANT := $(VARIANT)-blasnone
else
  $(error BLAS must be openblas or none)
endif
ifeq ($(NO_OMP),1)
  VARIANT := $(VARIANT)-noomp
  CFLAGS += -Wno-unknown-pragmas
else
  CFLAGS += -fopenmp
  LDFLAGS += -fopenmp
endif
ifeq ($(SANITIZE),1)
  VARIANT := $(VARIANT)-sanitize
  CFLAGS += -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

B := build/default$(VARIANT)

LIB_SRC   := $(sort $(wildcard src/core/*.c src/models/*.c src/diffusion/*.c src/data/*.c src/pipeline/*.c src/rewards/*.c src/eval/*.c src/train/*.c))
CLI_SRC   := $(sort $(wildcard src/cli/*.c))
TEST_SRC  := $(filter-out tests/test_util.c,$(sort $(wildcard tests/test_*.c)))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(B)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(B)/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(B)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

.PHONY: all check demo bench oracle deps deps-test install uninstall clean weights golden
all: $(B)/libdalign.a $(B)/libdalign.so $(B)/dalign
	@ln -sf $(B)/dalign dalign

$(B)/%.o: %.c include/dalign.h $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/libdalign.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/libdalign.so: $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/dalign: $(CLI_OBJ) $(B)/libdalign.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(B)/libdalign.a $(LDLIBS)

$(B)/tests/%: tests/%.c $(B)/tests/test_util.o $(B)/libdalign.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(B)/tests/test_util.o $(B)/libdalign.a $(LDFLAGS) $(LDLIBS) -lcmocka

$(B)/tests/test_util.o: tests/test_util.c tests/test_util.h include/dalign.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -c $< -o $@

$(B)/bench/%: bench/%.c $(B)/libdalign.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ibench -o $@ $< $(B)/libdalign.a $(LDFLAGS) $(LDLIBS)

# Test suites run from the repository root (they read tests/oracle/*.safetensors).
# Each suite is a cmocka binary whose exit status is its number of failures.
# OpenMP threads sleep when idle (OMP_WAIT_POLICY=passive): spinning threads
# made 2-thread suites 5-70x slower whenever anything else used a core.
check: deps-test all $(TEST_BIN)
	@fail=0; for t in $(TEST_BIN); do \
	  echo "== $$t"; OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-passive} $$t || { echo "FAILED: $$t"; fail=1; }; \
	done; \
	if [ $$fail -ne 0 ]; then echo "make check: FAILURES"; exit 1; fi; \
	echo "make check: all $(words $(TEST_BIN)) suites passed ($(B))"

demo: deps all
	@sh scripts/demo.sh $(B)/dalign

bench: deps all $(BENCH_BIN)
	@sh bench/run.sh $(B) $(PYTHON)

# Train every shipped network from scratch into weights/ (+ SHA256SUMS);
# step counts are env vars (scripts/make-weights.sh), SMOKE=1 for a quick run.
weights: deps all
	@sh scripts/make-weights.sh $(B)/dalign

# Fixed-seed samples of weights/ into tests/golden/ (checked by tests/test_golden.c).
golden: all
	@sh scripts/make-golden.sh $(B)/dalign

# Regenerate the PyTorch reference files (needs python3-torch; not needed by tests).
oracle:
	@for s in tests/oracle/*.py; do case $$s in */st.py) continue;; esac; \
	  echo "== $$s"; $(PYTHON) $$s || exit 1; done

deps:
	@sh scripts/install-deps.sh $(BLAS_PKGS) libstb-dev pkg-config
deps-test:
	@sh scripts/install-deps.sh $(BLAS_PKGS) libstb-dev libcmocka-dev pkg-config

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(B)/dalign $(DESTDIR)$(PREFIX)/bin/dalign
	install -m 644 $(B)/libdalign.a $(DESTDIR)$(PREFIX)/lib/libdalign.a
	install -m 755 $(B)/libdalign.so $(DESTDIR)$(PREFIX)/lib/libdalign.so
	install -m 644 include/dalign.h $(DESTDIR)$(PREFIX)/include/dalign.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/^#define DA_VERSION "\(.*\)"/\1/p' include/dalign.h)|' \
	    -e 's|@LIBS@|$(LDLIBS) $(if $(filter 1,$(NO_OMP)),,-fopenmp)|' dalign.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/dalign.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/dalign $(DESTDIR)$(PREFIX)/lib/libdalign.a \
	      $(DESTDIR)$(PREFIX)/lib/libdalign.so $(DESTDIR)$(PREFIX)/include/dalign.h \
	      $(DESTDIR)$(PREFIX)/lib/pkgconfig/dalign.pc

clean:
	rm -rf build dalign
