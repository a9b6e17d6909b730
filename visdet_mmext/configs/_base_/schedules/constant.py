# No lr schedule: learning-rate-free optimizers (D-Adaptation, Adafactor with relative_step)
# and LBFGS pick their own step sizes.
param_scheduler = []
