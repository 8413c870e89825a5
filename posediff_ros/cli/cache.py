"""posediff-cache: build a training cache (npz shards) of generated objects (data/cache.py)
or, with --dataset, from data sets on disk mixed with generated objects
(data/dataset_cache.py).

    posediff-cache --out DIR --objects N --seed S [--workers W]             generated
    posediff-cache --out DIR --dataset D [--dataset D2] --generated-fraction F   data sets
"""

from __future__ import annotations

import sys

from ..data import cache, dataset_cache


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--dataset" or a.startswith("--dataset=") for a in argv):
        dataset_cache.main(argv)
        return
    if "-h" in argv or "--help" in argv:
        print(__doc__)
    cache.main(argv)


if __name__ == "__main__":
    main()
