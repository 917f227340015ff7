"""Fuzz aooct's readers: mutated TIFF, ``.npy``, DICOM, PNG and ``case.json`` under a 2 GiB cap.

Run (one worker process; about 10-20 minutes for 100,000 inputs on a 2-core machine)::

    nice -n 10 .venv/bin/python bench/fuzz_readers.py --inputs 100000 --out /tmp/fuzz-out

Inputs come from the seed corpus and the hostile builders of ``tests/fuzz`` (synthetic,
no patient data), mutated by ``tests/fuzz/fuzz_mutate.py`` with a seeded RNG, so a run
is reproduced by ``--seed``. Each input is read by every reader for its suffix in a
worker whose address space is capped at ``--cap-gib`` (``RLIMIT_AS``). The summary counts
outcomes per reader; anything but ``ok`` / ``input_error`` is a finding, and its input is
saved under ``--out`` (when given) for a regression test. Figures are recorded in
``bench/RESULTS.md`` ("Reader fuzzing (issue 17)").
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))

from fuzz_harness import READERS, CappedReader  # noqa: E402
from fuzz_inputs import fuzz_inputs  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--cap-gib", type=float, default=2.0)
    ap.add_argument("--timeout-s", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=None, help="folder for inputs that failed")
    ap.add_argument("--no-bombs", action="store_true")
    ap.add_argument("--report-every", type=int, default=5000)
    args = ap.parse_args(argv)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    findings: collections.Counter = collections.Counter()
    examples: dict[str, str] = {}
    calls = 0
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    with CappedReader(cap_bytes=int(args.cap_gib * (1 << 30)), timeout_s=args.timeout_s) as cr:
        for i, name, suffix, data, extend_to in fuzz_inputs(args.inputs, args.seed,
                                                            bombs=not args.no_bombs):
            for reader in READERS[suffix]:
                outcome = cr.read(reader, suffix, data, extend_to)
                calls += 1
                counts[reader][outcome.kind if outcome.kind in ("ok", "input_error", "oom",
                                                                 "timeout") else "other"] += 1
                if outcome.kind not in ("ok", "input_error"):
                    findings[outcome.kind] += 1
                    key = f"{reader}: {outcome.kind}"
                    if key not in examples:
                        examples[key] = f"{name}: {outcome.detail}"
                        print(f"new finding: {key} <- {examples[key]}", flush=True)
                        if args.out:
                            safe = name.replace("~", "_").replace("/", "_")
                            (args.out / f"{safe}.{reader}{suffix}").write_bytes(data)
                            if extend_to:
                                (args.out / f"{safe}.{reader}{suffix}.extend_to").write_text(
                                    str(extend_to))
            if (i + 1) % args.report_every == 0:
                print(f"{i + 1} inputs, {calls} calls, {sum(findings.values())} findings, "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
        restarts = cr.restarts
    wall = time.perf_counter() - t0
    print(f"\ninputs: {args.inputs}   reader calls: {calls}   wall: {wall:.0f} s   "
          f"cap: {args.cap_gib:g} GiB   worker restarts: {restarts}")
    print(f"load average at start {load0[0]:.2f}, at end {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} CPUs)")
    print("\n| reader | ok | InputError | other exception | OOM | timeout |")
    print("|---|---|---|---|---|---|")
    for reader, c in sorted(counts.items()):
        print(f"| {reader} | {c['ok']} | {c['input_error']} | {c['other']} | {c['oom']} | "
              f"{c['timeout']} |")
    print("\nfindings by kind:" if findings else "\nfindings: none")
    for kind, n in findings.most_common():
        print(f"  {n:6d}  {kind}")
    for key, example in sorted(examples.items()):
        print(f"  e.g. {key} <- {example}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
