"""History behind the status pages (SPEC §7): bounded, in the store, cheap to write.

- `model`: bucket codes, row types, retention;
- `recorder`: per-probe aggregation in memory (one 5-minute bucket per check);
- `rollup`: check buckets → system rows (5 minutes, local hour, local day), pure;
- `service`: writes finished buckets once per bucket, rolls up (leader), prunes;
- `query`: what the API and the pages read (48 half-hour slots, days, availability).
"""
