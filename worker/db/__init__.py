"""The dashboard's database: engine, tables, the unit of work, faults by cause, migrations."""
