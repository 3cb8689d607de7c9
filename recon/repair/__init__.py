"""Safe repair of lost payments (DESIGN §6): plan, journal, act through the shop, verify, record."""
