"""threads.limit_threads bounds every loaded math library, also after numpy has started its
OpenBLAS pool (environment variables can no longer do that then). Runs in a fresh interpreter
whose pools start at 2 threads, so a limit that does nothing fails here on any machine."""

import json
import os
import subprocess
import sys

CODE = """
import json, numpy, torch
from threadpoolctl import threadpool_info
from posediff_ros.threads import limit_threads
before = {i["internal_api"]: i["num_threads"] for i in threadpool_info()}
set_ = limit_threads(1)
after = {i["internal_api"]: i["num_threads"] for i in threadpool_info()}
print(json.dumps({"before": before, "after": after, "torch": torch.get_num_threads(),
                  "reported": set_}))
"""


def test_limit_threads_bounds_blas_openmp_and_torch():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert res["before"].get("openblas", res["before"].get("mkl")) == 2  # numpy's BLAS
    assert res["after"] and all(n == 1 for n in res["after"].values())
    assert res["torch"] == 1 and res["reported"]["torch"] == 1


def test_zero_leaves_the_defaults():
    from posediff_ros.threads import limit_threads

    assert limit_threads(0) == {}
