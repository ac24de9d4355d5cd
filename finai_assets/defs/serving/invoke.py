"""Ask a bundle a question the way Lambda would: ``finai_assets/invoke_bundle.py`` in a subprocess.

The invoker unpacks the zip into an empty folder, verifies every file against the manifest and
calls the handler in a clean interpreter that sees only the bundle and its runtime packages; the
bundle's check and ``finai-pipeline``'s last stage both go through here.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from finai_assets import invoke_bundle as invoker
from finai_models.errors import FinAIError

INVOKER = Path(invoker.__file__)     # run as a script: its clean child interpreter must not import finai_assets


def invoke_bundle(bundle: Path, event: dict[str, Any], state: Path) -> tuple[dict[str, Any], str]:
    """The handler's response to ``event`` and the invoker's cold-start line; ``state`` keeps the
    handler's audit log, opt-outs and key."""
    done = subprocess.run([sys.executable, str(INVOKER), str(bundle), "--event", json.dumps(event),
                           "--env", f"FINAI_SERVING_STATE={state}"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise FinAIError(f"the bundle {bundle.name} did not answer in a clean subprocess: "
                         f"{(done.stderr or done.stdout).strip()[-800:]}")
    cold = next((line for line in done.stderr.splitlines() if line.startswith("cold start:")), "")
    return json.loads(done.stdout), cold


def first_batch_customer(batch: Path) -> str:
    import numpy as np

    with np.load(batch / "customers.npz") as b:
        return str(b["customer_id"][0])
