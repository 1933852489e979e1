"""Networks. One model per file; configs are typed dataclasses."""
