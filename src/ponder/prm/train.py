"""Training a value head: soft-label binary cross-entropy, a validation split by question, early stopping.

The same routine makes the process reward model (every step's state, its Monte Carlo label) and
the outcome reward model (the final state only, the solution's correctness). Questions, not steps,
are split between training and validation: steps of one solution are nearly the same example.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ponder.errors import BadParameter
from ponder.prm.head import ValueHead


@dataclass(frozen=True)
class TrainSettings:
    hidden: int = 256  # 0: logistic regression
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 256
    max_epochs: int = 300
    patience: int = 20  # epochs without a better validation loss before stopping
    val_fraction: float = 0.2
    seed: int = 0


def split_by_group(groups: list[str], val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Row masks (train, validation), whole groups on one side."""
    names = sorted(set(groups))
    random.Random(seed).shuffle(names)
    held = set(names[: max(1, round(val_fraction * len(names)))]) if len(names) > 1 else set()
    val = torch.tensor([g in held for g in groups])
    return ~val, val


def train_head(features: Tensor, labels: Tensor, groups: list[str], settings: TrainSettings = TrainSettings(),
               epochs: int | None = None) -> tuple[ValueHead, dict[str, float]]:
    """A head fitted to (features [N, dim], labels [N] in [0, 1]), early-stopped on a validation split of the
    questions, with metrics on it; or, given `epochs` (as cross-validation chose), trained on every question
    for exactly that many epochs."""
    if len(features) != len(labels) or len(labels) != len(groups) or len(labels) < 2:
        raise BadParameter(f"need as many labels as feature rows, at least 2 (got {len(features)} rows, "
                           f"{len(labels)} labels, {len(groups)} groups)")
    if labels.min() == labels.max():
        raise BadParameter(f"all {len(labels)} labels are {labels[0].item():g}: nothing to tell apart; label more "
                           "questions (or harder and easier ones)")
    torch.manual_seed(settings.seed)
    if epochs is None:
        train, val = split_by_group(groups, settings.val_fraction, settings.seed)
        if not val.any():
            raise BadParameter("validation needs questions of its own: label at least 2 questions")
    else:
        train, val = torch.ones(len(labels), dtype=torch.bool), torch.zeros(len(labels), dtype=torch.bool)
    x, y = features.float(), labels.float()
    head = ValueHead(x.shape[1], settings.hidden)
    head.mean.copy_(x[train].mean(0))
    head.std.copy_(x[train].std(0).clamp(min=1e-6))
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    best, best_state, best_epoch, waited = float("inf"), None, 0, 0
    order = torch.Generator().manual_seed(settings.seed)
    rows = train.nonzero().squeeze(1)
    for epoch in range(1, (epochs or settings.max_epochs) + 1):
        head.train()
        for batch in rows[torch.randperm(len(rows), generator=order)].split(settings.batch_size):
            loss = F.binary_cross_entropy_with_logits(head(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epochs is not None:
            continue
        val_loss = evaluate_loss(head, x[val], y[val])
        if val_loss < best - 1e-5:
            best, best_epoch, waited = val_loss, epoch, 0
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        elif (waited := waited + 1) >= settings.patience:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    with torch.no_grad():
        metrics = {"train_loss": evaluate_loss(head, x[train], y[train]), "train_auc": auc(head(x[train]), y[train]),
                   "train_rows": int(train.sum()), "epochs": epochs or best_epoch}
        if epochs is None:
            metrics |= {"val_loss": best, "val_auc": auc(head(x[val]), y[val]), "val_rows": int(val.sum())}
    return head, metrics


def cross_validate(features: Tensor, labels: Tensor, groups: list[str], folds: int,
                   settings: TrainSettings = TrainSettings()) -> tuple[list[float], list[int]]:
    """AUC on each of `folds` parts of the questions by a head trained on the rest (itself early-stopped on
    a split of the rest, so no fold chooses its own stopping point), and the epoch each head stopped at.
    One validation split of a few dozen questions is noisy; the spread across folds says how much."""
    names = sorted(set(groups))
    if folds < 2 or len(names) - -(-len(names) // folds) < 2:  # each fold's head trains and stops on 2 others
        raise BadParameter(f"cannot cross-validate {len(names)} questions over {folds} folds: use 2 or more folds, "
                           "each leaving at least 2 questions outside it")
    random.Random(settings.seed).shuffle(names)
    aucs, epochs = [], []
    for k in range(folds):
        held = set(names[k::folds])
        test = torch.tensor([g in held for g in groups])
        rest = (~test).nonzero().squeeze(1).tolist()
        head, metrics = train_head(features[~test], labels[~test], [groups[i] for i in rest], settings)
        with torch.no_grad():
            aucs.append(auc(head(features[test].float()), labels[test]))
        epochs.append(metrics["epochs"])
    return aucs, epochs


@torch.no_grad()
def evaluate_loss(head: ValueHead, x: Tensor, y: Tensor) -> float:
    head.eval()
    return float(F.binary_cross_entropy_with_logits(head(x), y))


def auc(scores: Tensor, labels: Tensor, threshold: float = 0.5) -> float:
    """Area under the ROC curve, with labels >= threshold as positives (ties count half); nan if one class."""
    positive = labels >= threshold
    pos, neg = scores[positive].float(), scores[~positive].float()
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).float().sum() + 0.5 * (pos[:, None] == neg[None, :]).float().sum()
    return float(greater / (len(pos) * len(neg)))
