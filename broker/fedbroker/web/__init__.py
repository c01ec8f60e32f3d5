"""The web wing: HTTP handlers, the human pages, their templates and static files."""
