"""The bundled API server counts the API requests it answers at once (/_control/concurrency), the figure the Celery queue test checks."""

from concurrent.futures import ThreadPoolExecutor

import requests


def test_counts_requests_answered_at_once(users_api_server):
    users_api_server.add_fault("slow", seeds=["slow"], delay_seconds=0.6)
    users_api_server.reset_concurrency()

    def call(_: int) -> int:
        return requests.get(users_api_server.base_url, params={"seed": "slow", "results": 1}, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert list(pool.map(call, range(3))) == [200, 200, 200]
    assert users_api_server.concurrency() == {"in_flight": 0, "max_in_flight": 3}

    users_api_server.reset_concurrency()
    assert [call(index) for index in range(2)] == [200, 200]
    assert users_api_server.concurrency() == {"in_flight": 0, "max_in_flight": 1}
