# dbt reads `dbt.adapters.<type>.__version__.version` for `dbt --version` and its logs.
version = "0.1.0"
