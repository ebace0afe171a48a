"""Signing costs of the signed registry: Ed25519, ML-DSA-65 and the hybrid pair.

Parts (all real: securesystemslib CryptoSigner over cryptography, python-tuf, our servers):
- sign / verify: operations per second of one signature over a 1 KiB payload (the size of a
  timestamp or snapshot metadata), through securesystemslib as TUF and DSSE use it (ML-DSA
  with its pre-hash rule); hybrid = both signatures;
- envelope: a DSSE patch envelope (in-toto statement binding base, target and patch sha256):
  its size, and ``verify_envelope`` time at threshold 1 / 2 (goal: hybrid under 1 ms);
- metadata: the size of a targets role listing 100 files signed by each key set;
- refresh: metadata bytes a client (python-tuf's ngclient, over a counting fetcher) downloads
  for an index of 10,000 files -- a first refresh plus one target lookup, and the refresh after
  one more upload -- with all files in targets.json (bins=0) and with 16 and 256 hash bins
  (TufRepository);
- delta fetch: ``Transport.fetch(v1.1, have=v1.0)`` p50/p99 on loopback over TLS, unsigned
  against signed (``trust=TrustedIndex``: TUF targetinfo + DSSE envelope checked), runs
  alternated so machine load hits both alike (goal: signed p99 within 1.2x unsigned).

    .venv/bin/python benchmarks/bench_signing.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from registry_core.signing import patch_statement, sign_envelope, verify_envelope

PASSPHRASE = "bench-signing"


def _rate(fn: Any, seconds: float) -> tuple[float, float]:
    """(ops per second, median seconds per op) over about ``seconds``."""
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 20:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return 1 / med, med


def _key_sets() -> dict[str, list[CryptoSigner]]:
    ed, pq = CryptoSigner.generate_ed25519(), CryptoSigner.generate_mldsa()
    return {"ed25519": [ed], "ml-dsa-65": [pq], "hybrid": [ed, pq]}


def bench_primitives(seconds: float) -> list[dict[str, Any]]:
    payload = bytes(range(256)) * 4
    rows = []
    for name, signers in _key_sets().items():
        sigs = [s.sign(payload) for s in signers]

        def sign(signers: list[CryptoSigner] = signers) -> None:
            for s in signers:
                s.sign(payload)

        def verify(signers: list[CryptoSigner] = signers, sigs: list[Any] = sigs) -> None:
            for s, sig in zip(signers, sigs, strict=True):
                s.public_key.verify_signature(sig, payload)

        sign_rate, _ = _rate(sign, seconds)
        verify_rate, _ = _rate(verify, seconds)
        statement = patch_statement("demo/demo-1.1-py3-none-any.whl", "a" * 64, "b" * 64, "c" * 64)
        env = sign_envelope(statement, signers)
        keys = {s.public_key.keyid: s.public_key for s in signers}
        _, v1 = _rate(lambda env=env, keys=keys: verify_envelope(env, keys, 1), seconds)
        n_sig = len(signers)
        _, vall = _rate(lambda env=env, keys=keys, n=n_sig: verify_envelope(env, keys, n), seconds)
        md = Metadata(Targets())
        for i in range(100):
            path = f"demo/demo-{i}.0-py3-none-any.whl"
            md.signed.targets[path] = TargetFile.from_data(path, path.encode(), ["sha256"])
        for s in signers:
            md.sign(s, append=True)
        rows.append(
            {
                "keys": name,
                "sign_per_s": sign_rate,
                "verify_per_s": verify_rate,
                "signature_bytes": sum(len(bytes.fromhex(sig.signature)) for sig in sigs),
                "envelope_bytes": len(env),
                "envelope_verify_ms_threshold_1": v1 * 1e3,
                "envelope_verify_ms_all": vall * 1e3,
                "targets_100_files_bytes": len(md.to_bytes()),
            }
        )
    return rows


class _CountingFetcher(FetcherInterface):
    """ngclient fetcher reading a metadata directory, counting the bytes it hands over."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bytes = 0
        self.files: list[str] = []

    def _fetch(self, url: str) -> Any:
        name = url.rsplit("/", 1)[-1]
        path = self.directory / name
        if not path.is_file():
            from tuf.api.exceptions import DownloadHTTPError

            raise DownloadHTTPError(f"{name} not found", 404)
        data = path.read_bytes()
        self.bytes += len(data)
        self.files.append(name)
        return iter([data])


