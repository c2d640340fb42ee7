"""kit.labs: the staged course (labs/ guides and their artifact checks)."""
