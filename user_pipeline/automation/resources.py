import dagster as dg

from user_pipeline.automation.alerts import Alert, post_alert, post_payload


class AlertChannel(dg.ConfigurableResource):
    """Where alerts go: always the sensor's log, and a webhook when one is set. Each POST has
    `timeout_seconds` to connect and to answer, and is retried twice at once with backoff; an
    alert still undelivered stays in the run failure sensor's outbox for later ticks."""

    webhook_url: str = ""
    ui_base_url: str = "http://127.0.0.1:3000"
    timeout_seconds: int = 10

    def post(self, payload: dict) -> None:
        """Raises AlertDeliveryError unless the webhook accepted the payload."""
        post_payload(payload, self.webhook_url, self.timeout_seconds)

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_base_url.rstrip('/')}/runs/{run_id}"

    def send(self, alert: Alert, log) -> None:
        log.error(alert.as_text())
        if self.webhook_url:
            post_alert(alert, self.webhook_url, self.timeout_seconds)


class PartitionDeadlines(dg.ConfigurableResource):
    """When each day is due: `deadline_hours` after the UTC day ends (6 = 06:00 UTC the next day),
    checked over the last `lookback_days` days."""

    deadline_hours: int = 6
    lookback_days: int = 7
