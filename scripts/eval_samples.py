#!/usr/bin/env python3
"""Scores generated MNIST / Fashion-MNIST samples with a small CNN classifier.

Usage:
  ./target/release/ddpm sample --model runs/mnist-cond --n 1000 --sampler ddim --steps 50 \\
      --out /tmp/s.png --npy /tmp/s.npy
  /opt/dvenv/bin/python scripts/eval_samples.py --data mnist --samples /tmp/s.npy --labels cycle
  /opt/dvenv/bin/python scripts/eval_samples.py --data mnist --real 1000
  /opt/dvenv/bin/python scripts/eval_samples.py --data fashion-mnist --samples s.npy \\
      --labels none --json s.json

Inputs: `--samples FILE.npy`, float32 N×1×28×28 in [-1, 1] as `ddpm sample --npy` writes them
(clipped to [-1, 1]), or `--real N`, N random training images (the baseline). Labels for
`--samples`: `cycle` (image i is class i % 10, what `ddpm sample` draws without --class), `K`
(every image is class K), `FILE.npy` (N class indices) or `none` (unconditional model).

Figures:
  fd         Fréchet distance between the classifier's 128-d penultimate features of the
             samples and of the 10,000 test images. It is *not* Inception FID (not comparable
             to published numbers), and it is biased by N: the fewer samples, the larger the
             FD. Always report it with N and next to `--real N` at the same N.
  accuracy   fraction whose predicted class is the label (not with `--labels none`).
  confident  fraction whose top softmax probability exceeds 0.9.
  per class  accuracy per label class, and a histogram of the predicted classes with its
             normalised entropy (1: every class equally often).

The classifier (conv 32 → pool → conv 64 → pool → fc 128 → fc 10) is trained on first use with a
fixed seed (3 epochs, 5-10 minutes on 2 CPU threads) and cached with the test-set feature
statistics in DATA_DIR/eval/DATASET-classifier.pt; a cache whose key (format, architecture,
training settings, data) differs is retrained.
Data: DATA_DIR/{mnist,fashion-mnist}/*-ubyte[.gz], as `bash scripts/fetch_data.sh` fetches them.
"""

import argparse
import functools
import gzip
import hashlib
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DATASETS = ("mnist", "fashion-mnist")
CACHE_FORMAT = 1
TRAIN = {"seed": 0, "epochs": 3, "batch": 128, "lr": 2e-3, "lr_schedule": "cosine", "dropout": 0.25}
CONFIDENT = 0.9
NUM_CLASSES = 10


def fail(msg):
    sys.exit(f"error: {msg}")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- data ---------------------------------------------------------------------------------


def read_idx(path):
    """An IDX file (plain or gzipped) as a uint8 array."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\0\0\x08":
        fail(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != 4 + 4 * ndim + math.prod(dims):
        fail(f"{path}: truncated or corrupt (run `bash scripts/fetch_data.sh`)")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@functools.lru_cache
def load_split(data_dir, dataset, split):
    """(images N×28×28 uint8, labels N uint8) of `train` or `t10k`."""
    def find(stem):
        for name in (stem, stem + ".gz"):
            if (data_dir / dataset / name).is_file():
                return data_dir / dataset / name
        fail(f"{data_dir / dataset / stem}[.gz] not found: run `bash scripts/fetch_data.sh`")

    images = read_idx(find(f"{split}-images-idx3-ubyte"))
    labels = read_idx(find(f"{split}-labels-idx1-ubyte"))
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        fail(f"{data_dir / dataset}: unexpected {split} shapes {images.shape}, {labels.shape}")
    return images, labels


def to_input(images):
    """uint8 N×28×28 → float32 N×1×28×28 in [-1, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)


# --- classifier ---------------------------------------------------------------------------


class Classifier(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(128, NUM_CLASSES))

    def forward(self, x):
        return self.head(self.features(x))


def train_classifier(x, y):
    torch.manual_seed(TRAIN["seed"])
    model = Classifier(TRAIN["dropout"])
    opt = torch.optim.Adam(model.parameters(), lr=TRAIN["lr"])
    steps = TRAIN["epochs"] * math.ceil(len(x) / TRAIN["batch"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    start = time.time()
    model.train()
    for epoch in range(TRAIN["epochs"]):
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), TRAIN["batch"]):
            idx = perm[i : i + TRAIN["batch"]]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            total += loss.item() * len(idx)
        log(f"  epoch {epoch + 1}/{TRAIN['epochs']}: loss {total / len(x):.4f} "
            f"({time.time() - start:.0f} s)")
    return model.eval()


@torch.inference_mode()
def embed(model, x, batch=1000):
    """(logits N×10, features N×128) as float64 numpy arrays."""
    logits, feats = [], []
    for i in range(0, len(x), batch):
        f = model.features(x[i : i + batch])
        feats.append(f)
        logits.append(model.head(f))
    return torch.cat(logits).double().numpy(), torch.cat(feats).double().numpy()


