"""End-to-end fixtures: a real daemon and webserver on the bundled API server and a real warehouse."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from user_pipeline_tests.webhook_receiver import WebhookReceiver
from user_pipeline_tools.dagster_services import DagsterServices

USERS_PER_PARTITION = 20


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def dagster_services(request, api_server, webhook, tmp_path_factory) -> Iterator[DagsterServices]:
    """Daemon + webserver for a module, on SQLite instance storage and a SQLite warehouse.

    A test module may define `services_env(root: Path) -> dict[str, str]` to add or override
    environment variables of its services (e.g. USER_PIPELINE_REGISTRY_START_DATE).

    The automation condition sensor (running by default) is stopped as the services start, as the
    README advises while launching and backfilling by hand: the registry, report and Spark runs it
    would add for every day a module lands are not what the module checks, and they compete for
    the machine and the day's runs. A module that tests the automation sets
    `AUTOMATION_RUNNING = True` (test_automation.py; test_demo_timeline.py runs the demo's own daemon).
    """
    root: Path = tmp_path_factory.mktemp("e2e")
    env = {
        "USER_PIPELINE_API_URL": api_server.base_url,
        "USER_PIPELINE_USERS_PER_PARTITION": str(USERS_PER_PARTITION),
        "USER_PIPELINE_DATA_DIR": str(root / "data"),
        "USER_PIPELINE_WAREHOUSE_URL": f"sqlite:///{root}/data/warehouse.sqlite",
        "USER_PIPELINE_ALERT_WEBHOOK_URL": webhook.url,
        "USER_PIPELINE_API_SENSOR_INTERVAL_SECONDS": "5",
    }
    module_env = getattr(request.module, "services_env", None)
    if module_env is not None:
        env.update(module_env(root))
    with DagsterServices(root / "dagster_home", env) as services:
        services.root = root
        services.data_dir = Path(env["USER_PIPELINE_DATA_DIR"])
        services.warehouse_url = env["USER_PIPELINE_WAREHOUSE_URL"]
        if not getattr(request.module, "AUTOMATION_RUNNING", False):
            from user_pipeline_tests.e2e.support import stop_sensor  # support imports this module

            stop_sensor(services, "automation_condition_sensor")
        yield services
