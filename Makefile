# dalign build. Variants (each in its own build directory):
#   make BLAS=none      portable GEMM, no OpenBLAS
#   make NO_OMP=1       no OpenMP (single-threaded)
#   make SANITIZE=1     AddressSanitizer + UndefinedBehaviorSanitizer
# Targets: all (default), check, check-layers, examples, demo, bench, oracle, deps, install,
#          uninstall, clean
#
# Distro and cross builds: CFLAGS, CPPFLAGS, LDFLAGS and LDLIBS are the user's
# (optimisation, -mcpu, hardening); the flags dalign needs are in DA_CFLAGS,
# DA_LDFLAGS and DA_LDLIBS and are always added. A cross compiler is
# recognised by its multiarch triplet (`$(CC) -print-multiarch`): it gets its
# own build directory, build/<triplet>[-variant] (BUILD=dir overrides), the
# target's pkg-config (<triplet>-pkg-config, from Debian's pkgconf:<arch>) and
# the target's OpenBLAS and libgomp. For aarch64 on a Debian amd64 machine:
#   sh scripts/install-deps.sh gcc-aarch64-linux-gnu
#   make check CC=aarch64-linux-gnu-gcc TEST_RUNNER=qemu-aarch64
# make check then installs the :arm64 packages it needs (adding arm64 to dpkg)
# and qemu-user. TEST_RUNNER prefixes every test suite, and DA_TEST_RUNNER
# passes it to the suites that start the dalign binary. qemu-aarch64 needs no
# option: with libc6:arm64 installed it finds the aarch64 loader at
# /lib/ld-linux-aarch64.so.1 and the libraries in /usr/lib/aarch64-linux-gnu.
# Do not add `-L /usr/aarch64-linux-gnu` (or QEMU_LD_PREFIX): it mixes that
# cross glibc with the multiarch one and the suites hang (in pthread_create).
# Under qemu a suite runs about 35x slower than natively (.ci/run).

CC         ?= cc
PREFIX     ?= /usr/local
BLAS       ?= openblas
PYTHON     ?= /usr/bin/python3
TEST_RUNNER ?=

# The target's multiarch triplet (x86_64-linux-gnu, aarch64-linux-gnu, ...);
# a compiler for another CPU than this machine's is a cross compiler.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
HOST_MULTIARCH := $(shell dpkg-architecture -qDEB_BUILD_MULTIARCH 2>/dev/null || echo `uname -m`-linux-gnu)
CROSS     := $(if $(MULTIARCH),$(if $(filter $(HOST_MULTIARCH),$(MULTIARCH)),,1))
ifeq ($(CROSS),1)
  PKG_CONFIG ?= $(MULTIARCH)-pkg-config
  NM ?= $(MULTIARCH)-nm
  ifeq ($(origin AR),default)
    AR := $(MULTIARCH)-ar
  endif
  # Debian architecture of the target (arm64) for the :arch packages
  DEB_ARCH := $(shell dpkg-architecture -t$(MULTIARCH) -qDEB_HOST_ARCH 2>/dev/null)
  PKG_SUFFIX := $(if $(DEB_ARCH),:$(DEB_ARCH))
  # the target's pkg-config, C library (its loader is what qemu-user runs)
  # and OpenMP runtime; the cross compiler itself: gcc-$(MULTIARCH)
  CROSS_PKGS := pkgconf$(PKG_SUFFIX) libc6$(PKG_SUFFIX) $(if $(filter 1,$(NO_OMP)),,libgomp1$(PKG_SUFFIX))
else
  PKG_CONFIG ?= pkg-config
endif
NM ?= nm

# Optimisation is the user's; the rest is dalign's own and always applies.
# -ffp-contract=off: never fuse a*b+c into an FMA behind our back; the same
# source must give the same bits on x86 and ARM (golden outputs).
# -fvisibility=hidden: libdalign.so exports only the functions marked DA_API
# in include/dalign/*.h (the public API); libdalign.a, which the CLI, the
# tests and the benchmarks link, keeps every function usable.
CFLAGS     ?= -O2
DA_CFLAGS  = -std=c11 -D_GNU_SOURCE -Wall -Wextra -fPIC -ffp-contract=off -fvisibility=hidden -Iinclude -Isrc
DA_LDFLAGS =
DA_LDLIBS  = -lstb -lm

