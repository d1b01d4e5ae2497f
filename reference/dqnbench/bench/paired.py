"""The A/B decision: from paired per-pass times of a baseline and a candidate to slower, faster or same.

Each pass times a benchmark once on each side, back to back, so the pass's ratio candidate / baseline meets
one moment of the host on both sides; the decision uses these ratios only, never absolute times.

The estimate is the median of the ratios; its 95 % interval is the **exact sign-test (order-statistic)
interval for the median** (Hollander, Wolfe & Chicken, *Nonparametric Statistical Methods*, 3rd ed., §3.6):
with n ratios sorted, [r_(k), r_(n+1-k)] for the largest k with P(Binomial(n, 1/2) <= k - 1) <= 2.5 %. It
was chosen over a bootstrap because it needs no assumption on the shape of the ratios (a busy host gives
skewed, heavy-tailed ones), its coverage is exact (at least 95 %) for any n rather than asymptotic (the
percentile bootstrap of a median under-covers at the 20-30 passes a run affords), and it is deterministic: the
same passes always give the same verdict. It assumes only that the passes' ratios are independent draws
around one median, which alternating the order within pairs (B A A B ...) protects.

A benchmark is **slower** only when the whole interval lies above 1 *and* the median ratio exceeds 1 plus the
benchmark's minimum effect; **faster** is the mirror image (interval below 1, ratio below 1 / (1 + minimum
effect)); anything else is **same**. The minimum effect keeps a real but negligible difference between two
processes (memory layout, which core) from failing the gate; `benchmarks/thresholds.toml` says how it was set.

A verdict other than same is only a screen's: `confirmed` keeps it only when a retry by a fresh pair of worker
processes repeats it. One pair's processes can differ by several per cent on a benchmark for their whole life
(memory layout, a burst of the host during its passes), which no number of that pair's passes averages out;
a fresh pair draws that offset anew, so a same-code alarm must happen twice, independently, to stand (a
two-stage screen-and-confirm test, as perf bots re-run a suspected regression before they report it).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

CONFIDENCE = 0.95


class ABVerdict(StrEnum):
    SLOWER = "slower"
    FASTER = "faster"
    SAME = "same"


@dataclass(frozen=True)
class Decision:
    """One benchmark's verdict: median ratio candidate / baseline, its interval, and the minimum effect used."""

    ratio: float
    low: float
    high: float
    min_effect: float
    verdict: ABVerdict
    passes: int

    def describe(self) -> str:
        return (
            f"{self.ratio:.3f} (95% CI {self.low:.3f}-{self.high:.3f}, {self.passes} passes, "
            f"minimum effect {self.min_effect:.0%})"
        )


def sign_rank(n: int, confidence: float = CONFIDENCE) -> int | None:
    """The 1-based rank k of the sign-test interval's lower end for `n` values; None when n is too small for any."""
    alpha = (1.0 - confidence) / 2.0
    below = 0.0
    k = 0
    # P(B <= k - 1) grows with k; find the largest k keeping it within alpha.
    while k < n:
        below += math.comb(n, k) / 2.0**n
        if below > alpha:
            break
        k += 1
    return k if k >= 1 else None


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact distribution-free interval for the median of `values`; (-inf, inf) when they are too few."""
    ordered = sorted(values)
    k = sign_rank(len(ordered), confidence)
    if k is None:
        return -math.inf, math.inf
    return ordered[k - 1], ordered[len(ordered) - k]


def decide(baseline: Sequence[float], candidate: Sequence[float], min_effect: float) -> Decision:
    """The verdict on paired per-pass times (seconds, pass i of each side timed back to back)."""
    if len(baseline) != len(candidate) or not baseline:
        raise ValueError(
            f"decide(baseline={len(baseline)} passes, candidate={len(candidate)} passes): need the same number "
            "of paired passes on both sides, at least one"
        )
    if min_effect < 0:
        raise ValueError(f"decide(min_effect={min_effect}): a minimum effect is a relative change such as 0.05")
    ratios = [after / before for before, after in zip(baseline, candidate, strict=True)]
    ratio = statistics.median(ratios)
    low, high = median_interval(ratios)
    verdict = ABVerdict.SAME
    if low > 1.0 and ratio > 1.0 + min_effect:
        verdict = ABVerdict.SLOWER
    elif high < 1.0 and ratio < 1.0 / (1.0 + min_effect):
        verdict = ABVerdict.FASTER
    return Decision(ratio, low, high, min_effect, verdict, len(ratios))


def confirmed(screen: Decision, retry: Decision | None) -> Decision:
    """The final decision of one benchmark: the screen's when it said same; otherwise the retry's figures, with the
    screen's verdict only when the retry repeats it (else same)."""
    if screen.verdict is ABVerdict.SAME:
        return screen
    if retry is None:
        raise ValueError(f"confirmed(screen verdict {screen.verdict.value}): a flagged benchmark needs its retry")
    return dataclasses.replace(retry, verdict=retry.verdict if retry.verdict is screen.verdict else ABVerdict.SAME)


def pass_order(pass_index: int, benchmark_index: int) -> tuple[str, str]:
    """Which side goes first in a pass: alternating over passes and over benchmarks (B A, A B, A B, B A, ...)."""
    return ("baseline", "candidate") if (pass_index + benchmark_index) % 2 == 0 else ("candidate", "baseline")
