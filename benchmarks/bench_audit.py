"""Audit log costs at scale: append, proofs, checkpoints and full verification at 1 M entries.

Parts (all real: the AuditLog on the local file system, a Keyring with an Ed25519 + ML-DSA-65
pair):
- append: amortized time per ``AuditLog.emit`` of a realistic audit event (canonical JSON,
  ~200 bytes) over the whole run, including the fsync'd tail batches and the tile and bundle
  files written every 256 entries (goal: under 0.1 ms at 1 M entries);
- proofs at the final size: inclusion proofs of random entries and consistency proofs from
  random older sizes, p50 / p99 (goal: under 1 ms), wall time and the thread's CPU time (on a
  shared machine the wall-time p99 is mostly other processes). The default caches (16 MiB of
  expanded level-0 tiles, about 1,000 of the 3,906 at 1 M entries; the upper levels resident)
  make most random proofs cold: one tile read with one pread and expanded (255 SHA-256);
- checkpoint: signing one (both signatures, partial tiles written);
- verify: ``verify_log`` of the whole directory (every entry re-hashed), entries per second
  (skipped with ``--no-verify``).

    .venv/bin/python benchmarks/bench_audit.py [--entries N] [--quick] [--json PATH]

G folds the append and proof figures into benchmarks/bench_scale.py's table.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from registry_core.audit import AuditEvent, AuditLog, verifiers_from_keyring, verify_log
from registry_core.signing import Keyring

ORIGIN = "registry.example/acme"


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def run(entries: int, proofs: int, do_verify: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"entries": entries}
    with tempfile.TemporaryDirectory(prefix="rc-bench-audit-") as d:
        keyring = Keyring(Path(d) / "keys", insecure_plaintext=True)
        keyring.generate_hybrid("audit")
        path = Path(d) / "audit"
        log = AuditLog(path, origin=ORIGIN, keyring=keyring, checkpoint_every=None)
        events = [
            AuditEvent(
                kind="upload",
                tenant="acme",
                subject=f"user:u{i % 97}",
                outcome="ok",
                action="upload",
                resource=f"main/project-{i % 1013}",
                detail={"filename": f"project-{i % 1013}-1.{i}.tar.gz", "sha256": "ab" * 32},
                time_ns=1_700_000_000_000_000_000 + i,
            )
            for i in range(min(entries, 10_000))
        ]
        t0 = time.perf_counter()
        for i in range(entries):
            log.emit(events[i % len(events)])
        append_s = time.perf_counter() - t0
        assert len(log) == entries
        out["append_us_amortized"] = append_s / entries * 1e6
        print(
            f"append: {entries:,} entries in {append_s:.1f} s: "
            f"{out['append_us_amortized']:.1f} us each"
        )

        rng = random.Random(15)
        size = len(log)
        log.sync()  # the proofs measured alone, not against the append run's last flush
        misses0 = log._tiles.misses
        for name, make in (
            ("inclusion", lambda: log.inclusion_proof(rng.randrange(size))),
            ("consistency", lambda: log.consistency_proof(rng.randint(1, size))),
        ):
            wall, cpu = [], []
            for _ in range(proofs):
                t, c = time.perf_counter(), time.thread_time()
                make()
                cpu.append((time.thread_time() - c) * 1e6)
                wall.append((time.perf_counter() - t) * 1e6)
            out[f"{name}_us"] = {"p50": statistics.median(wall), "p99": _pct(wall, 99)}
            out[f"{name}_cpu_us"] = {"p50": statistics.median(cpu), "p99": _pct(cpu, 99)}
            print(
                f"{name} proof at {size:,}: p50 {out[f'{name}_us']['p50']:.0f} us, "
                f"p99 {out[f'{name}_us']['p99']:.0f} us (CPU p50 "
                f"{out[f'{name}_cpu_us']['p50']:.0f} us, p99 {out[f'{name}_cpu_us']['p99']:.0f} us)"
            )
        per = out["level0_tiles_expanded_per_proof"] = (log._tiles.misses - misses0) / (2 * proofs)
        print(f"level-0 tiles read and expanded per proof: {per:.2f}")
        t = time.perf_counter()
        log.checkpoint()
        out["checkpoint_ms"] = (time.perf_counter() - t) * 1e3
        print(f"checkpoint (Ed25519 + ML-DSA-65, partial tiles): {out['checkpoint_ms']:.1f} ms")
        t = time.perf_counter()
        log.close()
        reopened = AuditLog(path, origin=ORIGIN, keyring=keyring, checkpoint_every=None)
        out["reopen_ms"] = (time.perf_counter() - t) * 1e3
        reopened.close()
        print(f"close + reopen (recovery checks): {out['reopen_ms']:.0f} ms")
        if do_verify:
            keys = verifiers_from_keyring(keyring, ORIGIN)
            t = time.perf_counter()
            report = verify_log(path, keys=keys)
            verify_s = time.perf_counter() - t
            assert report.ok, report.problems[:5]
            out["verify_entries_per_s"] = entries / verify_s
            print(f"verify_log: {verify_s:.1f} s, {out['verify_entries_per_s']:,.0f} entries/s")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--proofs", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="100,000 entries, 500 proofs")
    ap.add_argument("--no-verify", action="store_true", help="skip the full verify_log")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "audit.json"))
    args = ap.parse_args()
    entries, proofs = (100_000, 500) if args.quick else (args.entries, args.proofs)
    out = run(entries, proofs, not args.no_verify)
    out["goals"] = {
        "append_under_100us": out["append_us_amortized"] < 100,
        "proofs_under_1ms": out["inclusion_us"]["p99"] < 1000
        and out["consistency_us"]["p99"] < 1000,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
