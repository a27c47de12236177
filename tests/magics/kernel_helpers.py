"""Helpers for the kernel tests of the magics: a recording nbclient, the kernel environment, output readers."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


class RecordingClient(NotebookClient):
    """A NotebookClient that logs every comm message: (cell index, msg type, comm id, kernel time, data).

    ``on_comm`` sees each comm message, ``on_message`` each iopub message of a cell (e.g. to interrupt then).
    """

    def __init__(
        self,
        nb: Any,
        on_comm: Callable[[RecordingClient, dict, int], None] | None = None,
        on_message: Callable[[RecordingClient, dict, int], None] | None = None,
        **kw: Any,
    ):
        super().__init__(nb, **kw)
        self.comm_log: list[dict] = []
        self.on_comm = on_comm
        self.on_message = on_message

    def process_message(self, msg: dict, cell: Any, cell_index: int) -> Any:
        if self.on_message is not None:
            self.on_message(self, msg, cell_index)
        return super().process_message(msg, cell, cell_index)

    def handle_comm_msg(self, outs: list, msg: dict, cell_index: int) -> None:
        content = msg["content"]
        self.comm_log.append(
            {
                "cell": cell_index,
                "type": msg["msg_type"],
                "comm_id": content.get("comm_id"),
                "date": msg["header"]["date"],
                "state": dict((content.get("data") or {}).get("state") or {}),
            }
        )
        if self.on_comm is not None:
            self.on_comm(self, msg, cell_index)
        super().handle_comm_msg(outs, msg, cell_index)

    def interrupt_soon(self) -> None:
        """Send the kernel an interrupt (as the frontend's stop button does) from inside the event loop."""
        self._interrupt = asyncio.ensure_future(self.km.interrupt_kernel())

    def live_updates(self, cell_index: int) -> list[dict]:
        """The widget-state updates of the live view of one cell (comm_msg with a new HTML value)."""
        opened = {
            e["comm_id"]
            for e in self.comm_log
            if e["cell"] == cell_index and e["type"] == "comm_open" and e["state"].get("_model_name") == "HTMLModel"
        }
        return [
            e for e in self.comm_log if e["comm_id"] in opened and e["type"] == "comm_msg" and "value" in e["state"]
        ]


def kernel_env(backend: Any, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODSC_MAGICS_")}
    env.update(
        HOME=str(home),
        ODSC_MAGICS_BACKEND="local",
        ODSC_MAGICS_LOCAL_DIR=str(backend.state_dir),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    return env


def texts(cell: Any) -> str:
    """Everything a cell showed, as text (stream text, text/plain and markdown, error values)."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
        else:
            data = output.get("data", {})
            parts.extend(str(data.get(k, "")) for k in ("text/plain", "text/markdown"))
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(parts))


def llm_outputs(cell: Any) -> list[Any]:
    """The durable odsc-magics answers of a cell."""
    return [o for o in cell.outputs if "odsc_magics" in o.get("metadata", {})]


def failed(cell: Any) -> bool:
    """True when the cell ended with an error (UsageError, KeyboardInterrupt, ...)."""
    return any(o.output_type == "error" for o in cell.outputs) or "UsageError" in texts(cell)
