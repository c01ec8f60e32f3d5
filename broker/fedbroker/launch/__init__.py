"""The launch wing: the signed client to member agents, the status poller and the launch relay."""
