"""Run failure alerts: what failed, where, why, and a link; delivered to a log and a webhook.

Plain Python, no Dagster: the run_failure_alerts sensor builds the alert and sends it.
"""

from dataclasses import asdict, dataclass

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
        return {**asdict(self), "text": self.as_text()}


def post_alert(alert: RunFailureAlert, webhook_url: str, timeout_seconds: float = 10.0) -> None:
    response = requests.post(webhook_url, json=alert.as_payload(), timeout=timeout_seconds)
    response.raise_for_status()
