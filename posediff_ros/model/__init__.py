"""The pose network: point encoder, regression and score heads, noise schedule, sampler."""
