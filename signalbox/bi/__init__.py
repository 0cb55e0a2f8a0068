"""Dashboards (Apache Superset) as code: `dashboards/*.yaml` are the dashboards, `bundle.py`
renders them into Superset's import format, `superset.py` runs Superset for `signalbox bi`
and `signalbox demo --bi`, `links.py` makes the links alerts and reports carry."""


class BiError(RuntimeError):
    """Superset missing or failing, or a dashboard spec that cannot be rendered."""
