"""An append-only audit log: JSON lines in an HMAC-SHA256 hash chain.

Each record carries the MAC of the record before it, and its own MAC over that link plus its
canonical JSON, under a key that never enters the log. Editing, deleting, reordering or inserting
a line breaks the chain at that line, and ``verify`` names it; appending refuses to extend a
broken chain. Promotion decisions use it now; serving (opt-outs, explanation requests) in Step 5.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


class AuditTampered(RuntimeError):
    """The log's hash chain is broken: a record was edited, removed, reordered or inserted."""


def load_or_create_key(path: Path) -> bytes:
    """``$FINAI_AUDIT_KEY`` if set, else a random key kept (mode 0600) at ``path``."""
    env = os.environ.get("FINAI_AUDIT_KEY")
    if env:
        return env.encode()
    path = Path(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in record.items() if k != "mac"}, sort_keys=True, separators=(",", ":"),
                      default=str).encode()


class AuditLog:
    def __init__(self, path: Path, key: bytes, fsync: bool = True, incremental: bool = False):
        self.path, self.key, self.fsync, self.incremental = Path(path), key, fsync, incremental
        self._tail: tuple[int, bytes, int, str] | None = None   # (file size, last line, records, last MAC)

    def _mac(self, record: dict[str, Any]) -> str:
        return hmac.new(self.key, _canonical(record), hashlib.sha256).hexdigest()

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def verify(self) -> int:
        """Check the whole chain; returns the number of records, raises ``AuditTampered`` naming the line."""
        prev = GENESIS
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        for n, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AuditTampered(f"{self.path}: line {n} is not a JSON record ({exc.msg})") from None
            if record.get("seq") != n or record.get("prev") != prev:
                raise AuditTampered(f"{self.path}: line {n} does not follow line {n - 1} (removed, inserted or "
                                    "reordered records)")
            if not hmac.compare_digest(str(record.get("mac", "")), self._mac(record)):
                raise AuditTampered(f"{self.path}: line {n} was modified (its HMAC does not match)")
            prev = record["mac"]
        return len(lines)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Add one record under an exclusive lock, after verifying the chain (incrementally: its tail)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                if not self._own_tail(f):
                    count = self.verify()
                    self._tail = (0, b"", count, self.records()[-1]["mac"] if count else GENESIS)
                _, _, count, prev = self._tail
                record = {"seq": count + 1, "time": datetime.now(UTC).isoformat(timespec="seconds"), "event": event,
                          **fields, "prev": prev}
                record["mac"] = self._mac(record)
                line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
                f.write(line)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
                self._tail = (f.tell(), line, count + 1, record["mac"])
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return record

    def _own_tail(self, f: Any) -> bool:
        """Incremental mode: does the file still end exactly with the last record this writer wrote?"""
        if not self.incremental or self._tail is None or not self._tail[1]:
            return False
        size, line = self._tail[0], self._tail[1]
        if os.fstat(f.fileno()).st_size != size:
            return False
        f.seek(size - len(line))
        return f.read(len(line)) == line


def main(argv: list[str] | None = None) -> int:
    """``verify LOG [--key-file F]``: exit 0 and the record count, or 1 naming the broken line."""
    import argparse

    parser = argparse.ArgumentParser(prog="finai-audit", description="Verify a FinAI audit log's HMAC hash chain.")
    parser.add_argument("command", choices=["verify"])
    parser.add_argument("log", type=Path)
    parser.add_argument("--key-file", type=Path, help="the key file ($FINAI_AUDIT_KEY wins when set)")
    args = parser.parse_args(argv)
    if not args.log.is_file():
        print(f"error: no audit log at {args.log}")
        return 2
    key_file = args.key_file or args.log.with_suffix(".key")
    if not os.environ.get("FINAI_AUDIT_KEY") and not key_file.is_file():
        print(f"error: no key: set FINAI_AUDIT_KEY or pass --key-file (looked for {key_file})")
        return 2
    try:
        count = AuditLog(args.log, load_or_create_key(key_file)).verify()
    except AuditTampered as exc:
        print(f"TAMPERED: {exc}")
        return 1
    print(f"ok: {count} records, hash chain intact ({args.log})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
