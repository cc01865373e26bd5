"""Turning decisions into CDS Hooks cards, with the words from guideline_data."""
