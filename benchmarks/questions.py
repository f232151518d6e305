"""Questions benchmark: what the heading/definition heuristic and the question generator make of documents that
are NOT a FAQ.

Corpus: five pages of the Click 8.1.7 documentation (docs/{quickstart,options,prompts,testing,utils}.rst of the
source distribution on PyPI;
BSD-3-Clause, copyright 2014 Pallets; not written for this project), fetched once with
`pip download --no-deps --no-binary :all: click==8.1.7` into the cache folder and ingested like any upload.

What runs: the heuristic (training/builders.draw_from_sections: kept and dropped as malformed), then the
generator (assistant/decide/questions.generated_sets, the code `arena decide --generator` runs) with the bundled
SmolLM2-135M as generator ("base", the in-process engine), N questions with the decide split (30 % of the
sections held out). Prints, and writes as JSON: how many each filter dropped and kept, ten kept questions with
their answers, the retrieval round-trip (difficulty statistic), and the time taken. The replies are cached in
the data folder's row cache, so a second run only re-filters (pass --fresh for a new data folder).

Run: .venv/bin/python benchmarks/questions.py [--questions 40] [--generator base|openai:URL:MODEL] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLICK = "click==8.1.7"
PAGES = ("quickstart", "options", "prompts", "testing", "utils")
PREFIX = "click-8.1.7/docs/"


def fetch_docs(cache: Path) -> Path:
    """The chosen pages as .rst files in cache/click-docs (pip download of the sdist once)."""
    out = cache / "click-docs"
    if all((out / f"{p}.rst").is_file() for p in PAGES):
        return out
    sdist = cache / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", CLICK,
                    "-d", str(sdist)], check=True, capture_output=True)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(next(sdist.glob("click-8.1.7.tar.gz"))) as tar:
        for page in PAGES:
            (out / f"{page}.rst").write_bytes(tar.extractfile(PREFIX + page + ".rst").read())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--generator", default="base")
    ap.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "arena-questions-bench"))
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from assistant.decide.config import DecideConfig
    from assistant.decide.questions import generated_sets
    from assistant.runtime import Runtime
    from foundation.settings import Settings
    from retrieval.ingest import ingest_paths
    from training.builders import draw_from_sections

    data = Path(args.data_dir)
    docs = fetch_docs(data / "cache")
    rt = Runtime(Settings(data_dir=data, model="bundled:smollm2-135m", device="cpu"))
    ingest_paths(rt.store, sorted(docs.glob("*.rst")))
    sections = rt.store.sections()
    drawn = draw_from_sections(sections)
    print(f"{len(sections)} sections in {len(PAGES)} pages; heuristic: {len(drawn.kept)} kept, "
          f"{drawn.dropped} dropped as malformed {drawn.malformed}", flush=True)
    cfg = DecideConfig(docs=[str(docs)], generator=args.generator, questions=args.questions)
    rt.engine  # noqa: B018 (load and convert the model before the clock starts: decide's ingest stage pays it)
    started = time.time()

    def progress(done: int, total: int) -> None:
        print(f"  {done}/{total} questions written, {time.time() - started:.0f} s", flush=True)

    got = generated_sets(cfg, rt, sections, progress=progress)
    seconds = time.time() - started
    kept = got.evals + got.pool
    result = {"corpus": f"{CLICK} docs/{{{','.join(PAGES)}}}.rst (BSD-3-Clause)", "sections": len(sections),
              "heuristic": {"kept": len(drawn.kept), "malformed": drawn.malformed,
                            "sample": [ex.question() for ex in drawn.kept[:10]]},
              "generator": args.generator, "seconds": round(seconds, 1), "eval": len(got.evals),
              "train": len(got.pool), **{k: v for k, v in got.info.items() if k != "held_out_sections"},
              "sample": kept[:10]}
    print(json.dumps(result, indent=1, ensure_ascii=False))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
