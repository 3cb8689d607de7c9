"""The reliability and security suite: crashes, faults and hostile input (see README, Guarantees)."""
