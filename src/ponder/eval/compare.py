"""The comparisons the allocation is judged by: `auto` against best-of-N, and a small model that thinks
harder against a larger one at equal FLOPs, per difficulty bin.

Against best-of-N (Snell et al.'s efficiency claim): per bin, each auto@n's accuracy, its difference from
best-of-N at the largest n, and its FLOPs as a share of best-of-N's.

Inference view: for each of the larger model's cells (greedy, majority at n), the small model's
strategy at the largest budget whose FLOPs per question fit within that cell's. Taking the largest
budget that fits, not the most accurate, keeps the choice from picking noise.

Pretraining-inclusive view (Snell et al., section 7): a model of N parameters trained on D tokens
costs about 6 N D, and serving D_inference tokens about 2 N D_inference. With R = D_inference / D and
both models trained on the same D, the small model matches the larger one's total FLOPs while
spending k times its inference tokens, k = (N_L (6 + 2R) - 6 N_S) / (2 R N_S). Small R (little
inference against pretraining) leaves the small model a large k; as R grows, k falls to N_L / N_S.
"""

from __future__ import annotations

from ponder.eval.metrics import Cell

SNELL_RATIOS = (0.16, 0.79, 22.0)  # the R values Snell et al. report


def parameters(cells: list[Cell]) -> float:
    """N, from any cell: its FLOPs are 2 N per token processed."""
    cell = next(c for c in cells if c.tokens > 0)
    return cell.flops / (2 * cell.tokens)


def largest_within(cells: list[Cell], strategy: str, limit: float, difficulty_bin: int | None) -> Cell | None:
    fitting = [c for c in cells if c.strategy == strategy and c.difficulty_bin == difficulty_bin
               and c.flops <= limit * 1.0001]
    return max(fitting, key=lambda c: c.flops, default=None)


def token_multiplier(n_small: float, n_large: float, ratio: float) -> float:
    """k: how many times the larger model's inference tokens the small one may spend at equal total FLOPs."""
    return (n_large * (6 + 2 * ratio) - 6 * n_small) / (2 * ratio * n_small)


def auto_against_best_of_n(cells: list[Cell], bins: int, baselines: tuple[str, ...] = ("bon", "weighted_bon"),
                           strategy: str = "auto") -> str:
    """Markdown: per baseline and bin, best-of-N at its largest n, and each auto@n beside it as "accuracy
    (difference) at its share of the baseline's FLOPs"."""
    budgets = sorted({c.n for c in cells if c.strategy == strategy})
    lines = ["| baseline | bin | its accuracy | " + " | ".join(f"{strategy}@{n}" for n in budgets) + " |",
             "|---|---|---|" + "---|" * len(budgets)]
    for name in baselines:
        for b in [None, *range(1, bins + 1)]:
            here = [c for c in cells if c.difficulty_bin == b]
            base = max((c for c in here if c.strategy == name), key=lambda c: c.n, default=None)
            if base is None:
                continue
            mine = {c.n: c for c in here if c.strategy == strategy}
            lines.append(_row([base.key, "all" if b is None else b, f"{base.accuracy:.2f}"] + [
                f"{mine[n].accuracy:.2f} ({mine[n].accuracy - base.accuracy:+.2f}) at {mine[n].flops / base.flops:.2f}"
                if n in mine else "" for n in budgets]))
    return "\n".join(lines)


def equal_flops_table(small: list[Cell], large: list[Cell], small_label: str, large_label: str, bins: int,
                      strategy: str = "auto") -> str:
    """Markdown: per bin and per larger-model cell, the small model's `strategy` within the same FLOPs."""
    lines = [f"| bin | {large_label} | its TFLOPs / q | its accuracy | {small_label} {strategy} within them | "
             "TFLOPs / q | accuracy | difference |", "|---|---|---|---|---|---|---|---|"]
    for b in [None, *range(1, bins + 1)]:
        for big in (c for c in large if c.difficulty_bin == b and c.strategy in ("greedy", "majority")):
            mine = largest_within(small, strategy, big.flops, b)
            lines.append(_row(["all" if b is None else b, big.key, f"{big.flops / 1e12:.2f}", f"{big.accuracy:.2f}"]
                              + _versus(mine, big, with_flops=True)))
    return "\n".join(lines)


def pretraining_table(small: list[Cell], large: list[Cell], small_label: str, large_label: str, bins: int,
                      strategy: str = "auto", ratios: tuple[float, ...] = SNELL_RATIOS) -> str:
    """Markdown: per R and bin, the small model's `strategy` at k times the larger model's greedy tokens."""
    n_small, n_large = parameters(small), parameters(large)
    lines = [f"| R | k | bin | {large_label} greedy | {small_label} {strategy} within k x its tokens | accuracy | "
             "difference |", "|---|---|---|---|---|---|---|"]
    for ratio in ratios:
        k = token_multiplier(n_small, n_large, ratio)
        for b in [None, *range(1, bins + 1)]:
            greedy = next((c for c in large if c.difficulty_bin == b and c.strategy == "greedy"), None)
            if greedy is None:
                continue
            mine = largest_within(small, strategy, greedy.flops * k * n_small / n_large, b)
            lines.append(_row([f"{ratio:g}", f"{k:.1f}", "all" if b is None else b, f"{greedy.accuracy:.2f}"]
                              + _versus(mine, greedy, with_flops=False)))
    return "\n".join(lines)


def _versus(mine: Cell | None, theirs: Cell, with_flops: bool) -> list[object]:
    if mine is None:
        return ["none fits", "", ""] + ([""] if with_flops else [])
    return [mine.key] + ([f"{mine.flops / 1e12:.2f}"] if with_flops else []) + [
        f"{mine.accuracy:.2f}", f"{mine.accuracy - theirs.accuracy:+.2f}"]


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"
