"""Metadata and check-result helpers shared by every domain's assets: how a run over one day or
several days shows its figures. Imports Dagster only, nothing of the pipeline's."""

import dagster as dg


def run_metadata(per_day: dict[str, dict], **shared) -> dict:
    """A one-day run's metadata as is; a multi-day run's total row count and each day's figures."""
    if len(per_day) == 1:
        return {**next(iter(per_day.values())), **shared}
    by_day = {day: {key: plain_value(value) for key, value in metadata.items()} for day, metadata in per_day.items()}
    return {
        "dagster/row_count": sum(metadata["dagster/row_count"] for metadata in per_day.values()),
        "days": dg.MetadataValue.json(by_day),
        **shared,
    }


def plain_value(value: object) -> object:
    """A metadata value as JSON can hold it (a MetadataValue's own value)."""
    return value.value if isinstance(value, dg.MetadataValue) else value


def check_over_days(
    check_name: str, results: dict[str, tuple[bool, dict]], asset_key: str | None = None
) -> dg.AssetCheckResult:
    """One check result for the run: passed if every day passed; failing days named, with their
    figures. A one-day run's metadata is that day's figures (and the day)."""
    failing = [day for day, (passed, _) in results.items() if not passed]
    if len(results) == 1:
        [(day, (_, figures))] = results.items()
        metadata = {"day": day, **figures}
    else:
        metadata = {"days": len(results), "failing_days": ", ".join(failing) or "none"}
    description = None
    if failing:
        description = "failed for " + "; ".join(
            f"{day}: " + ", ".join(f"{key}={value}" for key, value in results[day][1].items()) for day in failing
        )
    return dg.AssetCheckResult(
        check_name=check_name, asset_key=asset_key, passed=not failing, metadata=metadata, description=description
    )
