"""The basis: the framework every meshkit service stands on."""

import os as _os

if _os.environ.get("MESHKIT_NATS_WEBSOCKET") == "0":  # set by `meshkit up` for its services
    from meshkit.basis.natsimport import import_without_websocket

    import_without_websocket()
