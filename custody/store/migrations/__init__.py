"""Schema migrations: one numbered SQL file each (``0001_initial.sql``), applied in order."""
