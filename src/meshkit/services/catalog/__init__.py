"""Catalog: the products the shop sells (business service).

Layers point one way — ``transport`` (HTTP) and ``adapters`` (SQL) call ``app``
(use cases), which works on ``domain`` (pure rules). ``settings`` and ``main``
wire them onto the meshkit runtime. Other services use ``catalog_sdk``.
"""