VARIANT :=
# OpenBLAS: headers from libopenblas-dev. With OpenMP we link the OpenMP
# flavour (libopenblas0-openmp) so sgemm runs on libgomp's own thread pool:
# the pthread flavour's threads busy-wait after each call and starve our
# OpenMP loops (a 3x3 conv ran 10x slower on 2 threads than on 1).
# pkg-config runs on first use, not when the Makefile is read: `make check`
# installs the (target's) pkg-config and OpenBLAS first.
OPENBLAS_OMP_DIR := /usr/lib/$(MULTIARCH)/openblas-openmp
OPENBLAS_CFLAGS = $(eval OPENBLAS_CFLAGS := $(shell $(PKG_CONFIG) --cflags openblas 2>/dev/null))$(OPENBLAS_CFLAGS)
OPENBLAS_LIBS = $(eval OPENBLAS_LIBS := $(shell $(PKG_CONFIG) --libs openblas 2>/dev/null || echo -lopenblas))$(OPENBLAS_LIBS)
ifeq ($(BLAS),openblas)
  DA_CFLAGS += -DDA_USE_OPENBLAS $(OPENBLAS_CFLAGS)
  ifeq ($(NO_OMP),1)
    DA_LDLIBS += $(OPENBLAS_LIBS)
  else
    DA_LDLIBS += -L$(OPENBLAS_OMP_DIR) -l:libopenblas.so.0 -Wl,-rpath,$(OPENBLAS_OMP_DIR)
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
  DA_CFLAGS += -Wno-unknown-pragmas
else
  DA_CFLAGS += -fopenmp
  DA_LDFLAGS += -fopenmp
endif
ifeq ($(SANITIZE),1)
  VARIANT := $(VARIANT)-sanitize
  SANITIZE_CFLAGS := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  DA_CFLAGS += $(SANITIZE_CFLAGS)
  DA_LDFLAGS += -fsanitize=address,undefined
endif

BUILD ?= build/$(if $(CROSS),$(MULTIARCH),default)$(VARIANT)
B := $(BUILD)

# user flags first, dalign's after them (so -O1 of SANITIZE wins, and no
# user flag can turn -ffp-contract=off back on by accident)
COMPILE = $(CC) $(CPPFLAGS) $(CFLAGS) $(DA_CFLAGS)
LINK    = $(CC) $(CFLAGS) $(LDFLAGS) $(DA_LDFLAGS)
LIBS    = $(LDLIBS) $(DA_LDLIBS)

# The version, from the macros in include/dalign/core.h (no '#' here: make
# would read it as a comment). The shared library is the file
# libdalign.so.MAJOR.MINOR.PATCH with SONAME libdalign.so.MAJOR, and the
# links libdalign.so.MAJOR and libdalign.so (what -ldalign finds) to it.
version_macro = $(shell sed -n 's/^.define DA_VERSION_$(1) \([0-9]*\)$$/\1/p' include/dalign/core.h)
VERSION_MAJOR := $(call version_macro,MAJOR)
VERSION := $(VERSION_MAJOR).$(call version_macro,MINOR).$(call version_macro,PATCH)
SONAME  := libdalign.so.$(VERSION_MAJOR)
SO_FILE := libdalign.so.$(VERSION)

