# ZeRO-2 + CPU offload with this package's hybrid Muon, run by DeepSpeed's own Muon.
#
# Under ZeRO every param group is flattened, so a matrix optimizer cannot run as a client
# optimizer. visdet_mmext hands DeepSpeed `"optimizer": {"type": "Muon"}` instead and tags the
# parameters with this package's routing (hidden matrices and convs on Muon; stem, head,
# depthwise convs, norms and biases on DeepSpeed's CPU Adam), not DeepSpeed's name rule.
# DeepSpeed's Muon fixes nesterov=True, ns_steps=5 and adjust_lr='original'.
_base_ = ['_base_/demo_convnet.py', '_base_/zero_offload.py']

optim_wrapper = dict(
    optimizer=dict(type='Muon', lr=0.02, momentum=0.95, weight_decay=0.01,
                   adamw_lr=1e-3, adamw_betas=(0.9, 0.95), adamw_weight_decay=0.05),
    constructor='VisdetOptimWrapperConstructor',
)
