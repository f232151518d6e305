"""A FAISS search must not change the thread count of torch (or of anything sized from it, like ONNX Runtime).

FAISS and torch share one OpenMP runtime; faiss.omp_set_num_threads(1) for a single-query search used to leave
the calling thread at one core for all later generation, scoring and embedding. Runs in a fresh interpreter so
the import order (torch first, as in the app) and the OpenMP state are those of a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, threading
    import numpy as np
    import torch
    import onnxruntime
    from retrieval.indexes import SearchIndex

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((500, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = SearchIndex.build(np.arange(500), vecs, [f"chunk {i}" for i in range(500)])

    def counts():
        info = torch.__config__.parallel_info()
        omp = [line for line in info.splitlines() if "omp_get_max_threads" in line][0]
        return torch.get_num_threads(), int(omp.split(":")[-1])

    out = {"before": counts()}
    index.search_dense(vecs[:1], 5)
    out["after_one"] = counts()
    index.search_dense(vecs[:32], 5)
    out["after_batch"] = counts()
    # An ONNX Runtime session made after a search is sized from torch's count (retrieval/embedding.py).
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    out["onnx_threads"] = opts.intra_op_num_threads
    seen = {}
    worker = threading.Thread(target=lambda: (index.search_dense(vecs[:1], 5), seen.update(w=counts())))
    worker.start(); worker.join()
    out["worker_after_one"] = seen["w"]
    out["main_after_worker"] = counts()
    print(json.dumps(out))
""")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to see a thread count drop to 1")
def test_dense_search_leaves_torch_and_onnx_thread_counts_alone():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] == [2, 2]
    for key in ("after_one", "after_batch", "worker_after_one", "main_after_worker"):
        assert out[key] == [2, 2], (key, out)
    assert out["onnx_threads"] == 2
