"""The polynomials of `exp_nonpos` (src/float.rs): minimax for the relative error of e^r on
|r| <= ln2/2 (slightly widened), in the form e^r ~ 1 + r + r^2 q(r), by the Remez exchange in
40-digit arithmetic (mpmath). Prints q's coefficients, highest degree first, and the maximal
relative error; the Rust constants are these, rounded to the type.

    pip install mpmath && python3 tests/golden/generate_exp_minimax.py

f32, degree 6: 3.1e-9 (a twentieth of half an ulp); degree 5 would give 1.5e-7 (2.6 half-ulps).
f64, degree 11: 7.8e-18 (0.07 half-ulp); degree 10 would give 2.9e-16.
"""
import mpmath as mp

mp.mp.dps = 40


def remez(degree, half_width, iterations=30, grid_size=1500):
    powers = list(range(2, degree + 1))
    n = len(powers)
    error = lambda c, r: (1 + r + sum(ci * r**k for ci, k in zip(c, powers))) / mp.exp(r) - 1
    grid = [half_width * mp.cos(mp.pi * (1 - mp.mpf(i) / grid_size)) for i in range(grid_size + 1)]
    points = [half_width * mp.cos(mp.pi * (n - i) / n) for i in range(n + 1)]
    for _ in range(iterations):
        # Equioscillation at the points: sum_k c_k r^k / e^r + (-1)^i E = 1 - (1 + r) / e^r.
        m, v = mp.matrix(n + 1, n + 1), mp.matrix(n + 1, 1)
        for i, r in enumerate(points):
            for j, k in enumerate(powers):
                m[i, j] = r**k / mp.exp(r)
            m[i, n] = (-1) ** i
            v[i] = 1 - (1 + r) / mp.exp(r)
        solution = mp.lu_solve(m, v)
        c = [solution[j] for j in range(n)]
        errors = [error(c, r) for r in grid]
        # The largest error of each run of one sign becomes the next set of points (the error is
        # exactly 0 at r = 0, which belongs to the run it is in).
        runs, current = [], [0]
        for j in range(1, len(grid)):
            if errors[j] == 0 or mp.sign(errors[j]) == mp.sign(errors[current[0]]):
                current.append(j)
            else:
                runs.append(current)
                current = [j]
        runs.append(current)
        extrema = [max(run, key=lambda j: abs(errors[j])) for run in runs]
        while len(extrema) > n + 1:
            extrema.pop(0 if abs(errors[extrema[0]]) < abs(errors[extrema[-1]]) else -1)
        worst = max(abs(e) for e in errors)
        if len(extrema) < n + 1:
            break
        points = [grid[j] for j in extrema]
    return c, worst


half_width = mp.log(2) / 2 * mp.mpf("1.001")
for name, degree, digits in [("f32", 6, 9), ("f64", 11, 17)]:
    c, worst = remez(degree, half_width)
    print(f"{name}, degree {degree}: max relative error {float(worst):.2e}")
    print("  q:", ", ".join(mp.nstr(x, digits) for x in reversed(c)))
