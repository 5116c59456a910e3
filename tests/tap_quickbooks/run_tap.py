"""Runs singer-io's tap-quickbooks against the bundled emulator, for the tests beside this file.

The tap has no setting for its hosts: it reads Intuit's from two module constants,
``tap_quickbooks.client.PROD_ENDPOINT_BASE`` (the API) and ``TOKEN_REFRESH_URL`` (OAuth), each
looked up when a request is made. This sets both to the emulator's URLs, taken from
``QBO_RS_TAP_API_BASE`` and ``QBO_RS_TAP_TOKEN_URL``, and then runs the tap's own ``main()``
with the command line as given (``--config``, ``--discover``, ``--catalog``, ``--state``).
Nothing else of the tap is changed. It runs in .venv-tap (``make tap-venv``).
"""

from __future__ import annotations

import os

# The emulator speaks plain HTTP; oauthlib refuses a token URL without TLS unless told.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

import tap_quickbooks  # noqa: E402
import tap_quickbooks.client  # noqa: E402

tap_quickbooks.client.PROD_ENDPOINT_BASE = os.environ["QBO_RS_TAP_API_BASE"]
tap_quickbooks.client.TOKEN_REFRESH_URL = os.environ["QBO_RS_TAP_TOKEN_URL"]

if __name__ == "__main__":
    tap_quickbooks.main()
