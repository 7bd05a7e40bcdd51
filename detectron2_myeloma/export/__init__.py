"""What the tools write about predictions besides submissions: preview pictures, tables, results json."""
