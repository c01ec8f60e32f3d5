"""The registry wing: members, enrollment, admin tokens and keys, their store and its snapshot."""
