"""Consumer complaints (CFPB): raw complaints by date received -> dbt staging -> marts ->
a CSV export in the object store; a polling sensor starts a run when something is new."""

GROUP = "complaints"