def gaussian(feats):
    return feats.mean(0), np.cov(feats, rowvar=False)


def cache_key(train, test):
    settings = {"format": CACHE_FORMAT, "model": repr(Classifier(TRAIN["dropout"])), **TRAIN}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for a in (*train, *test):
        h.update(a.tobytes())
    return h.hexdigest()


def load_reference(data_dir, dataset):
    """(classifier, test accuracy, test feature mean, covariance), trained and cached if needed."""
    train, test = load_split(data_dir, dataset, "train"), load_split(data_dir, dataset, "t10k")
    key = cache_key(train, test)
    path = data_dir / "eval" / f"{dataset}-classifier.pt"
    cache = {}
    if path.is_file():
        try:
            cache = torch.load(path, weights_only=True)
        except Exception as e:  # unreadable cache: retrain
            log(f"{path}: unreadable ({type(e).__name__}: {e}); retraining")
    if cache.get("key") == key:
        model = Classifier(TRAIN["dropout"])
        model.load_state_dict(cache["state_dict"])
        return model.eval(), cache["test_accuracy"], cache["mu"].numpy(), cache["sigma"].numpy()
    if cache:
        log(f"{path}: stale (settings or data changed); retraining")

    log(f"training the {dataset} classifier ({TRAIN['epochs']} epochs on {len(train[0])} images)")
    model = train_classifier(to_input(train[0]), torch.from_numpy(train[1].astype(np.int64)))
    logits, feats = embed(model, to_input(test[0]))
    accuracy = float((logits.argmax(1) == test[1]).mean())
    mu, sigma = gaussian(feats)
    log(f"classifier test accuracy: {100 * accuracy:.2f} %")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "state_dict": model.state_dict(), "test_accuracy": accuracy,
                "mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma)}, tmp)
    tmp.replace(path)
    return model, accuracy, mu, sigma


# --- metrics ------------------------------------------------------------------------------


def trace_sqrt_product(s1, s2):
    """tr(sqrtm(s1 @ s2)) for covariance matrices s1, s2."""
    try:
        from scipy.linalg import LinAlgWarning, sqrtm
    except ImportError:
        # s1 @ s2 is similar to r @ s2 @ r with r = s1^½ (symmetric PSD), so its square root's
        # trace is the sum of the square roots of that matrix's eigenvalues.
        w, v = np.linalg.eigh(s1)
        r = (v * np.sqrt(w.clip(min=0))) @ v.T
        return float(np.sqrt(np.linalg.eigvalsh(r @ s2 @ r).clip(min=0)).sum())
    with warnings.catch_warnings():  # singular (rank < 128 or dead features) is expected
        warnings.simplefilter("ignore", LinAlgWarning)
        root = sqrtm(s1 @ s2)
        if not np.isfinite(root).all():  # regularise as pytorch-fid does
            eps = 1e-6 * np.eye(len(s1))
            root = sqrtm((s1 + eps) @ (s2 + eps))
    if np.iscomplexobj(root):
        if abs(root.imag).max() > 1e-3:
            log(f"warning: sqrtm has imaginary parts up to {abs(root.imag).max():.2g}")
        root = root.real
    return float(np.trace(root))


def frechet_distance(mu1, s1, mu2, s2):
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2))


def evaluate(model, x, labels, ref_mu, ref_sigma):
    logits, feats = embed(model, x)
    probs = torch.from_numpy(logits).softmax(1).numpy()
    pred = probs.argmax(1)
    hist = np.bincount(pred, minlength=NUM_CLASSES)
    freq = hist[hist > 0] / len(pred)
    report = {
        "fd": frechet_distance(*gaussian(feats), ref_mu, ref_sigma),
        "accuracy": None,
        "confident": float((probs.max(1) > CONFIDENT).mean()),
        "per_class": None,
        "pred_hist": hist.tolist(),
        "pred_balance": float((freq * np.log(1 / freq)).sum() / math.log(NUM_CLASSES)),
    }
    if labels is not None:
        report["accuracy"] = float((pred == labels).mean())
        report["per_class"] = per_class(pred, labels)
    return report


def per_class(pred, labels):
    out = {}
    for k in range(NUM_CLASSES):
        mine = labels == k
        accuracy = float((pred[mine] == k).mean()) if mine.any() else None
        out[str(k)] = {"n": int(mine.sum()), "accuracy": accuracy}
    return out


# --- inputs -------------------------------------------------------------------------------


def load_npy(path, what):
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            fail(f"{what}: not a .npy file")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        fail(f"{what}: cannot read as .npy ({e})")


