"""Indexer: text-likeness detection, bounded extraction, the Tantivy index and queries."""
