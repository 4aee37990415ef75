"""Adversarial objectives on D's logits (N,), as pure functions returning scalar losses.

Each takes the real/fake targets for label smoothing; objectives without targets ignore them.
Math in the trailing comments; σ is the sigmoid, softplus(x) = log(1 + eˣ) = -log σ(-x).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ganrun.registry import Registry


@dataclass(frozen=True)
class Objective:
    name: str
    d_loss: Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]
    uses_labels: bool  # whether real/fake targets (label smoothing) mean anything
    d_stats: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]  # what D's outputs mean, for logging
    needs_lipschitz: bool = False  # the critic must be kept Lipschitz (a penalty or spectral norm)


OBJECTIVES: Registry[Objective] = Registry("loss")


def bce_d_loss(real: torch.Tensor, fake: torch.Tensor, real_label: float, fake_label: float) -> torch.Tensor:
    # BCE(σ(real), t_real) + BCE(σ(fake), t_fake), in the stable logits form
    return (F.binary_cross_entropy_with_logits(real, torch.full_like(real, real_label))
            + F.binary_cross_entropy_with_logits(fake, torch.full_like(fake, fake_label)))


def non_saturating_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()  # -log σ(D(G(z)))


def minimax_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return -F.softplus(fake).mean()  # log(1 - σ(D(G(z)))) = -softplus(D(G(z))); saturates when D wins


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor, real_label: float, fake_label: float) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()  # E[max(0, 1-D(x))] + E[max(0, 1+D(G(z)))]


def critic_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()  # -E[D(G(z))] (hinge and Wasserstein generators)


def least_squares_d_loss(real: torch.Tensor, fake: torch.Tensor, real_label: float, fake_label: float) -> torch.Tensor:
    # ½E[(D(x) - b)²] + ½E[(D(G(z)) - a)²], a = fake target, b = real target (Mao et al. 2017)
    return 0.5 * ((real - real_label).square().mean() + (fake - fake_label).square().mean())


def least_squares_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (fake - 1).square().mean()  # ½E[(D(G(z)) - 1)²]


def wasserstein_d_loss(real: torch.Tensor, fake: torch.Tensor, real_label: float, fake_label: float) -> torch.Tensor:
    return fake.mean() - real.mean()  # E[C(G(z))] - E[C(x)]


# -- what D's outputs mean, per objective (logged; pure tensor work, detached) -----------------

def probability_stats(real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
    # σ(logit) is D's probability that the input is real; accuracy at probability ½
    return {"D/D(x)": torch.sigmoid(real).mean().detach(), "D/D(G(z))": torch.sigmoid(fake).mean().detach(),
            "D/acc_real": (real > 0).float().mean(), "D/acc_fake": (fake < 0).float().mean()}


def least_squares_stats(real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
    # raw outputs regress onto the targets (1 for reals, 0 for fakes); accuracy at the midpoint ½
    return {"D/D(x)": real.mean().detach(), "D/D(G(z))": fake.mean().detach(),
            "D/acc_real": (real > 0.5).float().mean(), "D/acc_fake": (fake < 0.5).float().mean()}


def hinge_stats(real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
    # raw scores; the margins: the share of reals with D(x) < 1 and of fakes with D(G(z)) > -1,
    # the samples that still contribute to D's loss; accuracy by sign
    return {"D/real_score": real.mean().detach(), "D/fake_score": fake.mean().detach(),
            "D/real_in_margin": (real < 1).float().mean(), "D/fake_in_margin": (fake > -1).float().mean(),
            "D/acc_real": (real > 0).float().mean(), "D/acc_fake": (fake < 0).float().mean()}


def critic_stats(real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
    # raw critic values and E[C(x)] − E[C(G(z))], the Wasserstein-1 estimate (the critic's sign means nothing)
    real_mean, fake_mean = real.mean().detach(), fake.mean().detach()
    return {"D/critic_real": real_mean, "D/critic_fake": fake_mean, "D/wasserstein": real_mean - fake_mean}


for _objective in (
    Objective("minimax", bce_d_loss, minimax_g_loss, uses_labels=True, d_stats=probability_stats),
    Objective("non_saturating", bce_d_loss, non_saturating_g_loss, uses_labels=True, d_stats=probability_stats),
    Objective("hinge", hinge_d_loss, critic_g_loss, uses_labels=False, d_stats=hinge_stats),
    Objective("least_squares", least_squares_d_loss, least_squares_g_loss, uses_labels=True,
              d_stats=least_squares_stats),
    Objective("wasserstein", wasserstein_d_loss, critic_g_loss, uses_labels=False, d_stats=critic_stats,
              needs_lipschitz=True),
):
    OBJECTIVES.register(_objective.name)(_objective)
