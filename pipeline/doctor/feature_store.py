"""The feature store: the database answers and its tables are there (migrated) or can be created."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.doctor.report import OK, PROBLEM, UNREACHABLE, Report
from pipeline.settings import redact_url

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import Settings

logger = logging.getLogger(__name__)


def required_feature_store_columns() -> list[str]:
    """The columns the versions table must have: those of its one declaration."""
    from pipeline.featurestore import VERSIONS_COLUMNS

    return [column.name for column in VERSIONS_COLUMNS]


def check_feature_store(settings: Settings, report: Report) -> None:
    import sqlalchemy as sa

    from pipeline.featurestore import VERSIONS_TABLE, FeatureStore

    url = settings.resolved_feature_store_url
    label = redact_url(url)
    name = "feature store"
    if url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///") :].split("?", 1)[0]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            report.add(name, PROBLEM, f"{label}: cannot create {folder}: {exc}")
            return
    try:
        store = FeatureStore(url)
    except Exception as exc:
        report.add(name, PROBLEM, f"{label}: {exc}")
        return
    try:
        with store.engine.connect() as connection:
            present = sa.inspect(connection).has_table(VERSIONS_TABLE)
            if present:
                columns = {c["name"] for c in sa.inspect(connection).get_columns(VERSIONS_TABLE)}
                missing = sorted(set(required_feature_store_columns()) - columns)
                if missing:
                    report.add(
                        name,
                        PROBLEM,
                        f"{label}: table {VERSIONS_TABLE} lacks columns {missing}: it was made by another "
                        "version of the pipeline; migrate it or point PIPELINE_FEATURE_STORE_URL elsewhere",
                    )
                    return
                count = connection.execute(sa.text(f'SELECT count(*) FROM "{VERSIONS_TABLE}"')).scalar()  # noqa: S608
                report.add(name, OK, f"{label}: reachable, migrated ({VERSIONS_TABLE}: {count} version(s))")
                return
            if store.dialect == "postgresql":
                can_create = connection.execute(
                    sa.text("SELECT has_schema_privilege(current_user, current_schema(), 'CREATE')")
                ).scalar()
                if not can_create:
                    report.add(
                        name,
                        PROBLEM,
                        f"{label}: {VERSIONS_TABLE} is missing and this user may not CREATE in the schema: "
                        "grant CREATE on the schema or create the tables first",
                    )
                    return
            report.add(name, OK, f"{label}: reachable; tables are created on the first load")
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        reason = " ".join(str(getattr(exc, "orig", exc)).split())
        lowered = reason.lower()
        if "password authentication failed" in lowered or "does not exist" in lowered or "role" in lowered:
            status, hint = PROBLEM, "check PIPELINE_FEATURE_STORE_URL and PIPELINE_FEATURE_STORE_PASSWORD"
        else:
            status, hint = UNREACHABLE, "check that PostgreSQL is running and PIPELINE_FEATURE_STORE_URL"
        report.add(name, status, f"{label}: cannot connect: {reason}: {hint}")
    except Exception as exc:
        report.add(name, UNREACHABLE, f"{label}: {type(exc).__name__}: {' '.join(str(exc).split())}")
    finally:
        store.close()
