"""The bundled QBO emulator, for tests and offline development (like stripe-mock or moto).

    from qbo_rs.testing import QboEmulator

    with QboEmulator(invoices=5000, seed=7) as emu:
        client = qbo_rs.QboClient(emu.credentials(), token_store=None)
        client.backfill("invoice", "2015-01-01", "2026-01-01", data_dir=tmp)
        truth = emu.truth("Invoice")

Keyword arguments are the emulator's configuration (seed, invoices, customers, items,
data_start, data_end, realm_id, client_id, client_secret, refresh_token, host, port) and
its run-time knobs (throttle_per_minute, batch_per_minute, max_in_flight, latency_ms,
fault_rate, fault_kinds, fault_first_k, fault_every_secs, slow_ms, throttle_body,
retry_after_secs, force_429_next, force_429_after, throttle_for_secs, edit_rate,
access_token_ttl_secs, refresh_rotate_after_secs, old_refresh_grace_secs,
cdc_max_lookback_days, cdc_max_objects, default_order); knobs can be changed while it runs with
:meth:`QboEmulator.set_knobs`. ``throttle_per_minute``, ``batch_per_minute`` and
``max_in_flight`` default to QuickBooks' 500 (a batch item counts as one), 40 and 10; ``0`` (or
``None``) means no limit, as with ``qbo-rs emulator``. Faults by position
(``fault_first_k``) or by time (``fault_every_secs``) are the same for every client, unlike the
``fault_rate`` dice; ``access_token_ttl_secs`` is how to test expiry (``expire_access_tokens``
revokes); ``default_order`` (``"Observed"`` or ``"Id"``) orders a query without ORDERBY;
``cdc_max_objects`` (default 1000, QuickBooks' cap; ``0`` for none) caps the objects of one CDC
answer across its entities, deleted stubs included.

Records change as on QuickBooks: :meth:`QboEmulator.edit`, :meth:`QboEmulator.delete` (an
Invoice is hard-deleted and afterwards only CDC and :meth:`QboEmulator.deleted` know it; a
Customer or an Item is made inactive, an update) and :meth:`QboEmulator.create`.
docs/emulator.md says where each behaviour comes from.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Dict, List, Optional, Type

from qbo_rs._qbo_rs import Credentials, NativeEmulator

_CONFIG_KEYS = {
    "host",
    "port",
    "seed",
    "invoices",
    "customers",
    "items",
    "data_start",
    "data_end",
    "realm_id",
    "client_id",
    "client_secret",
    "refresh_token",
}

__all__ = ["QboEmulator"]


class QboEmulator:
    """A running emulator (start it with ``with`` or :meth:`start`)."""

    def __init__(self, **options: Any) -> None:
        config = {k: v for k, v in options.items() if k in _CONFIG_KEYS}
        knobs = {k: v for k, v in options.items() if k not in _CONFIG_KEYS}
        if knobs:
            config["knobs"] = knobs
        self._config_json = json.dumps(config, default=str)
        self._native: Optional[NativeEmulator] = None

    def start(self) -> "QboEmulator":
        if self._native is None:
            self._native = NativeEmulator.start(self._config_json)
        return self

    def stop(self) -> None:
        if self._native is not None:
            self._native.stop()
            self._native = None

    def __enter__(self) -> "QboEmulator":
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    @property
    def native(self) -> NativeEmulator:
        if self._native is None:
            raise RuntimeError("the emulator is not running: use `with QboEmulator(...)` or .start()")
        return self._native

    @property
    def base_url(self) -> str:
        return self.native.base_url

    @property
    def token_url(self) -> str:
        return self.native.token_url

    @property
    def realm_id(self) -> str:
        return self.native.realm_id

    def env(self) -> Dict[str, str]:
        """The QBO_* environment a client (or the CLI) needs to talk to this emulator."""
        n = self.native
        return {
            "QBO_BASE_URL": n.base_url,
            "QBO_TOKEN_URL": n.token_url,
            "QBO_CLIENT_ID": n.client_id,
            "QBO_CLIENT_SECRET": n.client_secret,
            "QBO_REFRESH_TOKEN": n.refresh_token,
            "QBO_REALM_ID": n.realm_id,
        }

    def credentials(self, refresh_token: Optional[str] = None) -> Credentials:
        n = self.native
        return Credentials(
            n.client_id,
            n.client_secret,
            refresh_token or n.refresh_token,
            n.realm_id,
            base_url=n.base_url,
            token_url=n.token_url,
        )

    def truth(self, entity: str) -> List[Dict[str, Any]]:
        """Every record of ``entity`` that exists now, inactive ones included (a deleted Invoice
        is not: see :meth:`deleted`)."""
        return self.native.truth(entity)

    def stats(self) -> Dict[str, Any]:
        """The counters: requests by route and status, 429s (``batch_throttled`` among them),
        ``metered_calls``, faults (``faults_by_kind``, ``faults_by_request``), edits, refreshes."""
        return self.native.stats()

    def knobs(self) -> Dict[str, Any]:
        return self.native.knobs()

    def set_knobs(self, **changes: Any) -> None:
        knobs = self.native.knobs()
        unknown = set(changes) - set(knobs)
        if unknown:
            raise TypeError(f"unknown emulator knob(s): {', '.join(sorted(unknown))}")
        knobs.update(changes)
        self.native.set_knobs(json.dumps(knobs))

    def edit(self, entity: str, record_id: str) -> Dict[str, Any]:
        """Edits one record now (new SyncToken, LastUpdatedTime = now)."""
        return self.native.edit(entity, record_id)

    def delete(self, entity: str, record_id: str) -> Dict[str, Any]:
        """Deletes one record now, as QuickBooks does. An Invoice is hard-deleted: it leaves
        every query, count, read and :meth:`truth`, and CDC reports it as a
        ``{"status": "Deleted"}`` stub; the answer is ``{"outcome": "deleted", "entity", "id",
        "deleted_at"}`` (UTC, RFC 3339 with milliseconds). A Customer or an Item is made inactive
        (``Active`` false, ``" (deleted)"`` appended to its names, new SyncToken and
        LastUpdatedTime): ``{"outcome": "made_inactive", "entity", "id", "record"}`` with its
        truth row. An unknown Id, a deleted Invoice or an inactive record raises ``ConfigError``."""
        return self.native.delete(entity, record_id)

    def create(self, entity: str, id: Optional[str] = None) -> Dict[str, Any]:
        """Creates one record now and returns it as served: rendered like the generated ones,
        under an Id never used before, CreateTime = LastUpdatedTime = now, SyncToken ``"0"``.

        ``id`` re-creates a deleted Invoice under its old Id, in a later second than its
        deletion. QuickBooks never reuses an Id: this is a test device, to check that a newer
        version wins over a deletion mark. A live Id raises ``ConfigError``."""
        return self.native.create(entity, id)

    def deleted(self, entity: str) -> List[Dict[str, Any]]:
        """The hard-deleted records of ``entity`` (``{"id", "deleted_at"}``, UTC, RFC 3339 with
        milliseconds), oldest deletion first; always empty for Customer and Item."""
        return self.native.deleted(entity)

    def expire_access_tokens(self) -> None:
        """Revokes every issued access token before its stated expiry: the next API call gets a
        401. To test natural expiry, set ``access_token_ttl_secs`` instead."""
        self.native.expire_access_tokens()
