# Hugging Face Adafactor with its relative step (lr=None): factored second moment and its own
# step size min(1e-2, 1/sqrt(step)), so no lr schedule here. scale_parameter=False: the default
# (True, from T5) also multiplies the step by each parameter's RMS, which is tiny for the
# freshly initialised small kernels of the demo (74% instead of 98% after 600 iterations).
_base_ = ['../_base_/demo.py', '../_base_/schedules/constant.py']

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adafactor', lr=None, relative_step=True, scale_parameter=False,
                   warmup_init=False, weight_decay=0.0))
