"""``fedbroker demo``: a broker and three local members on loopback, with example repositories."""
