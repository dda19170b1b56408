"""Coefficients of src/core/mathf.c (da_expf, da_logf, da_erff, da_tanhf,
da_log1pf): prints the C tables and the error of their double evaluation.

Method: each polynomial interpolates its function at the Chebyshev nodes of
its interval (close to the minimax polynomial for these smooth functions);
the function values and the linear solve use 60-digit decimal arithmetic,
then each coefficient is rounded to the nearest double. The printed error is
that of the rounded coefficients evaluated exactly as mathf.c does (Horner in
double, no FMA: Python floats), against 60-digit references, on a dense grid.
Needs only the standard library; run with any python3. Written for this
project from the functions' definitions (series for erf, Machin's formula
for pi), not taken from any libm.
"""
import math
from decimal import Decimal as D, getcontext

getcontext().prec = 60


def machin_pi():
    """pi = 16 atan(1/5) - 4 atan(1/239)"""
    def atan_inv(n):
        x = D(1) / n
        s, term, k = D(0), x, 1
        while abs(term) > D(10) ** -70:
            s += term / k if (k // 2) % 2 == 0 else -term / k
            term *= x * x
            k += 2
        return s
    return 16 * atan_inv(5) - 4 * atan_inv(239)


SQRT_PI = machin_pi().sqrt()
LN2 = D(2).ln()


def erf_hp(x):
    """erf(x) = 2/sqrt(pi) sum_n (-1)^n x^(2n+1) / (n! (2n+1)); fine for |x| <= 4"""
    x = D(x)
    s, p, n = D(0), x, 0
    while True:
        s += p / (2 * n + 1)
        if abs(p) < D(10) ** -66:
            return 2 * s / SQRT_PI
        n += 1
        p = -p * x * x / n


def solve(a, b):
    """Gaussian elimination with partial pivoting, in Decimal."""
    n = len(b)
    m = [row[:] + [v] for row, v in zip(a, b)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            for k in range(c, n + 1):
                m[r][k] -= f * m[c][k]
    x = [D(0)] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][k] * x[k] for k in range(r + 1, n))) / m[r][r]
    return x


def fit(f, lo, hi, n):
    """n coefficients (degree n-1, monomials in the variable itself) of the
    polynomial that interpolates f at the n Chebyshev nodes of [lo, hi]."""
    nodes = [D((lo + hi) / 2 + (hi - lo) / 2 * math.cos((2 * k + 1) * math.pi / (2 * n)))
             for k in range(n)]
    c = solve([[t ** j for j in range(n)] for t in nodes], [f(t) for t in nodes])
    return [float(v) for v in c]


def horner(c, t):
    r = c[-1]
    for a in reversed(c[:-1]):
        r = r * t + a
    return r


def max_rel_err(approx, exact, lo, hi, points=300):
    """largest |approx(t) - exact(t)| / |exact(t)| over a uniform grid"""
    worst = 0.0
    for i in range(points + 1):
        t = lo + (hi - lo) * i / points
        e = exact(D(t))
        worst = max(worst, float(abs((D(approx(t)) - e) / e)))
    return worst


def show(name, c, err, what):
    """print a C table; err: the error of its evaluation (None: not evaluated)"""
    if err is None:
        print(f"/* {what} */")
    else:
        print(f"/* {what}; max relative error of the double evaluation {err:.2e} */")
    print(f"static const double {name}[{len(c)}] = {{")
    for i in range(0, len(c), 3):
        print("    " + " ".join(f"{v!r}," for v in c[i:i + 3]))
    print("};")


# exp(x) = 2^(k/64) exp(r), |r| <= ln2/128 (+ margin): the reduced argument
# of exp_core, with a table of 2^(j/64), j = 0..63
R = 0.0055
EXP_C = fit(lambda r: r.exp(), -R, R, 6)
show("EXP_C", EXP_C, max_rel_err(lambda r: horner(EXP_C, r), lambda r: r.exp(), -R, R),
     f"exp(r), |r| <= {R}")
EXP2_TABLE = [float(D(2) ** (D(j) / 64)) for j in range(64)]
show("EXP2_TABLE", EXP2_TABLE, None, "2^(j/64), j = 0..63, each the nearest double")

