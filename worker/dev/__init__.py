"""Development only: the demo, seeding accounts the dashboard's way, an embedded Redis."""
