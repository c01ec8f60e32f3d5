"""``fedbroker datasets`` and ``fedbroker dataset-owners``: the registry's word on datasets.

Admins declare with their admin token. A data provider declares its own datasets with its
dataset-owner key (``--owner ID --owner-keys DIR --broker-id BROKER``): every request is then
signed with that key instead, and the broker accepts it for ids under the owner's prefixes.
``dataset-owners keygen DIR`` makes the provider's key directory and prints the public JWKS
that an admin registers with ``dataset-owners add``.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
from pathlib import Path
from typing import Any, Callable

from fedproto.clock import SystemClock
from fedproto.keys import KeyRing
from fedproto.tokens import sign_request

from ..adminclient import AdminClient

Command = Callable[[argparse.Namespace], int]


class OwnerClient(AdminClient):
    """An :class:`AdminClient` whose every request is signed by a dataset-owner key."""

    def __init__(self, url: str, owner_id: str, keys: KeyRing, broker_id: str, ca_bundle: str | None = None) -> None:
        super().__init__(url, "", ca_bundle=ca_bundle)
        self.owner_id, self.keys, self.broker_id = owner_id, keys, broker_id

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        raw = json.dumps(body).encode() if body is not None else b""
        self.token = sign_request(self.keys.signing_key, issuer=self.owner_id, audience=self.broker_id, method=method,
                                  path_qs=path, body=raw, clock=SystemClock())
        return super().call(method, path, body)


def _client(args: argparse.Namespace, admin_client: Callable[[argparse.Namespace], AdminClient]) -> AdminClient:
    if getattr(args, "owner", None):
        url = args.url or os.environ.get("FEDBROKER_URL")
        if not url or not args.owner_keys or not args.broker_id:
            raise SystemExit("fedbroker: --owner needs --url (or $FEDBROKER_URL), --owner-keys and --broker-id")
        return OwnerClient(url, args.owner, KeyRing.load(Path(args.owner_keys)), args.broker_id,
                           ca_bundle=getattr(args, "ca_bundle", None))
    return admin_client(args)


def _print(args: argparse.Namespace, answer: Any, text: str) -> int:
    print(json.dumps(answer, indent=2, sort_keys=True) if args.json else text)
    return 0


def _datasets(admin_client: Callable[[argparse.Namespace], AdminClient]) -> Command:
    def run(args: argparse.Namespace) -> int:
        client = _client(args, admin_client)
        if args.action == "list":
            answer = client.call("GET", "/api/v1/datasets")
            rows = [f"{d['id']}{'*' if d['prefix'] else ''}  holders={','.join(d['holders']) or '-'}  "
                    f"servers={'any' if d['servers'] is None else ','.join(d['servers']) or 'none'}"
                    for d in answer["datasets"]]
            return _print(args, answer, "\n".join(rows) or "no dataset declarations")
        if not args.id:
            raise SystemExit(f"fedbroker: datasets {args.action} needs a dataset ID")
        if args.action == "remove":
            answer = client.call("DELETE", "/api/v1/datasets?" + urllib.parse.urlencode({"id": args.id}))
            return _print(args, answer, f"declaration for {answer['id']} removed")
        body = {"id": args.id, "prefix": args.prefix, "holders": args.holder,
                "servers": None if args.any_server else args.server, "size_bytes": args.size}
        answer = client.call("POST", "/api/v1/datasets", body)
        return _print(args, answer, f"declared {answer['id']}")
    return run


def _owners(admin_client: Callable[[argparse.Namespace], AdminClient]) -> Command:
    def run(args: argparse.Namespace) -> int:
        if args.action == "keygen":
            ring = KeyRing.load_or_create(Path(args.id))
            print(json.dumps(ring.public_set().to_jwks(), indent=2))
            return 0
        client = admin_client(args)
        if args.action == "list":
            answer = client.call("GET", "/api/v1/dataset-owners")
            rows = [f"{o['id']}  {', '.join(o['prefixes'])}  ({o['display_name']})" for o in answer["owners"]]
            return _print(args, answer, "\n".join(rows) or "no dataset owners")
        if args.action == "remove":
            answer = client.call("DELETE", f"/api/v1/dataset-owners/{urllib.parse.quote(args.id, safe='')}")
            return _print(args, answer, f"dataset owner {args.id} removed")
        body = {"id": args.id, "display_name": args.name or args.id, "prefixes": args.prefix,
                "jwks": json.loads(Path(args.jwks).read_text())}
        answer = client.call("POST", "/api/v1/dataset-owners", body)
        return _print(args, answer, f"dataset owner {answer['id']} may declare {', '.join(answer['prefixes'])}")
    return run


def add_parsers(sub: Any, admin_options: Callable[[argparse.ArgumentParser], None],
                admin_client: Callable[[argparse.Namespace], AdminClient]) -> None:
    """Add ``datasets`` and ``dataset-owners`` to ``fedbroker``'s subcommands."""
    ds = sub.add_parser("datasets", help="which members hold a dataset and which may serve it (the registry's word)")
    ds.add_argument("action", choices=["list", "declare", "remove"])
    ds.add_argument("id", nargs="?", help="dataset id: a DOI, URL or bucket path (or a prefix with --prefix)")
    ds.add_argument("--prefix", action="store_true", help="declare every dataset id starting with ID")
    ds.add_argument("--holder", action="append", default=[], metavar="MEMBER", help="a member storing it (repeatable)")
    ds.add_argument("--server", action="append", default=[], metavar="MEMBER",
                    help="a member allowed to serve it (repeatable; none given: no member may)")
    ds.add_argument("--any-server", action="store_true", help="any member may serve it (no serving policy)")
    ds.add_argument("--size", type=int, help="its size in bytes")
    ds.add_argument("--owner", help="sign as this dataset owner instead of using an admin token")
    ds.add_argument("--owner-keys", help="the owner's key directory (see dataset-owners keygen)")
    ds.add_argument("--broker-id", help="the broker's id (the audience of the owner's signed requests)")
    admin_options(ds)
    ds.set_defaults(func=_datasets(admin_client))

    owners = sub.add_parser("dataset-owners", help="data providers whose keys may declare their own datasets")
    owners.add_argument("action", choices=["list", "add", "remove", "keygen"])
    owners.add_argument("id", nargs="?", help="owner id (for keygen: the key directory to create)")
    owners.add_argument("--name", help="display name")
    owners.add_argument("--prefix", action="append", default=[], help="dataset id prefix it may declare (repeatable)")
    owners.add_argument("--jwks", help="file with the owner's public JWKS (from keygen)")
    admin_options(owners)
    owners.set_defaults(func=_owners(admin_client))
