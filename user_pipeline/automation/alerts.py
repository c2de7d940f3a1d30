"""Alerts: a failed run, or a day not ready by its deadline; delivered to a log and a webhook.

Plain Python, no Dagster: the sensors build the alerts and send them.
"""

from dataclasses import asdict, dataclass
from typing import Protocol

import requests


@dataclass(frozen=True)
class RunFailureAlert:
    job: str
    run_id: str
    partition: str | None
    failed_steps: list[str]
    error: str
    run_url: str

    def as_text(self) -> str:
        steps = ", ".join(self.failed_steps) or "no step (the run failed outside its steps)"
        return (
            f"Run failed: job {self.job}, partition {self.partition or '(none)'}, "
            f"failed step(s): {steps}\nError: {self.error}\nRun: {self.run_url}"
        )

    def as_payload(self) -> dict:
        """JSON for the webhook: the fields, plus `text` for Slack-style incoming webhooks."""
        return {**asdict(self), "kind": "run_failure", "text": self.as_text()}


@dataclass(frozen=True)
class FreshnessAlert:
    """A day that is not materialized by its deadline: late (queued or running), failed, or missing."""

    partition: str
    status: str
    reason: str
    deadline: str

    def as_text(self) -> str:
        return f"Partition {self.partition} is {self.status} (due {self.deadline}): {self.reason}"

    def as_payload(self) -> dict:
        return {**asdict(self), "kind": "freshness", "text": self.as_text()}


class Alert(Protocol):
    def as_text(self) -> str: ...

    def as_payload(self) -> dict: ...


def post_alert(alert: Alert, webhook_url: str, timeout_seconds: float = 10.0) -> None:
    response = requests.post(webhook_url, json=alert.as_payload(), timeout=timeout_seconds)
    response.raise_for_status()
