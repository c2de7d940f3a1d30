"""Alerts: a failed run, or a day not ready by its deadline; delivered to a log and a webhook.

Plain Python, no Dagster: the sensors build the alerts and send them.
"""

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


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
    """A day that is not materialized by its deadline: late (queued or running), failed, or missing;
    `assets` are those whose freshness check failed for it."""

    partition: str
    status: str
    reason: str
    deadline: str
    assets: list[str] = field(default_factory=list)

    def as_text(self) -> str:
        which = f" ({', '.join(self.assets)})" if self.assets else ""
        return f"Partition {self.partition}{which} is {self.status} (due {self.deadline}): {self.reason}"

    def as_payload(self) -> dict:
        return {**asdict(self), "kind": "freshness", "text": self.as_text()}


class AlertDeliveryError(RuntimeError):
    """The webhook did not accept the alert (an HTTP error, a timeout, a refused connection)."""


def webhook_session(retries: int = 2, backoff_seconds: float = 0.5) -> requests.Session:
    """A session that retries a POST on 429/5xx, timeouts and refused connections, with urllib3's
    exponential backoff (0.5 s, 1 s, ...) and a server's Retry-After honoured."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff_seconds,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"POST"}),
        raise_on_status=False,
    )
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def post_payload(
    payload: dict, webhook_url: str, timeout_seconds: float = 10.0, session: requests.Session | None = None
) -> None:
    """POSTs one alert; raises AlertDeliveryError unless the webhook answered 2xx. Each attempt
    has `timeout_seconds` to connect and as much again to answer."""
    session = session or webhook_session()
    try:
        response = session.post(webhook_url, json=payload, timeout=(timeout_seconds, timeout_seconds))
    except requests.RequestException as error:
        raise AlertDeliveryError(f"{type(error).__name__}: {error}") from None
    if not 200 <= response.status_code < 300:
        raise AlertDeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")


@dataclass
class PendingAlert:
    """An alert the webhook has not accepted yet: sent again once `next_attempt_at` has passed."""

    alert_id: str
    payload: dict
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str = ""


@dataclass
class AlertOutbox:
    """Alerts found but not yet delivered, and the ids of those delivered (so none is sent twice),
    kept in a sensor's cursor as JSON. `position` is where the sensor's reading of events resumes.

    Backoff between ticks: `base_delay_seconds * 2**(attempts - 1)`, capped at `max_delay_seconds`.
    """

    position: str | None = None
    pending: list[PendingAlert] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    base_delay_seconds: float = 10.0
    max_delay_seconds: float = 600.0
    remembered: int = 1000

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "AlertOutbox":
        if not cursor:
            return cls()
        data = json.loads(cursor)
        return cls(
            position=data.get("position"),
            pending=[PendingAlert(**item) for item in data.get("pending", [])],
            delivered=list(data.get("delivered", [])),
        )

    def to_cursor(self) -> str:
        return json.dumps(
            {
                "position": self.position,
                "pending": [asdict(item) for item in self.pending],
                "delivered": self.delivered[-self.remembered :],
            }
        )

    def add(self, alert_id: str, payload: dict) -> bool:
        """Queues an alert unless it is queued or delivered already; True if it was new."""
        if alert_id in self.delivered or any(item.alert_id == alert_id for item in self.pending):
            return False
        self.pending.append(PendingAlert(alert_id, {**payload, "alert_id": alert_id}))
        return True

    def deliver(self, send: Callable[[dict], None], now: float, max_sends: int = 20) -> tuple[int, str | None]:
        """Sends the alerts that are due, oldest first; stops at the first failure (the webhook is
        down: the rest wait too). Returns (alerts delivered, the error that stopped it, if any)."""
        sent = 0
        for item in list(self.pending):
            if item.next_attempt_at > now or sent >= max_sends:
                continue
            try:
                send(item.payload)
            except AlertDeliveryError as error:
                item.attempts += 1
                item.last_error = str(error)
                item.next_attempt_at = now + min(
                    self.max_delay_seconds, self.base_delay_seconds * 2 ** (item.attempts - 1)
                )
                return sent, f"alert {item.alert_id} not delivered (attempt {item.attempts}): {error}"
            self.pending.remove(item)
            self.delivered.append(item.alert_id)
            sent += 1
        return sent, None
