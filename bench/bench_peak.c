/* Theoretical FP32 peak of this machine, printed with its derivation:
 *
 *   peak = cores * lanes * (2 if FMA else 1) * FMA units per core * GHz
 *
 * Every factor says where it came from. The last two lines are for
 * bench/run.sh: PEAK_CORE_GFLOPS (one core) and PEAK_GFLOPS (all cores).
 * Environment overrides: DA_FMA_UNITS (vector FMA units per core),
 * DA_CPU_MHZ (clock). Linux only (/proc/cpuinfo, sysfs). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Value of the first "key<tabs>: value" line of /proc/cpuinfo, or "" */
static void cpuinfo_field(const char *key, char *out, size_t n)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    static char line[8192];
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) != 0 || (line[klen] != ' ' && line[klen] != '\t' && line[klen] != ':'))
            continue;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *v = colon + 1;
        while (*v == ' ') v++;
        v[strcspn(v, "\n")] = '\0';
        snprintf(out, n, "%s", v);
        break;
    }
    fclose(f);
}

/* whole-word match in a space-separated flag list */
static int has_flag(const char *flags, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = flags; (p = strstr(p, flag)) != NULL; p += n) {
        int starts = p == flags || p[-1] == ' ';
        int ends = p[n] == '\0' || p[n] == ' ';
        if (starts && ends) return 1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Core clock from chains of dependent register-register adds: each waits for
 * the previous one and has 1 cycle of latency on x86 and ARM cores, so adds
 * per second = cycles per second, turbo included. (Adds of an immediate are
 * avoided: recent Intel cores fold those at rename.) After a 0.3 s warm-up
 * (an idle core ramps its clock up), N_TRIES tries of ~25 ms each; ghz[]
 * returns them sorted. Returns the number of tries, 0 where not available. */
#define N_TRIES 32
static int measure_ghz(double ghz[N_TRIES])
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__aarch64__))
    const long iters = 1000000; /* x 100 adds */
    uint64_t x = 0, one = 1;
    int n = 0;
    double start = now();
    while (n < N_TRIES) {
        double t0 = now();
        for (long i = 0; i < iters; i++) {
#if defined(__x86_64__)
            __asm__ volatile(".rept 100\n\taddq %1, %0\n\t.endr" : "+r"(x) : "r"(one));
#else
            __asm__ volatile(".rept 100\n\tadd %0, %0, %1\n\t.endr" : "+r"(x) : "r"(one));
#endif
        }
        double t1 = now();
        if (t0 - start > 0.3) ghz[n++] = (double)iters * 100.0 / (t1 - t0) * 1e-9;
    }
    qsort(ghz, (size_t)n, sizeof ghz[0], cmp_double);
    return x > 0 ? n : 0;
#else
    (void)ghz;
    return 0;
#endif
}

