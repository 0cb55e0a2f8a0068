import os

# AdapterPlugin needs the directory holding this adapter's dbt_project.yml and macros.
PACKAGE_PATH = os.path.dirname(__file__)
