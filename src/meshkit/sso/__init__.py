"""SSO: users, roles and permissions (RBAC + ABAC), tokens with rotation and revocation, JWKS,
service accounts and API keys.

Layers point one way — ``transport`` (HTTP) and ``adapters`` (SQL, argon2,
AES-GCM, NATS) call ``app`` (use cases), which works on ``domain`` (pure rules).
``settings`` and ``main`` wire them onto the meshkit runtime. Other services use
``meshkit.sso_sdk``; the policy engine itself is ``meshkit.basis.policy``.
"""
