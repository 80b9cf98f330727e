"""Other job systems measured on the same PostgreSQL server, for side-by-side figures."""
