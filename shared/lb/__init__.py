"""Load balancers: one model and one interface over CLB, ALB and NLB (see pools.py)."""
