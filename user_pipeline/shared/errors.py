"""Errors every domain raises the same way."""


class InvalidSettingError(ValueError):
    """A configuration value is out of its range; the message names the setting, the value and the
    bounds: `invalid page_size=0: expected an integer from 1 to 5000`."""

    def __init__(self, setting: str, value: object, expected: str):
        super().__init__(f"invalid {setting}={value!r}: expected {expected}")
        self.setting = setting
