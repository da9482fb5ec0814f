#!/usr/bin/env python3
"""Writes the embedded Fashion-MNIST sample (kd-plugins/data/fashion-mnist-sample/):
the first 10,000 training images and all 10,000 test images, as gzipped IDX
files cut into pieces of at most 1.9 MB (`NAME.gz.0`, `NAME.gz.1`, ...: the
repository keeps no file over 2 MiB; the pieces joined are the gzip file).
Reads Debian's `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist),
or the folder given as the first argument. Standard library only; the output
bytes depend only on the input (gzip mtime 0).
"""
import gzip
import struct
import sys
from pathlib import Path

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).resolve().parent / "fashion-mnist-sample"
TRAIN_IMAGES = 10_000
PIECE = 1_900_000  # bytes


def read(name):
    return gzip.decompress((SRC / f"{name}.gz").read_bytes())


def first(idx, n):
    magic, count = struct.unpack(">II", idx[:8])
    rank = magic & 0xFF
    dims = struct.unpack(f">{rank}I", idx[4:4 + 4 * rank])
    per_item = 1
    for d in dims[1:]:
        per_item *= d
    header = struct.pack(f">I{rank}I", magic, n, *dims[1:])
    start = 4 + 4 * rank
    return header + idx[start:start + n * per_item]


def write(name, data):
    packed = gzip.compress(data, compresslevel=9, mtime=0)
    for old in OUT.glob(f"{name}.gz*"):
        old.unlink()
    for i in range(0, len(packed), PIECE):
        (OUT / f"{name}.gz.{i // PIECE}").write_bytes(packed[i:i + PIECE])


def main():
    OUT.mkdir(exist_ok=True)
    for name, n in [("train-images-idx3-ubyte", TRAIN_IMAGES), ("train-labels-idx1-ubyte", TRAIN_IMAGES),
                    ("t10k-images-idx3-ubyte", None), ("t10k-labels-idx1-ubyte", None)]:
        data = read(name)
        write(name, data if n is None else first(data, n))
    pieces = sorted(OUT.glob("*.gz.*"))
    total = sum(p.stat().st_size for p in pieces)
    print(f"wrote {OUT}: {total:,} bytes in {len(pieces)} pieces: {' '.join(p.name for p in pieces)}")


if __name__ == "__main__":
    main()
