"""Resources of the automation: where alerts go. Each setting's default and bounds are declared
here, once (user_pipeline/shared/settings_fields.py)."""

from typing import Annotated

from pydantic import Field

from user_pipeline.automation.alerts import post_payload
from user_pipeline.shared.settings_fields import SettingsResource, check_http_url, checked_by


class AlertChannel(SettingsResource):
    """Where alerts go: always the sensor's log, and a webhook when one is set. Each POST has
    `timeout_seconds` to connect and to answer, and is retried twice at once with backoff; an
    alert still undelivered stays in the alert sensors' outbox for later ticks."""

    webhook_url: Annotated[str, checked_by(check_http_url(optional=True))] = Field(
        default="",
        description="Where alerts are POSTed (JSON with a Slack-style `text` and an `alert_id`); "
        "empty: the sensor's log only.",
    )
    ui_base_url: Annotated[str, checked_by(check_http_url())] = Field(
        default="http://127.0.0.1:3000", description="For the run links in alerts (`make ui` sets its own port)."
    )
    timeout_seconds: int = Field(
        default=10, ge=1, le=300, description="Seconds per webhook request, to connect and to answer."
    )

    def post(self, payload: dict) -> None:
        """Raises AlertDeliveryError unless the webhook accepted the payload."""
        post_payload(payload, self.webhook_url, self.timeout_seconds)

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_base_url.rstrip('/')}/runs/{run_id}"
