"""Bound the threads of every math library in this process (ROS-free).

A node doing a few small numpy and torch calls per frame gains nothing from a thread pool per
library, and on a busy 2-core machine pays for it: OpenBLAS's idle threads spin-wait after
each call (measured: ~73 % of a core at 30 Hz), and several pools oversubscribe the cores.
Environment variables such as OPENBLAS_NUM_THREADS act only before numpy loads, which a node
cannot guarantee (rclpy's messages load numpy first), so the pools are bounded at run time:
threadpoolctl for the BLAS and OpenMP libraries already loaded (numpy's and scipy's OpenBLAS,
torch's OpenMP), torch's own setters for its intra-op and inter-op pools. onnxruntime takes
its thread count when a session is created (the backend's `threads`).
"""

from __future__ import annotations

import sys


def limit_threads(threads: int) -> dict[str, int]:
    """Bound every loaded math library to `threads` threads (0 = leave their defaults).
    Call it after the libraries are loaded (after the model); returns {library: threads}
    as now set, for a log line."""
    if threads <= 0:
        return {}
    out: dict[str, int] = {}
    try:
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
        controller.limit(limits=threads)
        for info in controller.info():
            out[f"{info['internal_api']} ({info['prefix']})"] = info["num_threads"]
    except ImportError:  # listed in requirements.txt; without it only torch is bounded
        out["threadpoolctl missing: BLAS/OpenMP unbounded"] = 0
    torch = sys.modules.get("torch")  # bounded only when loaded: no import just for this
    if torch is not None:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # settable once, before the first parallel work
            pass
        out["torch"] = torch.get_num_threads()
    return out
