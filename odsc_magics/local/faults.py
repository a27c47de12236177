"""Fault injection (``--fault KIND:RATE``) and the per-deployment counters behind ``/_emulator/stats``."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

# 429/500/503: the platform's error answer; reset: the connection is dropped before any answer; cut: the
# answer stops halfway without an end; midstream: the model server fails halfway through an answer and says
# so (a stream gets vLLM's error event after some tokens, then [DONE]; a JSON answer becomes vLLM's 500);
# badjson: a constrained answer (guided_json/choice/regex) of the builtin engine stops halfway, finish_reason
# "length", as one cut by max_tokens or from a server without constrained decoding does.
FAULT_KINDS = ("429", "500", "503", "reset", "cut", "midstream", "badjson")


def parse_fault(text: str) -> tuple[str, float]:
    """``"503:0.1"`` → ``("503", 0.1)``; ValueError with a clear message otherwise."""
    kind, sep, rate_text = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in FAULT_KINDS:
        raise ValueError(f"--fault {text!r}: expected KIND:RATE with KIND one of {', '.join(FAULT_KINDS)}")
    try:
        rate = float(rate_text)
    except ValueError:
        raise ValueError(f"--fault {text!r}: RATE must be a number between 0 and 1") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"--fault {text!r}: RATE must be between 0 and 1")
    return kind, rate


class FaultPlan:
    """One uniform draw per predict request against the cumulative rates, in the order given."""

    def __init__(self, faults: list[tuple[str, float]], *, seed: int | None = None) -> None:
        total = sum(rate for _, rate in faults)
        if total > 1.0 + 1e-9:
            raise ValueError(f"the --fault rates add up to {total:g}; at most 1 is possible")
        self.faults = list(faults)
        self._rng = random.Random(seed)

    def draw(self) -> str | None:
        """The fault this request suffers, or None."""
        if not self.faults:
            return None
        u = self._rng.random()
        cumulative = 0.0
        for kind, rate in self.faults:
            cumulative += rate
            if u < cumulative:
                return kind
        return None


@dataclass
class DeploymentStats:
    """What the data plane did for one deployment since the process started."""

    predict_requests: int = 0
    by_status: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    succeeded: int = 0
    duplicate_successes: int = 0
    timeouts: int = 0  # 500 Service Timeout answers of the front end
    throttles: Counter = field(default_factory=Counter)  # 429s of the front end by kind
    # The simulated engines (--serving gpu), over all instances; times are simulated seconds.
    busy_s: float = 0.0
    steps: int = 0
    preemptions: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    max_running: int = 0  # the largest batch one instance ran
    max_kv_blocks_used: int = 0  # the most KV-cache blocks one instance held
    max_num_seqs: int = 0
    kv_blocks_total: int = 0  # KV-cache blocks of one instance
    _seen: set = field(default_factory=set)

    def success(self, body_digest: bytes) -> None:
        """Count one complete 2xx answer; remembers the body to spot duplicates."""
        self.succeeded += 1
        if body_digest in self._seen:
            self.duplicate_successes += 1
        else:
            self._seen.add(body_digest)

    def as_dict(self, live: dict | None = None) -> dict:
        """The counters, with ``live`` (running, waiting, KV-cache usage of the engines now) merged in."""
        return {
            "predict_requests": self.predict_requests,
            "by_status": {str(status): count for status, count in sorted(self.by_status.items())},
            "faults": dict(self.faults),
            "succeeded": self.succeeded,
            "duplicate_successes": self.duplicate_successes,
            "timeouts": self.timeouts,
            "throttles": dict(self.throttles),
            "running": 0,
            "waiting": 0,
            "kv_cache_usage": 0.0,
            **(live or {}),
            "max_running": self.max_running,
            "max_kv_blocks_used": self.max_kv_blocks_used,
            "max_num_seqs": self.max_num_seqs,
            "kv_blocks_total": self.kv_blocks_total,
            "preemptions": self.preemptions,
            "prompt_tokens": self.prompt_tokens,
            "generation_tokens": self.generation_tokens,
            "busy_s": round(self.busy_s, 6),
            "steps": self.steps,
        }


class Stats:
    """Counters of every deployment that received predict requests."""

    def __init__(self) -> None:
        self.deployments: dict[str, DeploymentStats] = {}

    def of(self, deployment_id: str) -> DeploymentStats:
        stats = self.deployments.get(deployment_id)
        if stats is None:
            stats = self.deployments[deployment_id] = DeploymentStats()
        return stats

    def as_dict(self, live: dict[str, dict] | None = None) -> dict:
        live = live or {}
        return {"deployments": {key: value.as_dict(live.get(key)) for key, value in self.deployments.items()}}
