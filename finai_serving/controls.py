"""Operator and customer controls the handler obeys: the kill switch and AI opt-outs.

Both are read from the environment the function runs in, never from the request: a caller cannot
switch the model off or opt someone else out. Locally they are a variable and a file; on AWS,
DynamoDB tables (``infra/template.yaml``). The kill switch fails closed: if its table cannot be
read, every task is treated as switched off and the rule fallback answers.
Customers are keyed by an HMAC of their id, so neither store holds a raw customer id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

KILL_SWITCH_TTL_S = 30.0


def customer_key(customer_id: str, key: bytes) -> str:
    return hmac.new(key, customer_id.encode(), hashlib.sha256).hexdigest()


class KillSwitch:
    """``global`` or ``task:<name>`` switches from ``$FINAI_KILL_SWITCH`` (comma separated) and, when
    ``$FINAI_KILL_SWITCH_TABLE`` is set, those items of the DynamoDB table with ``active = true``
    (read by key, so the function needs only ``GetItem``; cached 30 s)."""

    def __init__(self, env: dict[str, str] | None = None, client: Any = None, tasks: list[str] | tuple = ()):
        env = dict(os.environ if env is None else env)
        self.static = {s.strip() for s in env.get("FINAI_KILL_SWITCH", "").split(",") if s.strip()}
        self.table = env.get("FINAI_KILL_SWITCH_TABLE", "")
        self.keys = ["global", *(f"task:{t}" for t in tasks)]
        self.client = client
        self._cached: tuple[float, set[str]] = (-1e18, set())

    def _table(self) -> set[str]:
        if not self.table:
            return set()
        at, value = self._cached
        if time.monotonic() - at < KILL_SWITCH_TTL_S:
            return value
        try:
            if self.client is None:
                import boto3

                self.client = boto3.client("dynamodb")
            value = set()
            for key in self.keys:
                item = self.client.get_item(TableName=self.table, Key={"switch_key": {"S": key}}).get("Item")
                if item and item.get("active", {}).get("BOOL"):
                    value.add(key)
        except Exception as exc:   # noqa: BLE001 - any failure to read the switch must stop the models
            value = {"global", f"unreadable: {type(exc).__name__}"}
        self._cached = (time.monotonic(), value)
        return value

    def active(self) -> set[str]:
        """Active switches: ``global``, ``task:<name>``; an unreadable table reads as ``global``."""
        return self.static | self._table()

    def tasks_off(self, tasks: list[str], active: set[str] | None = None) -> tuple[bool, set[str]]:
        """(everything off?, the tasks switched off one by one), from ``active`` or a fresh read."""
        active = self.active() if active is None else active
        return "global" in active, {t for t in tasks if f"task:{t}" in active}


class OptOuts:
    """Customers who opted out of AI recommendations (AI Basic Act §31, GDPR Art. 22, PIPA §37-2).

    A JSON-lines file (``$FINAI_OPTOUT_FILE``) or a DynamoDB table (``$FINAI_OPTOUT_TABLE``); the
    file is re-read only when it changes."""

    def __init__(self, path: Path | None = None, table: str = "", client: Any = None):
        self.path, self.table, self.client = (Path(path) if path else None), table, client
        self._seen: tuple[float, int] | None = None
        self._keys: dict[str, bool] = {}

    def _load(self) -> dict[str, bool]:
        if self.path is None or not self.path.is_file():
            return {}
        st = self.path.stat()
        if self._seen != (st.st_mtime, st.st_size):
            keys: dict[str, bool] = {}
            for line in self.path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    keys[record["customer_key"]] = bool(record["opted_out"])
            self._keys, self._seen = keys, (st.st_mtime, st.st_size)
        return self._keys

    def _dynamo(self) -> Any:
        if self.client is None:
            import boto3

            self.client = boto3.client("dynamodb")
        return self.client

    def opted_out(self, key: str) -> bool:
        if self.table:
            item = self._dynamo().get_item(TableName=self.table, Key={"customer_key": {"S": key}}).get("Item")
            return bool(item and item.get("opted_out", {}).get("BOOL"))
        return self._load().get(key, False)

    def set(self, key: str, opted_out: bool) -> None:
        if self.table:
            self._dynamo().put_item(TableName=self.table, Item={
                "customer_key": {"S": key}, "opted_out": {"BOOL": opted_out}, "at": {"N": str(int(time.time()))}})
            return
        if self.path is None:
            raise RuntimeError("no opt-out store configured (FINAI_OPTOUT_FILE or FINAI_OPTOUT_TABLE)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"customer_key": key, "opted_out": opted_out, "at": int(time.time())}) + "\n")
