"""One package per domain: its source resource, raw assets, dbt-model assets, checks,
schedules and sensors, gathered by its `definitions.py` (see signalbox.definitions)."""

import importlib
import pkgutil


def production_variables() -> dict[str, str]:
    """Every variable a production deployment needs (name -> what it is): the platform's
    and each domain's, from its package's PRODUCTION_VARIABLES (only the light package
    `__init__` modules are imported)."""
    from signalbox.platform.settings import PLATFORM_PRODUCTION_VARIABLES

    variables = dict(PLATFORM_PRODUCTION_VARIABLES)
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg:
            domain = importlib.import_module(f"{__name__}.{module.name}")
            variables.update(getattr(domain, "PRODUCTION_VARIABLES", {}))
    return variables
