"""One package per service: gateway, auth, users, data."""
