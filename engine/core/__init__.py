"""Vocabulary every layer uses: errors, paths, atomic files and output rules, units, memory guard."""
