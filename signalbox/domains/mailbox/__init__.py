"""Support mailbox (Help Scout): raw conversations -> dbt staging -> marts, hourly."""

GROUP = "mailbox"
PRODUCTION_VARIABLES = {
    "HELPSCOUT_CLIENT_ID": "Help Scout OAuth2 client id (App ID)",
    "HELPSCOUT_CLIENT_SECRET": "Help Scout OAuth2 client secret",
}