PUBLIC_HEADERS := $(sort $(wildcard include/dalign/*.h))
HEADERS   := include/dalign.h $(PUBLIC_HEADERS) $(wildcard src/*/*.h)
LIB_SRC   := $(sort $(wildcard src/core/*.c src/models/*.c src/diffusion/*.c src/data/*.c src/pipeline/*.c src/rewards/*.c src/eval/*.c src/train/*.c))
CLI_SRC   := $(sort $(wildcard src/cli/*.c))
TEST_SRC  := $(filter-out tests/test_util.c,$(sort $(wildcard tests/test_*.c)))
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(B)/%.o)

# The vector kernels (src/core/vec_*.c; src/core/vec.h says why): one more
# object per instruction set beyond the target's baseline, chosen at run
# time (src/core/isa.c). x86-64 targets get avx2 and avx512 copies; no
# -mfma: nothing may be fused, so every copy gives the baseline's bits.
VEC_SRC   := $(sort $(wildcard src/core/vec_*.c))
ifneq ($(filter x86_64-%,$(or $(MULTIARCH),$(HOST_MULTIARCH))),)
  VEC_ISAS := avx2 avx512
  DA_CFLAGS += -DDA_VEC_X86
endif
VEC_FLAGS_avx2   := -mavx2 -mno-fma
VEC_FLAGS_avx512 := -mavx2 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mno-fma -mprefer-vector-width=512
LIB_OBJ   += $(foreach i,$(VEC_ISAS),$(VEC_SRC:%.c=$(B)/%.$(i).o))
CLI_OBJ   := $(CLI_SRC:%.c=$(B)/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(B)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

.PHONY: all check check-layers demo bench oracle deps deps-test install uninstall clean examples FORCE weights golden experiment-preference unet-dpo refiner-ref experiment-promptloop refiner experiments
all: $(B)/libdalign.a $(B)/libdalign.so $(B)/dalign
ifneq ($(CROSS),1)
	@ln -sf $(B)/dalign dalign
endif

# `make -j2 check` on a fresh machine: nothing compiles before the install
# step its goal asked for has put the headers (stb, cmocka, cblas) in place.
ifneq ($(filter check,$(MAKECMDGOALS)),)
DEPS_FIRST := deps-test
else ifneq ($(filter-out all clean install uninstall examples golden oracle check-layers $(B)/%,$(MAKECMDGOALS)),)
DEPS_FIRST := deps
endif

$(B)/%.o: %.c $(HEADERS) | $(DEPS_FIRST)
	@mkdir -p $(dir $@)
	$(COMPILE) -c $< -o $@

define VEC_RULE
$(B)/src/core/%.$(1).o: src/core/%.c $(HEADERS) | $(DEPS_FIRST)
	@mkdir -p $$(dir $$@)
	$$(COMPILE) $$(VEC_FLAGS_$(1)) -DDA_VEC_ISA=$(1) -c $$< -o $$@
endef
$(foreach i,$(VEC_ISAS),$(eval $(call VEC_RULE,$(i))))

$(B)/libdalign.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/$(SO_FILE): $(LIB_OBJ)
	$(LINK) -shared -Wl,-soname,$(SONAME) -o $@ $^ $(LIBS)

$(B)/$(SONAME): $(B)/$(SO_FILE)
	ln -sf $(SO_FILE) $@

$(B)/libdalign.so: $(B)/$(SONAME)
	ln -sf $(SONAME) $@

$(B)/dalign: $(CLI_OBJ) $(B)/libdalign.a
	$(LINK) -o $@ $(CLI_OBJ) $(B)/libdalign.a $(LIBS)

$(B)/tests/%: tests/%.c $(B)/tests/test_util.o $(B)/libdalign.a $(HEADERS) | $(DEPS_FIRST)
	@mkdir -p $(dir $@)
	$(COMPILE) -Itests -o $@ $< $(B)/tests/test_util.o $(B)/libdalign.a $(LDFLAGS) $(DA_LDFLAGS) $(LIBS) -lcmocka

$(B)/tests/test_util.o: tests/test_util.c tests/test_util.h $(HEADERS)
	@mkdir -p $(dir $@)
	$(COMPILE) -Itests -c $< -o $@

# A user's program: the public headers only (no -Isrc, pedantic C99),
# linked against libdalign.so, not the .a, and run from the build directory
# (RUNPATH $ORIGIN/..), so it sees what the shared library exports.
$(B)/tests/test_public_api: tests/test_public_api.c include/dalign.h $(PUBLIC_HEADERS) $(B)/libdalign.so
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -std=c99 -pedantic -Wall -Wextra -Werror $(SANITIZE_CFLAGS) -Iinclude -o $@ $< \
	  $(LDFLAGS) $(DA_LDFLAGS) $(B)/libdalign.so -Wl,-rpath,'$$ORIGIN/..'

# The weights `make install` puts in $(PREFIX)/share/dalign/weights are
# where the installed binary looks when neither --weights, DALIGN_WEIGHTS
# nor ./weights says otherwise (da_weights_dir, src/pipeline/weights.c).
# weights.o is rebuilt when PREFIX changes: $(B)/weights-dir holds the
# path it was built with and is rewritten only when that changes.
WEIGHTS_INSTALL_DIR = $(PREFIX)/share/dalign/weights
$(B)/weights-dir: FORCE
	@mkdir -p $(B)
	@echo '$(WEIGHTS_INSTALL_DIR)' | cmp -s - $@ || echo '$(WEIGHTS_INSTALL_DIR)' > $@
$(B)/src/pipeline/weights.o: $(B)/weights-dir
$(B)/src/pipeline/weights.o: DA_CFLAGS += -DDA_WEIGHTS_DIR='"$(WEIGHTS_INSTALL_DIR)"'
# AdamW's sqrtf vectorises only without errno (its argument is never negative;
# the result is IEEE's correctly rounded square root either way)
$(B)/src/core/optim.o: DA_CFLAGS += -fno-math-errno
FORCE:

# Example programs (examples/*.c): a user's programs, built as
# test_public_api is (public headers only, pedantic C99, libdalign.so with
# RUNPATH $ORIGIN/..). make check builds them and runs examples/generate
# on the shipped weights.
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(B)/examples/%)
examples: $(EXAMPLE_BIN)

$(B)/examples/%: examples/%.c include/dalign.h $(PUBLIC_HEADERS) $(B)/libdalign.so
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -std=c99 -pedantic -Wall -Wextra -Werror $(SANITIZE_CFLAGS) -Iinclude -o $@ $< \
	  $(LDFLAGS) $(DA_LDFLAGS) $(B)/libdalign.so -Wl,-rpath,'$$ORIGIN/..'

$(B)/bench/%: bench/%.c $(B)/libdalign.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(COMPILE) -Ibench -o $@ $< $(B)/libdalign.a $(LDFLAGS) $(DA_LDFLAGS) $(LIBS)

# Test suites run from the repository root (they read tests/oracle/*.safetensors),
# each as `$(TEST_RUNNER) $(B)/tests/test_x` (scripts/check.sh). Each suite is a
# cmocka binary whose exit status is its number of failures; the run ends with
# the suites that failed and "check: N passed, N failed". From the environment
# or the command line: TEST_JOBS=N suites at once, SKIP_SUITES="test_a ...",
# TEST_TIMEOUT=S seconds per suite (scripts/check.sh).
# OpenMP threads sleep when idle (OMP_WAIT_POLICY=passive): spinning threads
# made 2-thread suites 5-70x slower whenever anything else used a core.
# With OpenBLAS and OpenMP on this machine's CPU, the thread-determinism suites
# run again under every OPENBLAS_CORETYPE the CPU can execute
# (scripts/check-coretypes.sh; not with NO_OMP=1, one thread, nor SANITIZE=1,
# where it would take minutes).
# Before the suites: the layering check (scripts/check-layers.sh: no file
# includes a header of a higher layer) and the exports check
# (scripts/check-exports.sh: libdalign.so exports exactly the DA_API functions).
CORETYPES := $(if $(and $(filter openblas,$(BLAS)),$(if $(CROSS)$(TEST_RUNNER)$(filter 1,$(NO_OMP) $(SANITIZE)),,1)),1,0)
check: check-layers deps-test all $(TEST_BIN) examples
	@sh scripts/check-exports.sh '$(NM)' $(B)/$(SO_FILE)
	@if [ -f weights/unet.safetensors ]; then \
	  tmp=$$(mktemp -d) && \
	  OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-passive} $(TEST_RUNNER) $(B)/examples/generate "a red circle" \
	    "$$tmp/generate.png" weights > "$$tmp/log" 2>&1 && [ -s "$$tmp/generate.png" ] && \
	  grep -q '^\[DEBUG\] dalign: loaded UNet' "$$tmp/log" && \
	  { tail -n 1 "$$tmp/log" | sed 's|^|examples: |'; rm -rf "$$tmp"; } || \
	  { echo "examples: FAILED: $(B)/examples/generate:"; cat "$$tmp/log"; rm -rf "$$tmp"; exit 1; }; \
	else echo "examples: skipped running generate (no weights/unet.safetensors)"; fi
	@TEST_RUNNER='$(TEST_RUNNER)' CORETYPES=$(CORETYPES) sh scripts/check.sh $(B) $(TEST_BIN)

check-layers:
	@sh scripts/check-layers.sh

demo: deps all
	@sh scripts/demo.sh $(B)/dalign

bench: deps all $(BENCH_BIN)
	@sh bench/run.sh $(B) $(PYTHON)

# Train every shipped network from scratch into weights/ (+ SHA256SUMS);
# step counts are env vars (scripts/make-weights.sh), SMOKE=1 for a quick run.
weights: deps all
	@sh scripts/make-weights.sh $(B)/dalign

# The preference-trainer experiment (docs/alignment-preference.md): pairs,
# sweep, SFT/DPO/RPO/KTO, evaluation; every stage cached in
# out/experiments/preference and resumable (SMOKE=1: toy sizes).
experiment-preference: deps all
	@DALIGN=$(B)/dalign bash scripts/experiment-preference.sh

# weights/unet-dpo: the experiment's Diffusion-DPO UNet (its stages up to
# training, cached as above), with its SHA256SUMS lines
unet-dpo: deps all
	@DALIGN=$(B)/dalign SHIP=dpo UNTIL=train bash scripts/experiment-preference.sh

# weights/refiner-ref: the PromptLoop reference refiner (docs/promptloop.md),
# `dalign train refiner` with its defaults on the shipped base models, in
# REFINER_OUT (observation bank, checkpoint, metrics, report, wall time);
# rerun after an interrupt to resume; a finished run is reused. Then
# REFINER_SHIP/refiner-ref.{safetensors,json} and their SHA256SUMS lines
# (replacing older ones). REFINER_ARGS adds options (a smoke test: --steps 5
# --bank-size 16 --val-queries 8, with REFINER_SHIP pointing elsewhere).
REFINER_OUT ?= out/refiner-ref
REFINER_SHIP ?= weights
REFINER_THREADS ?= 2
refiner-ref: deps all
	@set -e; out='$(REFINER_OUT)'; ship='$(REFINER_SHIP)'; n=refiner-ref; mkdir -p "$$out"; \
	if [ -f "$$out/$$n.safetensors" ] && [ -f "$$out/$$n.json" ]; then \
	    echo "refiner-ref: $$out/$$n.* exists (a finished run; remove $$out to train again)"; \
	else \
	    resume=; [ -f "$$out/$$n.ckpt" ] && resume="--resume $$out/$$n.ckpt"; \
	    t0=$$(date +%s); \
	    $(B)/dalign --threads $(REFINER_THREADS) train refiner --weights weights --out "$$out" --name $$n \
	        $$resume $(REFINER_ARGS) | tee "$$out/$$n.txt"; \
	    [ -f "$$out/$$n.safetensors" ] || { echo "refiner-ref: the run did not finish" >&2; exit 1; }; \
	    echo "wall_s $$(( $$(date +%s) - t0 )) threads $(REFINER_THREADS)$${resume:+ (this session, resumed)}" \
	        >> "$$out/$$n.wall.txt"; \
	fi; \
	for ext in safetensors json; do cp "$$out/$$n.$$ext" "$$ship/$$n.$$ext.tmp"; done; \
	for ext in safetensors json; do mv "$$ship/$$n.$$ext.tmp" "$$ship/$$n.$$ext"; done; \
	(cd "$$ship" && { grep -v " $$n\.\(safetensors\|json\)\$$" SHA256SUMS || true; } > SHA256SUMS.tmp && \
	    sha256sum "$$n.safetensors" "$$n.json" >> SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS); \
	echo "refiner-ref: shipped $$ship/$$n.{safetensors,json} (wall time: $$out/$$n.wall.txt)"

# The PromptLoop experiment (docs/promptloop.md "Results"): GRPO refiners in
# modes loop and once from weights/refiner-ref, evaluation of every mode,
# inference time, example trajectories; cached in out/experiments/promptloop
# and resumable (SMOKE=1: toy sizes).
experiment-promptloop: deps all
	@DALIGN=$(B)/dalign sh scripts/experiment-promptloop.sh

# weights/refiner: the experiment's closed-loop GRPO refiner (its stages up
# to the RL training, cached as above), with its SHA256SUMS lines
refiner: deps all
	@DALIGN=$(B)/dalign SHIP=1 UNTIL=rl sh scripts/experiment-promptloop.sh

# The experiment suite of issue 13 (docs/experiments.md): reward optimisation
# at equal rollouts (PromptLoop, DDPO, GRPO, RAFT), transfer to unet-b,
# composition with unet-dpo, over-optimisation on gameable rewards, the
# preference claims; every step cached in out/experiments/suite and
# resumable; the report in DOC (default OUT/report; DOC=docs/experiments for
# the shipped one). SMOKE=1: toy sizes.
experiments: deps all
	@DALIGN=$(B)/dalign sh scripts/experiments.sh

# Fixed-seed samples of weights/ into tests/golden/ (checked by tests/test_golden.c).
golden: all
	@sh scripts/make-golden.sh $(B)/dalign

# Regenerate the PyTorch reference files (needs python3-torch; not needed by tests).
oracle:
	@for s in tests/oracle/*.py; do case $$s in */st.py) continue;; esac; \
	  echo "== $$s"; $(PYTHON) $$s || exit 1; done

# Debian packages (of the target's architecture when cross compiling:
# libopenblas-dev:arm64 ...; the script adds the architecture to dpkg).
deps:
	@sh scripts/install-deps.sh $(addsuffix $(PKG_SUFFIX),$(BLAS_PKGS) libstb-dev) $(CROSS_PKGS) pkg-config
deps-test:
	@sh scripts/install-deps.sh $(addsuffix $(PKG_SUFFIX),$(BLAS_PKGS) libstb-dev libcmocka-dev) $(CROSS_PKGS) pkg-config \
	  $(if $(filter qemu-%,$(notdir $(firstword $(TEST_RUNNER)))),qemu-user)

# The shared library as in the build directory: the file, its SONAME link
# and the development link; dalign.h and the layer headers in include/dalign/;
# the shipped weights in $(PREFIX)/share/dalign/weights (the binary's default
# when there is no ./weights, DALIGN_WEIGHTS or --weights).
WEIGHTS_FILES = $(wildcard weights/*.json weights/*.safetensors weights/SHA256SUMS weights/README.md)
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/dalign \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(B)/dalign $(DESTDIR)$(PREFIX)/bin/dalign
	install -m 644 $(B)/libdalign.a $(DESTDIR)$(PREFIX)/lib/libdalign.a
	install -m 755 $(B)/$(SO_FILE) $(DESTDIR)$(PREFIX)/lib/$(SO_FILE)
	ln -sf $(SO_FILE) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libdalign.so
	install -d $(DESTDIR)$(WEIGHTS_INSTALL_DIR)
	$(if $(WEIGHTS_FILES),install -m 644 $(WEIGHTS_FILES) $(DESTDIR)$(WEIGHTS_INSTALL_DIR)/)
	install -m 644 include/dalign.h $(DESTDIR)$(PREFIX)/include/dalign.h
	install -m 644 $(PUBLIC_HEADERS) $(DESTDIR)$(PREFIX)/include/dalign/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@LIBS@|$(DA_LDLIBS) $(if $(filter 1,$(NO_OMP)),,-fopenmp)|' dalign.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/dalign.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/dalign $(DESTDIR)$(PREFIX)/lib/libdalign.a \
	      $(DESTDIR)$(PREFIX)/lib/$(SO_FILE) $(DESTDIR)$(PREFIX)/lib/$(SONAME) \
	      $(DESTDIR)$(PREFIX)/lib/libdalign.so $(DESTDIR)$(PREFIX)/include/dalign.h \
	      $(addprefix $(DESTDIR)$(PREFIX)/,$(PUBLIC_HEADERS)) $(DESTDIR)$(PREFIX)/lib/pkgconfig/dalign.pc
	rm -rf $(DESTDIR)$(WEIGHTS_INSTALL_DIR)
	-rmdir $(DESTDIR)$(PREFIX)/include/dalign $(DESTDIR)$(PREFIX)/share/dalign

clean:
	rm -rf build dalign
