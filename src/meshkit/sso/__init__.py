"""SSO: users, roles, permissions, tokens and JWKS."""