# ln2/64 split: LN2_64_HI is a multiple of 2^-38 (32 significant bits), so
# k * LN2_64_HI is exact for |k| < 2^21, and x - k * LN2_64_HI is exact for
# the arguments exp_core gets (floats, or twice one, of size <= 110).
LN2_64 = LN2 / 64
LN2_64_HI = math.floor(LN2_64 * 2 ** 38 + D("0.5")) / 2 ** 38
print(f"#define LN2_64_HI {LN2_64_HI!r}  /* ln2/64 rounded to a multiple of 2^-38 */")
print(f"#define LN2_64_LO {float(LN2_64 - D(LN2_64_HI))!r}  /* ln2/64 - LN2_64_HI */")
print(f"#define INV_LN2_64 {float(64 / LN2)!r}  /* 64/ln2 */")

# ln 2 split for log: LN2_HI has 32 significant bits, so e * LN2_HI is exact
LN2_HI = math.floor(LN2 * 2 ** 32 + D("0.5")) / 2 ** 32
print(f"#define LN2_HI {LN2_HI!r}  /* ln 2 rounded to a multiple of 2^-32 */")
print(f"#define LN2_LO {float(LN2 - D(LN2_HI))!r}  /* ln 2 - LN2_HI */")

# log(m) = 2 s L(s^2), s = (m - 1)/(m + 1), m in [sqrt(1/2), sqrt(2)]:
# L(z) = atanh(sqrt z) / sqrt z
ZMAX = float(((D(2).sqrt() - 1) / (D(2).sqrt() + 1)) ** 2) * 1.0001


def atanh_ratio(z):
    if z == 0:
        return D(1)
    s = z.sqrt()
    return ((1 + s) / (1 - s)).ln() / 2 / s


LOG_C = fit(atanh_ratio, 0.0, ZMAX, 8)
show("LOG_C", LOG_C, max_rel_err(lambda z: horner(LOG_C, z), atanh_ratio, 1e-30, ZMAX),
     f"atanh(s)/s as a polynomial in z = s^2, 0 <= z <= {ZMAX:.6f}")

# tanh(x) = x H(x^2) for |x| < 0.5, H(z) = tanh(sqrt z) / sqrt z
TANH_T = 0.5


def tanh_ratio(z):
    if z == 0:
        return D(1)
    x = z.sqrt()
    e = (2 * x).exp()
    return (e - 1) / (e + 1) / x


TANH_C = fit(tanh_ratio, 0.0, TANH_T ** 2, 11)
show("TANH_C", TANH_C,
     max_rel_err(lambda z: horner(TANH_C, z), tanh_ratio, 1e-30, TANH_T ** 2),
     f"tanh(x)/x as a polynomial in z = x^2, |x| < {TANH_T}")

# erf(x) = x E(x^2) for |x| < 1, E(z) = erf(sqrt z) / sqrt z
def erf_ratio(z):
    if z == 0:
        return 2 / SQRT_PI
    x = z.sqrt()
    return erf_hp(x) / x


ERF_SMALL = fit(erf_ratio, 0.0, 1.0, 12)
show("ERF_SMALL", ERF_SMALL,
     max_rel_err(lambda z: horner(ERF_SMALL, z), erf_ratio, 1e-30, 1.0),
     "erf(x)/x as a polynomial in z = x^2, |x| < 1")

# erf on [1, 4): six pieces of width 1/2, each a polynomial in t = |x| - centre
print("/* erf(c + t), |t| <= 1/4, c = 1.25 + 0.5 i: row i */")
rows, worst = [], 0.0
for i in range(6):
    c0 = D("1.25") + D("0.5") * i
    f = lambda t, c0=c0: erf_hp(t + c0)
    row = fit(f, -0.25, 0.25, 14)
    worst = max(worst, max_rel_err(lambda t, row=row: horner(row, t), f, -0.25, 0.25, 120))
    rows.append(row)
print(f"/* max relative error of the double evaluation {worst:.2e} */")
print(f"static const double ERF_PIECE[6][{len(rows[0])}] = {{")
for row in rows:
    print("    {")
    for i in range(0, len(row), 3):
        print("        " + " ".join(f"{v!r}," for v in row[i:i + 3]))
    print("    },")
print("};")
# the same coefficients by column, for a lookup across the lanes of a vector
print("/* ERF_PIECE by coefficient, for a lookup across the lanes of a vector:")
print(" * ERF_PIECE_COL[k][l] = ERF_PIECE[min(l, 5)][k] (erff_piece_x16) */")
print(f"static const double ERF_PIECE_COL[{len(rows[0])}][8] = {{")
for k in range(len(rows[0])):
    vals = [f"{rows[min(l, 5)][k]!r}" for l in range(8)]
    print("    {" + ", ".join(vals[:4]) + ",")
    print("     " + ", ".join(vals[4:]) + "},")
print("};")
