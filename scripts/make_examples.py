"""Writes the example images the page and `ddpm loss` bundle (assets/examples/): the first test
image of each class of Fashion-MNIST (t10k), as IDX (images gzipped, labels plain), from the
files `bash scripts/fetch_data.sh` puts in data/. Standard library only.

    python3 scripts/make_examples.py
"""
import gzip
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "data" / "fashion-mnist"
OUT = ROOT / "assets" / "examples"


def read_idx(path):
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return dims, raw[4 + 4 * ndim :]


def find(name):
    for candidate in (SRC / name, SRC / (name + ".gz")):
        if candidate.exists():
            return candidate
    raise SystemExit(f"{SRC / name}: missing; run `bash scripts/fetch_data.sh`")


def main():
    (n, h, w), pixels = read_idx(find("t10k-images-idx3-ubyte"))
    (_,), labels = read_idx(find("t10k-labels-idx1-ubyte"))
    first = [labels.index(bytes([c])) for c in range(10)]
    images = b"".join(pixels[i * h * w : (i + 1) * h * w] for i in first)
    head = struct.pack(">BBBBIII", 0, 0, 8, 3, len(first), h, w)
    stem = "fashion-t10k-0to9"
    # mtime=0 keeps the gzip bytes reproducible.
    with open(OUT / f"{stem}-images-idx3-ubyte.gz", "wb") as f:
        f.write(gzip.compress(head + images, mtime=0))
    (OUT / f"{stem}-labels-idx1-ubyte").write_bytes(
        struct.pack(">BBBBI", 0, 0, 8, 1, len(first)) + bytes(range(10))
    )
    print(f"wrote {stem}-*: test images {first}")


if __name__ == "__main__":
    main()
