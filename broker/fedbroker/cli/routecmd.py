"""``fedbroker route PROVIDER/SPEC``: dry-run a routing decision against a running broker."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any, TextIO
from urllib.parse import urlencode

from fedproto.repospec import PROVIDERS


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``route`` subcommand to ``fedbroker``'s subparsers; it runs :func:`run`."""
    p = subparsers.add_parser("route", help="dry-run a routing decision", description=__doc__)
    p.add_argument("target", metavar="PROVIDER/SPEC", help="e.g. gh/org/repo/HEAD or zenodo/10.5281/zenodo.3242074")
    p.add_argument("--data", action="append", default=[], metavar="ID", help="a dataset the launch needs (repeatable)")
    p.add_argument("--region", help="pretend the client is in this region")
    p.add_argument("--explain", action="store_true", help="show every candidate's cost parts and reason")
    p.add_argument("--json", action="store_true", help="print the decision as JSON")
    p.add_argument("--url", default=os.environ.get("FEDBROKER_URL"), help="broker URL (default $FEDBROKER_URL)")
    p.set_defaults(func=run)
    return p


def split_target(target: str) -> tuple[str, str]:
    provider, sep, spec = target.partition("/")
    if not sep or not spec or provider not in PROVIDERS:
        raise ValueError(f"expected PROVIDER/SPEC with PROVIDER one of {', '.join(PROVIDERS)}, got {target!r}")
    return provider, spec


def fetch(url: str, provider: str, spec: str, data: list[str], region: str | None) -> dict[str, Any]:
    query = [("provider", provider), ("spec", spec)] + [("data", d) for d in data]
    if region:
        query.append(("region", region))
    with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/route?{urlencode(query)}", timeout=30) as resp:
        return json.loads(resp.read())


def render(decision: dict[str, Any], explain: bool, out: TextIO) -> None:
    """A table: rank, member, cost, reason; with ``explain`` also each cost part."""
    out.write(f"decision {decision['decision_id']}  repo {decision['repo_key']}")
    out.write(f"  data {', '.join(decision['data'])}\n" if decision["data"] else "\n")
    candidates = decision["candidates"] if explain else decision["candidates"][:3]
    parts = sorted({k for c in candidates for k in c["parts"]}) if explain else []
    header = ["rank", "member", "cost"] + parts + ["reason"]
    rows = [header] + [
        [str(c["rank"]), c["member_id"], "-" if c["cost"] is None else f"{c['cost']:.1f}"]
        + [f"{c['parts'][k]:.1f}" if k in c["parts"] else "-" for k in parts] + [c["reason"]]
        for c in candidates
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] + "\n")
    if not any(c["routable"] for c in decision["candidates"]):
        out.write("no member can take this launch now\n")


def run(args: argparse.Namespace) -> int:
    if not args.url:
        print("error: give --url or set FEDBROKER_URL", file=sys.stderr)
        return 2
    try:
        provider, spec = split_target(args.target)
        decision = fetch(args.url, provider, spec, args.data, args.region)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("message", exc.reason)
        except ValueError:
            message = exc.reason
        print(f"error: broker answered {exc.code}: {message}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"error: cannot reach the broker at {args.url}: {exc.reason}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(decision, indent=2))
    else:
        render(decision, args.explain, sys.stdout)
    return 0 if any(c["routable"] for c in decision["candidates"]) else 3
