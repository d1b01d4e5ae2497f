"""placeholder, replaced by the conformance kit."""