int main(void)
{
    char model[256], flags[8192], mhz_s[64];
    cpuinfo_field("model name", model, sizeof model);
    cpuinfo_field("flags", flags, sizeof flags);
    if (!flags[0]) cpuinfo_field("Features", flags, sizeof flags); /* ARM */
    cpuinfo_field("cpu MHz", mhz_s, sizeof mhz_s);

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;

    /* vector width and FMA from the CPU flags */
    int lanes = 4, fma = 0, units = 2;
    const char *isa = "SSE2 (x86-64 baseline, 128-bit)", *units_why;
    if (has_flag(flags, "avx512f")) {
        lanes = 16, fma = 1, isa = "AVX-512F (512-bit)";
        units_why = "assumed: Intel Xeon Scalable server cores (Skylake-SP Gold/Platinum, "
                    "Ice Lake-SP, Sapphire Rapids) have two 512-bit FMA units, ports 0+1 fused "
                    "and port 5 (Intel 64 and IA-32 Optimization Reference Manual); some "
                    "client and low-end parts have one";
    } else if (has_flag(flags, "avx2") && has_flag(flags, "fma")) {
        lanes = 8, fma = 1, isa = "AVX2 + FMA (256-bit)";
        units_why = "assumed: two 256-bit FMA units per core (Intel since Haswell, ports 0 "
                    "and 1; AMD since Zen 2)";
    } else if (has_flag(flags, "asimd")) {
        lanes = 4, fma = 1, isa = "NEON/ASIMD (128-bit; SVE not considered)";
        units_why = "assumed: two 128-bit FP/SIMD pipes per core (Cortex-A76/Neoverse N1 "
                    "class; wider cores have more)";
    } else {
        units_why = "assumed: no FMA; one vector multiply and one vector add port per core, "
                    "counted as two units of one flop";
    }
    const char *env_units = getenv("DA_FMA_UNITS");
    if (env_units && atoi(env_units) > 0) {
        units = atoi(env_units);
        units_why = "from DA_FMA_UNITS";
    }

    /* clock: sysfs max frequency when the kernel exposes cpufreq, else
     * /proc/cpuinfo "cpu MHz" (in a VM: the nominal clock); the measured
     * clock wins when higher, since this is an upper bound */
    double mhz = 0.0;
    char clock_src[256] = "unknown";
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "r");
    long khz = 0;
    if (f) {
        if (fscanf(f, "%ld", &khz) == 1 && khz > 0) {
            mhz = khz / 1000.0;
            snprintf(clock_src, sizeof clock_src, "sysfs cpufreq cpuinfo_max_freq");
        }
        fclose(f);
    }
    if (mhz == 0.0 && mhz_s[0]) {
        mhz = atof(mhz_s);
        snprintf(clock_src, sizeof clock_src, "/proc/cpuinfo \"cpu MHz\" (no cpufreq in sysfs)");
    }
    double ghz[N_TRIES];
    int n_tries = measure_ghz(ghz);
    double measured = n_tries ? ghz[n_tries - 1] * 1000.0 : 0.0;
    double used = mhz;
    const char *why = "reported";
    if (measured > used * 1.02) {
        used = measured;
        why = "the highest measured clock (above the reported one: turbo), since a peak is "
              "an upper bound";
    }
    const char *env_mhz = getenv("DA_CPU_MHZ");
    if (env_mhz && atof(env_mhz) > 0) {
        used = atof(env_mhz);
        why = "from DA_CPU_MHZ";
    }
    if (used <= 0.0) used = 1000.0, why = "unknown: assumed 1000 MHz (set DA_CPU_MHZ)";

    double per_lane = fma ? 2.0 : 1.0;
    double core_gflops = lanes * per_lane * units * used / 1000.0;
    printf("== Theoretical FP32 peak\n");
    printf("cpu           %s\n", model[0] ? model : "(no \"model name\" in /proc/cpuinfo)");
    printf("cores         %ld (sysconf _SC_NPROCESSORS_ONLN)\n", cores);
    printf("vector width  %d f32 lanes: %s, from /proc/cpuinfo flags\n", lanes, isa);
    printf("FMA           %s: %.0f flop per lane per instruction\n", fma ? "yes" : "no", per_lane);
    printf("FMA units     %d per core (%s; override with DA_FMA_UNITS)\n", units, units_why);
    printf("clock         reported %.0f MHz from %s\n", mhz, clock_src);
    if (n_tries)
        printf("              measured on one core by dependent integer adds (1 cycle each), "
               "%d tries: max %.0f, median %.0f, min %.0f MHz\n", n_tries, measured,
               ghz[n_tries / 2] * 1000.0, ghz[0] * 1000.0);
    printf("              using %.0f MHz: %s\n", used, why);
    printf("peak/core     %d lanes x %.0f x %d units x %.3f GHz = %.1f GFLOP/s\n", lanes, per_lane,
           units, used / 1000.0, core_gflops);
    printf("peak          %ld cores x %.1f = %.1f GFLOP/s\n", cores, core_gflops, cores * core_gflops);
    printf("PEAK_CORE_GFLOPS %.1f\n", core_gflops);
    printf("PEAK_GFLOPS %.1f\n", cores * core_gflops);
    return 0;
}
