"""Benchmarks of binder-federation: tools that measure the broker and members without a network."""
