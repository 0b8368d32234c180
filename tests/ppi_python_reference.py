"""Reference values for tests/test_analysis_ppi.py, computed by the `ppi-python` package (import ppi_py).

ppi-python is not a test dependency (it pulls numba, llvmlite and statsmodels, ~270 MB), so its answers on the
inputs of `cases()` are written into the test as constants. To recompute them in an environment that has it:
``pip install ppi-python==0.2.3 && PYTHONPATH=. python tests/ppi_python_reference.py``.
"""

from __future__ import annotations

import numpy as np


def cases() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, y, f, f_unlabelled): binary labels with a good judge, ratings with a weak judge, a tiny set."""
    out = []
    rng = np.random.default_rng(16)
    x = rng.normal(size=2300)
    y = (x + rng.normal(scale=0.8, size=x.size) > 0).astype(float)
    f = 1 / (1 + np.exp(-1.7 * x))
    out.append(("binary", y[:300], f[:300], f[300:]))
    r = rng.normal(size=1600)
    y = np.clip(np.round(3 + r + rng.normal(scale=1.5, size=r.size)), 1, 5)
    f = 3 + 0.4 * r + rng.normal(scale=0.3, size=r.size)
    out.append(("ratings", y[:120], f[:120], f[120:]))
    out.append(("tiny", np.array([1.0, 0, 1, 1, 0]), np.array([0.8, 0.3, 0.6, 0.9, 0.4]),
                np.array([0.7, 0.2, 0.9, 0.5, 0.6, 0.1, 0.8])))
    return out


if __name__ == "__main__":
    import ppi_py

    for name, y, f, fu in cases():
        for lam in (None, 0.0, 1.0, 0.5):
            lo, hi = ppi_py.ppi_mean_ci(y, f, fu, alpha=0.05, lam=lam)
            est = ppi_py.ppi_mean_pointestimate(y, f, fu, lam=lam)
            print(f"    ({name!r}, {lam!r}): ({float(np.ravel(est)[0])!r}, {float(np.ravel(lo)[0])!r}, "
                  f"{float(np.ravel(hi)[0])!r}),")
        lo, hi = ppi_py.classical_mean_ci(y, alpha=0.05)
        print(f"    ({name!r}, 'classical'): ({float(y.mean())!r}, {float(lo)!r}, {float(hi)!r}),")
