"""What a call to the users API can fail with; the client (api_client.py) and the circuit breaker
(circuit_breaker.py) raise them, the assets tell them apart. Plain Python, no Dagster."""


class UsersApiError(RuntimeError):
    """The API answered something that is not users: retrying will not help."""


class TransientUsersApiError(UsersApiError):
    """The API was unavailable (429, 5xx, timeout, refused connection) on every attempt."""


class CircuitOpenError(TransientUsersApiError):
    """The users API failed repeatedly; no call is made until the circuit's cool-down has passed."""