def _refresh(repo: Any, cache: Path, lookup: str) -> tuple[int, list[str]]:
    fetcher = _CountingFetcher(repo.metadata_dir)
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "root.json").exists():
        (cache / "root.json").write_bytes(repo.trusted_root())
    updater = Updater(
        metadata_dir=str(cache),
        metadata_base_url="https://metadata.invalid/",
        target_base_url="https://files.invalid/",
        fetcher=fetcher,
        config=UpdaterConfig(prefix_targets_with_hash=False),
        bootstrap=None,  # the trusted root cached in metadata_dir (written above)
    )
    updater.refresh()
    if updater.get_targetinfo(lookup) is None:
        raise SystemExit(f"ngclient did not find {lookup}")
    return fetcher.bytes, fetcher.files


def bench_refresh(n_files: int, bin_counts: list[int]) -> list[dict[str, Any]]:
    from registry_core.signing import Keyring
    from registry_core.signing._tuf import TufRepository

    rows = []
    for bins in bin_counts:
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            keyring = Keyring(t / "keys", passphrase=PASSPHRASE)
            repo = TufRepository(t / "tuf", keyring, bins=bins, fsync=False)
            repo.init()

            def rec(i: int) -> Any:
                data = f"file {i}".encode()
                return SimpleNamespace(
                    path=f"p{i % 997}/p{i % 997}-{i}.0-py3-none-any.whl",
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                )

            t0 = time.perf_counter()
            repo.add_targets(rec(i) for i in range(n_files))
            publish = time.perf_counter() - t0
            lookup = rec(n_files // 2).path
            first, _ = _refresh(repo, t / "client", lookup)
            t0 = time.perf_counter()
            repo.add_targets([rec(n_files)])
            one_upload = time.perf_counter() - t0
            again, files = _refresh(repo, t / "client", rec(n_files).path)
            rows.append(
                {
                    "bins": bins,
                    "files": n_files,
                    "publish_s": publish,
                    "first_refresh_bytes": first,
                    "update_refresh_bytes": again,
                    "update_refresh_files": files,
                    "one_upload_publish_ms": one_upload * 1e3,
                }
            )
    return rows


def bench_fetch(rounds: int, per_round: int) -> dict[str, Any]:
    import trustme

    from _servers import make_versions
    from registry_core.flags import FeatureFlags
    from registry_core.server import RegistryApp, start_server
    from registry_core.signing import Keyring
    from registry_core.signing._client import PatchEnvelopes, TrustedIndex
    from registry_core.signing._tuf import TufRepository
    from registry_core.transport import Transport

    flags = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "ZSTD_COMPRESSION": True})
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1")
        ca.cert_pem.write_to_path(str(t / "ca.pem"))
        leaf.private_key_pem.write_to_path(str(t / "key.pem"))
        leaf.cert_chain_pems[0].write_to_path(str(t / "cert.pem"))
        keyring = Keyring(t / "keys", passphrase=PASSPHRASE)
        repo = TufRepository(t / "tuf", keyring, bins=16, fsync=False)
        repo.init()
        versions = []
        (t / "reg" / "pkg").mkdir(parents=True)
        for version, wheel in make_versions(2):
            path = f"pkg/pkg-{version}-py3-none-any.whl"
            (t / "reg" / path).write_bytes(wheel)
            versions.append((path, wheel))
        repo.add_targets(
            SimpleNamespace(path=p, size=len(d), sha256=hashlib.sha256(d).hexdigest())
            for p, d in versions
        )
        app = RegistryApp(t / "reg", flags=flags, envelopes=PatchEnvelopes(keyring))
        cert, key, cafile = str(t / "cert.pem"), str(t / "key.pem"), str(t / "ca.pem")
        files = start_server(app, certfile=cert, keyfile=key, quic=False)
        meta = start_server(
            RegistryApp(t / "tuf", patch_store=False), certfile=cert, keyfile=key, quic=False
        )
        try:
            trusted = TrustedIndex(
                repo.trusted_root(),
                f"https://127.0.0.1:{meta.port}/",
                t / "tuf-cache",
                target_base_url=f"https://127.0.0.1:{files.port}/",
                verify=cafile,
            )
            url = f"https://127.0.0.1:{files.port}/{versions[1][0]}"
            have = versions[0][1]

            async def run(trust: Any, n: int) -> list[float]:
                out = []
                async with Transport(verify=cafile, flags=flags, http3=False, trust=trust) as c:
                    data = await c.fetch(url, have=have)  # warm: connection, patch, TUF
                    assert data == versions[1][1]
                    assert c.stats.get("delta_fetches", 1), c.stats
                    for _ in range(n):
                        t0 = time.perf_counter()
                        await c.fetch(url, have=have)
                        out.append(time.perf_counter() - t0)
                return out

            unsigned: list[float] = []
            signed: list[float] = []
            for _ in range(rounds):
                unsigned += asyncio.run(run(None, per_round))
                signed += asyncio.run(run(trusted, per_round))
            trusted.close()
        finally:
            files.stop()
            meta.stop()
            app.close()

    def q(xs: list[float], p: float) -> float:
        s = sorted(xs)
        return s[min(len(s) - 1, int(p * len(s)))] * 1e3

    return {
        "target_bytes": len(versions[1][1]),
        "n": len(signed),
        "unsigned_p50_ms": q(unsigned, 0.5),
        "unsigned_p99_ms": q(unsigned, 0.99),
        "signed_p50_ms": q(signed, 0.5),
        "signed_p99_ms": q(signed, 0.99),
        "p99_ratio": q(signed, 0.99) / q(unsigned, 0.99),
        "p50_ratio": q(signed, 0.5) / q(unsigned, 0.5),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs, 2,000 files")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "signing.json"))
    args = ap.parse_args()
    seconds = 0.3 if args.quick else 1.0
    n_files = 2000 if args.quick else 10_000

    prims = bench_primitives(seconds)
    print("keys       sign/s  verify/s  sig B  envelope B  env verify t=1  t=all  targets(100) B")
    for r in prims:
        print(
            f"{r['keys']:<10} {r['sign_per_s']:>6.0f}  {r['verify_per_s']:>8.0f}  "
            f"{r['signature_bytes']:>5}  {r['envelope_bytes']:>10}  "
            f"{r['envelope_verify_ms_threshold_1']:>11.3f} ms  "
            f"{r['envelope_verify_ms_all']:.3f} ms  {r['targets_100_files_bytes']:>12}"
        )
    refresh = bench_refresh(n_files, [0, 16, 256])
    print(f"\nmetadata per client refresh, {n_files:,} files (ngclient, hybrid keys):")
    print("bins  first refresh + 1 lookup  refresh after 1 upload  publish all  publish 1")
    for r in refresh:
        print(
            f"{r['bins']:>4}  {r['first_refresh_bytes']:>22,} B  "
            f"{r['update_refresh_bytes']:>20,} B  {r['publish_s']:>9.2f} s  "
            f"{r['one_upload_publish_ms']:>7.1f} ms"
        )
    fetch = bench_fetch(rounds=2 if args.quick else 4, per_round=15 if args.quick else 40)
    print(
        f"\ndelta fetch of a {fetch['target_bytes']:,} B wheel on loopback (TLS, h2), "
        f"n={fetch['n']} each: unsigned p50 {fetch['unsigned_p50_ms']:.2f} ms p99 "
        f"{fetch['unsigned_p99_ms']:.2f} ms; signed p50 {fetch['signed_p50_ms']:.2f} ms p99 "
        f"{fetch['signed_p99_ms']:.2f} ms; p99 ratio {fetch['p99_ratio']:.2f} "
        f"(goal <= 1.2), p50 ratio {fetch['p50_ratio']:.2f}"
    )
    out = {"primitives": prims, "refresh": refresh, "delta_fetch": fetch, "quick": args.quick}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
