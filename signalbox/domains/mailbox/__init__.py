"""Support mailbox (Help Scout): raw conversations -> dbt staging -> marts, hourly."""

GROUP = "mailbox"
