"""How many more human labels give a target interval width.

Both planners assume the standard deviations measured so far stay as they are when labels are added, and that
the interval is a normal one, width = 2 · z_{(1+level)/2} · se; the answers are planning figures, not guarantees.
"""

from __future__ import annotations

import math

from storage.analysis.ppi import z_value


def _check(target_width: float, n_now: int) -> None:
    if not target_width > 0 or not math.isfinite(target_width):
        raise ValueError(f"the target width must be a positive number, got {target_width}")
    if n_now < 1:
        raise ValueError(f"the current number of labels must be at least 1, got {n_now}")


def labels_for_width(se_now: float, n_now: int, target_width: float, level: float = 0.95) -> dict[str, float]:
    """Labels needed when se shrinks as 1/√n (a human-only mean, a bootstrap se of a per-label statistic):
    n_needed = n_now · (2 z se_now / target_width)², rounded up. ``more`` = n_needed − n_now (0 when the
    interval is already narrow enough). `se_now` may come from a bootstrap (half the 95% width / 1.96) or
    from a closed form.

    >>> labels_for_width(0.05, 100, 0.1)          # width now 0.196: about 3.84x the labels
    {'n_needed': 385, 'more': 285, 'width_now': 0.195996...}
    """
    _check(target_width, n_now)
    if not se_now >= 0:
        raise ValueError(f"se must be a non-negative number, got {se_now}")
    z = z_value(level)
    needed = math.ceil(n_now * (2 * z * se_now / target_width) ** 2 - 1e-9)
    return {"n_needed": needed, "more": max(0, needed - n_now), "width_now": 2 * z * se_now}


def ppi_labels_for_width(ppi_result: dict, target_width: float) -> dict[str, float]:
    """Labels needed for a PPI / PPI++ interval (a `storage.analysis.ppi.ppi_mean` result) of `target_width`,
    keeping λ and the N unlabelled predictions fixed: only the rectifier term sd_r²/n shrinks, so

        n_needed = sd_r² / ((w / 2z)² − sd_i² / N)

    and widths at or below the floor 2z · sd_i / √N, which more labels cannot reach, give ``n_needed`` = inf.

    >>> r = {"sd_rectifier": 0.3, "sd_imputed": 0.4, "n_unlabelled": 2000, "n_labelled": 200, "level": 0.95}
    >>> ppi_labels_for_width(r, 0.06)
    {'n_needed': 584, 'more': 384, 'floor': 0.035...}
    >>> ppi_labels_for_width(r, 0.03)["n_needed"]
    inf
    """
    n_now = int(ppi_result["n_labelled"])
    _check(target_width, n_now)
    z = z_value(float(ppi_result["level"]))
    sd_r, sd_i = float(ppi_result["sd_rectifier"]), float(ppi_result["sd_imputed"])
    big_n = int(ppi_result["n_unlabelled"])
    floor = 2 * z * sd_i / math.sqrt(big_n)
    room = (target_width / (2 * z)) ** 2 - sd_i ** 2 / big_n
    if room <= 0:
        return {"n_needed": math.inf, "more": math.inf, "floor": floor}
    needed = math.ceil(sd_r ** 2 / room - 1e-9)
    return {"n_needed": needed, "more": max(0, needed - n_now), "floor": floor}
