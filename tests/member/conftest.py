"""Fixtures for the member agent tests (defined in agentkit, which tests also import helpers from)."""

from agentkit import agent, broker_ring, config, fake_backend, make_repo, signer

__all__ = ["agent", "broker_ring", "config", "fake_backend", "make_repo", "signer"]