def load_samples(path):
    """float32 N×1×28×28 tensor in [-1, 1] from a `ddpm sample --npy` file."""
    x = load_npy(path, path)
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
        fail(f"{path}: shape {x.shape}, expected N×1×28×28 (as `ddpm sample --npy` writes)")
    if not np.issubdtype(x.dtype, np.floating):
        fail(f"{path}: dtype {x.dtype}, expected float samples in [-1, 1]")
    if not np.isfinite(x).all():
        fail(f"{path}: contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0 or hi > 1.5 or lo < -1.5:
        log(f"warning: {path}: values span [{lo:.3g}, {hi:.3g}]; expected [-1, 1]")
    return torch.from_numpy(np.clip(x, -1, 1).astype(np.float32))


def parse_labels(spec, n):
    """(labels N int64 or None, description) from a --labels value."""
    if spec == "none":
        return None, "none"
    if spec == "cycle":
        return np.arange(n) % NUM_CLASSES, "cycle"
    if spec.isdigit():
        if int(spec) >= NUM_CLASSES:
            fail(f"--labels {spec}: a class is 0..{NUM_CLASSES - 1}")
        return np.full(n, int(spec)), f"class {spec}"
    if not Path(spec).is_file():
        fail(f"--labels {spec}: not cycle, none, a class 0..9 or an existing .npy file")
    y = load_npy(spec, f"--labels {spec}")
    if y.ndim != 1 or len(y) != n:
        fail(f"--labels {spec}: shape {y.shape}, expected ({n},) (one label per sample)")
    if not np.issubdtype(y.dtype, np.number) or (y != np.round(y)).any():
        fail(f"--labels {spec}: labels must be integers (dtype {y.dtype})")
    if y.min() < 0 or y.max() >= NUM_CLASSES:
        fail(f"--labels {spec}: labels span {y.min()}..{y.max()}, expected 0..{NUM_CLASSES - 1}")
    return y.astype(np.int64), f"file {spec}"


def real_images(data_dir, dataset, n, seed):
    images, labels = load_split(data_dir, dataset, "train")
    if not 2 <= n <= len(images):
        fail(f"--real {n}: expected 2..{len(images)}")
    idx = np.random.default_rng(seed).choice(len(images), n, replace=False)
    return to_input(images[idx]), labels[idx].astype(np.int64)


# --- report -------------------------------------------------------------------------------


def pct(v):
    return "-" if v is None else f"{100 * v:.2f} %"


def print_table(r):
    accuracy = pct(r["classifier_test_accuracy"])
    print(f"dataset     {r['dataset']}  (classifier test accuracy {accuracy})")
    print(f"source      {r['source']}  (N = {r['n']}, labels: {r['labels']})")
    print(f"fd          {r['fd']:.3f}  (biased by N: compare with --real {r['n']})")
    print(f"accuracy    {pct(r['accuracy'])}")
    print(f"confident   {pct(r['confident'])}  (max softmax > {CONFIDENT})")
    print(f"balance     {r['pred_balance']:.3f}  (normalised entropy of the predicted classes)")
    print("class      n   accuracy  predicted")
    for k in range(NUM_CLASSES):
        pc = r["per_class"][str(k)] if r["per_class"] else {"n": "-", "accuracy": None}
        print(f"{k:>5} {pc['n']:>6} {pct(pc['accuracy']):>10} {r['pred_hist'][k]:>10}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=DATASETS, default="mnist")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(__file__).resolve().parent.parent / "data",
                        help="holds mnist/ and fashion-mnist/ (default: <repo>/data)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", type=Path, help="NCHW float32 .npy from `ddpm sample --npy`")
    src.add_argument("--real", type=int, metavar="N", help="baseline: N random training images")
    parser.add_argument("--labels",
                        help="with --samples: cycle (default), none, a class K, or FILE.npy")
    parser.add_argument("--seed", type=int, default=0, help="which images --real draws")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(2)

    if args.samples is not None:
        if not args.samples.is_file():
            fail(f"{args.samples}: no such file")
        x = load_samples(args.samples)
        labels, label_mode = parse_labels(args.labels or "cycle", len(x))
        source = str(args.samples)
        if len(x) < 2:
            fail(f"{args.samples}: {len(x)} sample(s); the FD needs at least 2")
    else:
        if args.labels is not None:
            parser.error("--labels: --real uses the images' own labels")
        x, labels = real_images(args.data_dir, args.data, args.real, args.seed)
        label_mode, source = "real", f"real training images (seed {args.seed})"

    model, test_accuracy, mu, sigma = load_reference(args.data_dir, args.data)
    report = {"dataset": args.data, "source": source, "n": len(x), "labels": label_mode,
              "classifier_test_accuracy": test_accuracy,
              **evaluate(model, x, labels, mu, sigma)}
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
