"""Consumer complaints (CFPB): raw complaints by date received -> dbt staging -> marts ->
a CSV export in the object store; a polling sensor starts a run when something is new."""

from signalbox.assets.complaints.cfpb import CfpbClient, CfpbResource
from signalbox.assets.complaints.raw import RAW_COMPLAINTS

__all__ = ["RAW_COMPLAINTS", "CfpbClient", "CfpbResource"]
