"""Does ganrun's FID rank runs the way independent feature networks do? (issue 13)

    python -m benchmarks.fid_ranking runs/a runs/b runs/c ... [--out ranking.json] [--num-samples 10000]

ganrun's `fid10k/domain` measures in the features of its own domain classifier (a small CNN
trained on the dataset). A metric that only agreed with itself would be worthless, so this
scores every given run (a run dir or checkpoint; each its EMA G) three ways, on the same 10k
samples (ganrun's evaluation inputs: seed 0, class-major labels for a conditional G):

(a) ganrun's fid10k/domain, exactly as `ganrun eval` computes it;
(b) FID in the penultimate features of an independent classifier: an MLP on raw pixels (no
    convolutions, another width, seed and schedule), trained here on the train split;
(c) FID on raw pixels projected to the test split's first 64 principal components (no
    learning from labels at all).

It prints the table and Spearman's rank correlation and Kendall's tau of (a) with (b) and (c)
(scipy.stats). All runs must share dataset and resolution. Neither network is tuned to the
generators: their recipes are fixed here, before any run is scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import nn

from ganrun import metrics as M
from ganrun.config.schema import EvalConfig
from ganrun.data import build_dataset
from ganrun.errors import UserError
from ganrun.evaluation import Evaluator
from ganrun.evaluation.extract import to_signed_unit_range
from ganrun.runtime import generate, sample_inputs
from ganrun.train.loaded import load_run

PCA_DIM = 64
MLP_SEED = 1234  # not the domain classifier's


class PixelMLP(nn.Module):
    """784 (or C·H·W) → 1024 → 256 → classes, ReLU; features: the 256-wide layer."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(dim, 1024), nn.ReLU(), nn.Linear(1024, 256), nn.ReLU())
        self.head = nn.Linear(256, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def fit_mlp(images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int = 4) -> PixelMLP:
    gen = torch.Generator().manual_seed(MLP_SEED)
    torch.manual_seed(MLP_SEED)
    x = to_signed_unit_range(images)
    model = PixelMLP(x[0].numel(), num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            loss = nn.functional.cross_entropy(model(x[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def mlp_features(model: PixelMLP, images: torch.Tensor) -> np.ndarray:
    x = to_signed_unit_range(images)
    return torch.cat([model.features(b) for b in x.split(1000)]).double().numpy()


@dataclass
class PCA:
    mean: np.ndarray
    basis: np.ndarray  # (D, k)

    @classmethod
    def fit(cls, images: torch.Tensor, k: int = PCA_DIM) -> "PCA":
        x = to_signed_unit_range(images).flatten(1).double().numpy()
        mean = x.mean(0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        return cls(mean, vt[:k].T)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        return (to_signed_unit_range(images).flatten(1).double().numpy() - self.mean) @ self.basis


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run dirs or checkpoints (their EMA G is scored)")
    ap.add_argument("--out", type=Path, help="write the table and correlations as JSON here")
    ap.add_argument("--num-samples", type=int, default=EvalConfig.num_samples,
                    help="samples per run, and test images in the reference (default: ganrun's 10k)")
    args = ap.parse_args(argv)
    try:
        return rank(args)
    except UserError as exc:  # a missing or foreign checkpoint, missing data: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2


def rank(args: argparse.Namespace) -> int:
    device = torch.device("cpu")
    cfg = EvalConfig(num_samples=args.num_samples)
    loaded = [load_run(r, device) for r in args.runs]
    shapes = {(run.spec.name, tuple(run.spec.shape)) for run in loaded}
    if len(shapes) != 1:
        print(f"error: the runs must share dataset and resolution; got {sorted(shapes)}", file=sys.stderr)
        return 2
    first = loaded[0]
    evaluator = Evaluator(cfg, first.dataset_cfg, first.spec, device)
    train = build_dataset(first.dataset_cfg, split="train")
    test = build_dataset(first.dataset_cfg, split="test")
    reals = test.data[: cfg.num_samples]
    print(f"fitting the pixel MLP on {len(train.data):,} train images ...", flush=True)
    mlp = fit_mlp(train.data, train.labels, first.spec.num_classes)
    with torch.no_grad():
        acc = float((mlp(to_signed_unit_range(test.data)).argmax(1) == test.labels).float().mean())
    pca = PCA.fit(reals)
    real_mlp, real_pca = mlp_features(mlp, reals), pca(reals)
    other = train.data[: len(reals)]  # the floor: real train images against the test reference
    floor = {"fid_domain": evaluator.floor()[evaluator.name("fid")],
             "fid_pixel_mlp": M.fid_from_features(real_mlp, mlp_features(mlp, other)),
             "fid_pixel_pca64": M.fid_from_features(real_pca, pca(other))}
    print(f"{'domain':>9} {'pixel MLP':>9} {'PCA-64':>9}  run (FID, 10k samples vs the test split)")
    print(f"{floor['fid_domain']:9.2f} {floor['fid_pixel_mlp']:9.3f} {floor['fid_pixel_pca64']:9.3f}  "
          "real train images (the floor)", flush=True)
    rows = []
    for path, run in zip(args.runs, loaded):
        z, labels = sample_inputs(cfg.num_samples, run.G.latent_dim, run.G.num_classes, cfg.seed)
        fakes = generate(run.G, z, labels, cfg.batch_size, to=device)
        domain = evaluator.evaluate(run.G)[evaluator.name("fid")]
        row = {"run": str(path), "step": run.step, "fid_domain": domain,
               "fid_pixel_mlp": M.fid_from_features(real_mlp, mlp_features(mlp, fakes)),
               "fid_pixel_pca64": M.fid_from_features(real_pca, pca(fakes))}
        rows.append(row)
        print(f"{row['fid_domain']:9.2f} {row['fid_pixel_mlp']:9.3f} {row['fid_pixel_pca64']:9.3f}  {path}", flush=True)
    domain = [r["fid_domain"] for r in rows]
    out = {"pixel_mlp_test_accuracy": acc, "floor": floor, "runs": rows}
    for other in ("fid_pixel_mlp", "fid_pixel_pca64"):
        values = [r[other] for r in rows]
        out[other] = {"spearman": float(stats.spearmanr(domain, values).statistic),
                      "kendall_tau": float(stats.kendalltau(domain, values).statistic)}
    print(f"pixel MLP test accuracy {acc:.2%}; {len(rows)} runs")
    for other in ("fid_pixel_mlp", "fid_pixel_pca64"):
        print(f"fid10k/domain against {other}: Spearman {out[other]['spearman']:.3f}, "
              f"Kendall tau {out[other]['kendall_tau']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
