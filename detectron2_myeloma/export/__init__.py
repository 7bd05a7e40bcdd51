"""What the tools write besides submissions: preview pictures, tables, results json, GeoJSON, the case
report, training curves."""
