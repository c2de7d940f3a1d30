import dagster as dg

from user_pipeline.automation.alerts import post_payload


class AlertChannel(dg.ConfigurableResource):
    """Where alerts go: always the sensor's log, and a webhook when one is set. Each POST has
    `timeout_seconds` to connect and to answer, and is retried twice at once with backoff; an
    alert still undelivered stays in the alert sensor's outbox for later ticks."""

    webhook_url: str = ""
    ui_base_url: str = "http://127.0.0.1:3000"
    timeout_seconds: int = 10

    def post(self, payload: dict) -> None:
        """Raises AlertDeliveryError unless the webhook accepted the payload."""
        post_payload(payload, self.webhook_url, self.timeout_seconds)

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_base_url.rstrip('/')}/runs/{run_id}"
