"""The registry's SQL tables (SQLAlchemy Core), as the latest migration leaves them.

Times are float seconds since the epoch from the injectable clock, so tests can
pin them and both SQLite and PostgreSQL store them the same way. Structured
fields (location, datasets, labels, JWKS, scopes, audit details) are JSON.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)

# One row (id = 1). Its revision is bumped in the same transaction as every
# registry change, so a replica can tell cheaply whether its snapshot is stale.
registry_state = sa.Table(
    "registry_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
)

members = sa.Table(
    "members",
    metadata,
    sa.Column("id", sa.String(63), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("agent_url", sa.String(2048), nullable=False),
    sa.Column("public_url", sa.String(2048), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("location", sa.JSON, nullable=False),
    sa.Column("datasets", sa.JSON, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("canary", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("jwks", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # v3: the most capacity routing believes the member's ads (None: no cap).
    sa.Column("max_capacity", sa.Integer, nullable=True),
)

enroll_tokens = sa.Table(
    "enroll_tokens",
    metadata,
    # A random public id, unrelated to the secret, so the audit log can name a token.
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("broker_kid", sa.String(64), nullable=False),
    sa.Column("auto_approve", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float, nullable=True),
    sa.Column("used_by", sa.String(63), nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),  # v2
)

admin_tokens = sa.Table(
    "admin_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),  # v2
    sa.Column("created_by", sa.String(200), nullable=True),  # v2: the creating token's actor
)

# v3: data providers whose signed requests may declare datasets under their prefixes.
dataset_owners = sa.Table(
    "dataset_owners",
    metadata,
    sa.Column("id", sa.String(63), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("jwks", sa.JSON, nullable=False),
    sa.Column("prefixes", sa.JSON, nullable=False),  # normalised dataset id prefixes it speaks for
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# v3: which members hold a dataset (or a family, with prefix) and which may serve it at all.
dataset_declarations = sa.Table(
    "dataset_declarations",
    metadata,
    sa.Column("id", sa.String(512), primary_key=True),  # the normalised dataset id
    sa.Column("prefix", sa.Boolean, nullable=False),
    sa.Column("holders", sa.JSON, nullable=False),  # member ids storing it
    sa.Column("servers", sa.JSON, nullable=True),  # member ids allowed to serve it; NULL: any member
    sa.Column("size_bytes", sa.BigInteger, nullable=True),
    sa.Column("declared_by", sa.String(200), nullable=False),  # admin:<token id> or owner:<owner id>
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
)
sa.Index("ix_audit_log_target", audit_log.c.target)

# v5: broker replicas sharing the health polling (launch/pollshare.py). Each replica renews its
# row; the live ones split the members between them by rendezvous hash of the member id.
broker_replicas = sa.Table(
    "broker_replicas",
    metadata,
    sa.Column("replica_id", sa.String(64), primary_key=True),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)

# v5: the latest poll result of each member, written by the replica that polled it, read by the
# others. ``seq`` comes from ``poll_state`` in the writing transaction, whose row lock orders
# commits, so a reader that has seen seq N has seen every result up to N.
member_polls = sa.Table(
    "member_polls",
    metadata,
    sa.Column("member_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("replica_id", sa.String(64), nullable=False),
    sa.Column("polled_at", sa.Float, nullable=False),
    sa.Column("ad", sa.Text, nullable=True),  # the verified status ad as JSON; NULL when the poll failed
    sa.Column("error", sa.String(500), nullable=True),
)
sa.Index("ix_member_polls_seq", member_polls.c.seq)

poll_state = sa.Table(  # one row (id = 1)
    "poll_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
)
