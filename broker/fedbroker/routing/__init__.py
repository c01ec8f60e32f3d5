"""The routing wing: member health, the pure ranking of members for a launch, and the dispatcher that decides."""
