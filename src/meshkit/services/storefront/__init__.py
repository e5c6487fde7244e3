"""The storefront: what shoppers browse. It keeps its own copy of the catalog's products, fed by the
catalog's events (CQRS read model), and serves it without calling the catalog."""
