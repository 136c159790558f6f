"""Stage 3: one worker process per variant, what each leaves behind (run/record.py), and the machine fingerprint."""
