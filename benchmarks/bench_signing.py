"""Benchmark: request tokens signed and verified per second (fedproto.tokens).

Run: .venv/bin/python benchmarks/bench_signing.py [--seconds 3]
Prints one machine-readable summary line. The baseline in the same run is a bare
Ed25519 sign/verify of the same bytes, so the ratio shows what the JWT layer costs.
"""

from __future__ import annotations

import argparse
import time

from fedproto.clock import SystemClock
from fedproto.keys import KeyRing, PrivateKey
from fedproto.replay import ReplayCache
from fedproto.tokens import sign_request, verify_request


def _rate(fn, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            fn()
        count += 100
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    ring, clock = KeyRing([PrivateKey.generate()]), SystemClock()
    keys, body = ring.public_set(), b'{"provider": "gh", "spec": "org/repo/HEAD"}'
    common = dict(method="POST", path_qs="/api/v1/launches", body=body, clock=clock)

    def sign() -> str:
        return sign_request(ring.signing_key, issuer="broker", audience="site-a", **common)

    tokens = [sign() for _ in range(int(args.seconds * 40_000))]
    it = iter(tokens)
    replay = ReplayCache(max_entries=len(tokens) + 1)

    def verify() -> None:
        verify_request(next(it), keys=keys, issuer="broker", audience="site-a", replay=replay, **common)

    raw_key, pub = ring.signing_key.key, ring.signing_key.key.public_key()
    sig = raw_key.sign(body)
    sign_rate = _rate(sign, args.seconds)
    verify_rate = _rate(verify, min(args.seconds, len(tokens) / 40_000))
    raw_sign = _rate(lambda: raw_key.sign(body), args.seconds)
    raw_verify = _rate(lambda: pub.verify(sig, body), args.seconds)
    print(
        f"bench=signing sign_per_s={sign_rate:.0f} verify_per_s={verify_rate:.0f} "
        f"raw_ed25519_sign_per_s={raw_sign:.0f} raw_ed25519_verify_per_s={raw_verify:.0f} "
        f"sign_ratio={sign_rate / raw_sign:.2f} verify_ratio={verify_rate / raw_verify:.2f}"
    )


if __name__ == "__main__":
    main()
