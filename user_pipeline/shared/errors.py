"""Errors every domain raises the same way."""


class InvalidSettingError(ValueError):
    """A configuration value is out of its bounds. The message names the setting, the value and
    the bounds (`invalid page_size=0: expected an integer from 1 to 5000`); `expected` is the bounds
    alone, for a message in the operator's words (user_pipeline/settings.py names the variable)."""

    def __init__(self, setting: str, value: object, expected: str):
        super().__init__(f"invalid {setting}={value!r}: expected {expected}")
        self.setting = setting
        self.expected = expected
