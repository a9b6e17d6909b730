"""The papers' update rules written out one tensor at a time: the oracles the native optimizers
are checked against, on CPU and on CUDA.

Each takes ``init`` (tensors) and ``grads`` (one list of tensors per step). Lion and LAMB compute
in float64; ``storage`` rounds their parameters and states to that dtype at the end of every step,
as an optimizer that keeps them in bf16 and steps through fp32 copies does. Muon computes in the
dtype of ``init``.
"""
import math

import torch

from visdet_mmext.algorithms.muon.newton_schulz import NS_COEFFICIENTS


def float64(init):
    """The oracles' own copies of ``init``, in float64."""
    return [t.double().clone() for t in init]


def zeros(params):
    """One zero state per parameter."""
    return [torch.zeros_like(p) for p in params]


def _stored(tensor, storage):
    return tensor if storage is None else tensor.to(storage).double()


def reference_lion(init, grads, lr, betas, weight_decay, storage=None):
    """Lion (Chen et al. 2023, Algorithm 2) with decoupled weight decay scaled by lr."""
    params = float64(init)
    m = zeros(params)
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            g = g.double()
            update = torch.sign(betas[0] * m[i] + (1 - betas[0]) * g)
            params[i] = _stored(params[i] * (1 - lr * weight_decay) - lr * update, storage)
            m[i] = _stored(betas[1] * m[i] + (1 - betas[1]) * g, storage)
    return params


def reference_lamb(init, grads, lr, betas, eps, wd, adapt=True, bias_correction=True,
                   storage=None):
    """The LAMB paper's algorithm (You et al. 2020), weight decay inside the trust ratio."""
    params = float64(init)
    m = zeros(params)
    v = zeros(params)
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            g = g.double()
            m_new = betas[0] * m[i] + (1 - betas[0]) * g
            v_new = betas[1] * v[i] + (1 - betas[1]) * g * g
            m_hat, v_hat = m_new, v_new
            if bias_correction:
                m_hat, v_hat = m_hat / (1 - betas[0] ** t), v_hat / (1 - betas[1] ** t)
            update = m_hat / (v_hat.sqrt() + eps) + wd * params[i]
            w_norm, u_norm = params[i].norm(), update.norm()
            ratio = w_norm / u_norm if adapt and w_norm > 0 and u_norm > 0 else 1.0
            params[i] = _stored(params[i] - lr * ratio * update, storage)
            m[i], v[i] = _stored(m_new, storage), _stored(v_new, storage)
    return params


def reference_muon(init, grads, lr, momentum, nesterov, weight_decay, ns_steps, adjust_lr):
    """The Muon formula written out per matrix (torch.optim.Muon's, any ndim >= 2)."""
    a, b, c = NS_COEFFICIENTS
    params = [t.clone() for t in init]
    bufs = [torch.zeros_like(t) for t in init]
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            bufs[i] = momentum * bufs[i] + (1 - momentum) * g
            u = (1 - momentum) * g + momentum * bufs[i] if nesterov else bufs[i]
            rows, cols = u.shape[0], u[0].numel()
            x = u.reshape(rows, cols)
            if rows > cols:
                x = x.T
            x = x / x.norm().clamp(min=1e-7)
            for _ in range(ns_steps):
                gram = x @ x.T
                x = a * x + (b * gram + c * gram @ gram) @ x
            if rows > cols:
                x = x.T
            scale = (math.sqrt(max(1, rows / cols)) if adjust_lr == "original"
                     else 0.2 * math.sqrt(max(rows, cols)))
            params[i] = params[i] * (1 - lr * weight_decay) - lr * scale * x.reshape(u.shape)
    return params


def reference_adopt(init, grads, lr, betas, eps, weight_decay, decouple, clip_exponent=0.25):
    """ADOPT (Taniguchi et al. 2024, Algorithm 1 with the revised version's clipping), float64:
    the first step only sets v = g^2; later steps normalise g by the previous sqrt(v)."""
    params = float64(init)
    m = zeros(params)
    v = zeros(params)
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            g = g.double()
            if weight_decay and not decouple:
                g = g + weight_decay * params[i]
            if t == 1:
                v[i] = g * g
                continue
            if weight_decay and decouple:
                params[i] = params[i] - lr * weight_decay * params[i]
            normed = g / torch.maximum(v[i].sqrt(), torch.tensor(eps, dtype=torch.float64))
            if clip_exponent is not None:
                bound = (t - 1) ** clip_exponent
                normed = normed.clamp(-bound, bound)
            m[i] = betas[0] * m[i] + (1 - betas[0]) * normed
            params[i] = params[i] - lr * m[i]
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
    return params


def reference_adan(init, grads, lr, betas, eps, weight_decay, no_prox=False, max_grad_norm=0.0):
    """Adan (Xie et al. 2022, Algorithm 1), float64, with the betas of the authors' code
    (beta here = 1 - the paper's) and its global gradient clip."""
    params = float64(init)
    m = zeros(params)
    s = zeros(params)
    n = zeros(params)
    previous = [None] * len(params)
    b1, b2, b3 = betas
    for t, step_grads in enumerate(grads, start=1):
        step_grads = [g.double() for g in step_grads]
        if max_grad_norm > 0:
            norm = math.sqrt(sum(float((g * g).sum()) for g in step_grads))
            step_grads = [g * min(1.0, max_grad_norm / (norm + eps)) for g in step_grads]
        for i, g in enumerate(step_grads):
            d = g - (g if previous[i] is None else previous[i])
            m[i] = b1 * m[i] + (1 - b1) * g
            s[i] = b2 * s[i] + (1 - b2) * d
            n[i] = b3 * n[i] + (1 - b3) * (g + b2 * d) ** 2
            m_hat, s_hat, n_hat = m[i] / (1 - b1 ** t), s[i] / (1 - b2 ** t), n[i] / (1 - b3 ** t)
            step = lr * (m_hat + b2 * s_hat) / (n_hat.sqrt() + eps)
            if no_prox:
                params[i] = params[i] * (1 - lr * weight_decay) - step
            else:
                params[i] = (params[i] - step) / (1 + lr * weight_decay)
            previous[i] = g
    return params


def _rotate(x, bases, forward=True):
    """``x`` with each dimension k that has a basis Q_k mapped by Q_k^T (forward) or Q_k."""
    for k, q in enumerate(bases):
        if q is not None:
            x = torch.movedim(torch.tensordot(x, q if forward else q.T, dims=([k], [0])), -1, k)
    return x


def reference_soap(init, grads, lr, betas, eps, weight_decay, frequency, shampoo_beta=None,
                   max_dim=10000):
    """SOAP (Vyas et al. 2024, Algorithm 3), float64: Adam on the gradient rotated into the
    eigenbases of Shampoo's factors, one factor per dimension (none for 1-D tensors or dimensions
    above ``max_dim``). Step 1 only gathers the factors and takes their eigenvectors; every
    ``frequency`` steps after, one power iteration and a QR refresh each basis, the second moment
    re-ordered with the estimated eigenvalues."""
    shampoo_beta = betas[1] if shampoo_beta is None else shampoo_beta
    params = float64(init)
    m = zeros(params)
    v = zeros(params)
    factors = [[torch.zeros(n, n, dtype=torch.float64) if p.ndim > 1 and n <= max_dim else None
                for n in p.shape] for p in params]
    bases = [None] * len(params)
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            g, f = g.double(), factors[i]
            if t > 1:
                k = t - 1
                m[i] = betas[0] * m[i] + (1 - betas[0]) * g
                v[i] = betas[1] * v[i] + (1 - betas[1]) * _rotate(g, bases[i]) ** 2
                normed = _rotate(m[i], bases[i]) / (v[i].sqrt() + eps)
                size = lr * math.sqrt(1 - betas[1] ** k) / (1 - betas[0] ** k)
                params[i] = params[i] - size * _rotate(normed, bases[i], forward=False)
                params[i] = params[i] - lr * weight_decay * params[i]
            for d, factor in enumerate(f):
                if factor is not None:
                    others = [j for j in range(g.ndim) if j != d]
                    gram = torch.tensordot(g, g, dims=(others, others))
                    f[d] = shampoo_beta * factor + (1 - shampoo_beta) * gram
            if t == 1:
                bases[i] = [None if a is None else torch.linalg.eigh(a)[1].flip(1) for a in f]
            elif (t - 1) % frequency == 0:
                for d, (a, q) in enumerate(zip(f, bases[i])):
                    if a is None:
                        continue
                    order = torch.argsort(torch.diag(q.T @ a @ q), descending=True)
                    v[i] = v[i].index_select(d, order)
                    bases[i][d] = torch.linalg.qr(a @ q[:, order])[0]
    return params


def reference_prodigy(init, grads, lr, betas, eps, d0):
    """Prodigy (Mishchenko & Defazio 2023, Algorithm 3, the Adam version), float64, no weight
    decay: the step size d grows to max(d, r / ||s||_1), r and s accumulating the gradients'
    correlation with the distance travelled from the start."""
    beta1, beta2 = betas
    root = math.sqrt(beta2)
    params = float64(init)
    start = [p.clone() for p in params]
    m = zeros(params)
    v = zeros(params)
    s = zeros(params)
    d, r = d0, 0.0
    for step_grads in grads:
        step_grads = [g.double() for g in step_grads]
        r = root * r + (1 - root) * lr * d * d * sum(
            float((g * (x0 - x)).sum()) for g, x0, x in zip(step_grads, start, params))
        for i, g in enumerate(step_grads):
            m[i] = beta1 * m[i] + (1 - beta1) * d * g
            v[i] = beta2 * v[i] + (1 - beta2) * d * d * g * g
            s[i] = root * s[i] + (1 - root) * lr * d * d * g
        d_new = max(d, r / sum(float(x.abs().sum()) for x in s))
        params = [x - lr * d * mi / (vi.sqrt() + d * eps) for x, mi, vi in zip(params, m, v)]
        d = d_new
    return params


def reference_schedule_free_adamw(init, grads, lr, betas, eps, weight_decay, warmup):
    """Schedule-free AdamW (Defazio et al. 2024, Algorithm 1), float64: gradients at
    y = (1 - beta1) z + beta1 x; z takes the Adam-normalised step, x averages the z's with
    weights lr_t^2. Returns (y, x): the training weights and the averaged (evaluation) ones."""
    beta1, beta2 = betas
    z = [t.double().clone() for t in init]
    x = [t.clone() for t in z]
    v = [torch.zeros_like(t) for t in z]
    weights = 0.0
    for t, step_grads in enumerate(grads, start=1):
        rate = lr * min(1.0, t / warmup) if warmup else lr
        weights += rate ** 2
        c = rate ** 2 / weights
        for i, g in enumerate(step_grads):
            y = (1 - beta1) * z[i] + beta1 * x[i]
            v[i] = beta2 * v[i] + (1 - beta2) * g.double() ** 2
            step = g.double() / ((v[i] / (1 - beta2 ** t)).sqrt() + eps) + weight_decay * y
            z[i] = z[i] - rate * step
            x[i] = (1 - c) * x[i] + c * z[i]
    return [(1 - beta1) * zi + beta1 * xi for zi, xi in zip(z, x)], x


def reference_adafactor(init, grads, clip=1.0, decay_rate=-0.8, eps=(1e-30, 1e-3)):
    """Adafactor (Shazeer & Stern 2018, Algorithms 4 and 5) with its relative step size
    min(1e-2, 1/sqrt(t)) scaled by max(eps2, RMS(x)), factored second moments for matrices
    (row and column sums), update clipping at RMS ``clip``, no momentum; float64."""
    params = float64(init)
    rows = [p.new_zeros(p.shape[:-1]) if p.ndim >= 2 else None for p in params]
    cols = [p.new_zeros(p.shape[:-2] + p.shape[-1:]) if p.ndim >= 2 else None for p in params]
    full = [torch.zeros_like(p) if p.ndim < 2 else None for p in params]
    rms = lambda a: a.pow(2).mean().sqrt()  # noqa: E731
    for t, step_grads in enumerate(grads, start=1):
        beta2 = 1 - t ** decay_rate
        for i, g in enumerate(step_grads):
            g = g.double()
            size = max(eps[1], float(rms(params[i]))) * min(1e-2, 1 / math.sqrt(t))
            square = g * g + eps[0]
            if rows[i] is not None:
                rows[i] = beta2 * rows[i] + (1 - beta2) * square.sum(-1)
                cols[i] = beta2 * cols[i] + (1 - beta2) * square.sum(-2)
                second = (rows[i].unsqueeze(-1) * cols[i].unsqueeze(-2)
                          / rows[i].sum(-1, keepdim=True).unsqueeze(-1))
            else:
                full[i] = beta2 * full[i] + (1 - beta2) * square
                second = full[i]
            update = g / second.sqrt()
            update = update / max(1.0, float(rms(update)) / clip)
            params[i] = params[i] - size * update
    return params


def reference_adam(init, grads, lr, betas, eps, weight_decay=0.0, decoupled=False):
    """Adam (Kingma & Ba 2015, Algorithm 1), with L2 or, ``decoupled``, AdamW's decay (Loshchilov
    & Hutter 2019: p *= 1 - lr * wd); float64."""
    params = float64(init)
    m = zeros(params)
    v = zeros(params)
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            g = g.double()
            if decoupled:
                params[i] = params[i] * (1 - lr * weight_decay)
            else:
                g = g + weight_decay * params[i]
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            m_hat, v_hat = m[i] / (1 - betas[0] ** t), v[i] / (1 - betas[1] ** t)
            params[i] = params[i] - lr * m_hat / (v_hat.sqrt() + eps)
    return params


def reference_sgd_momentum(init, grads, lr, momentum, weight_decay=0.0):
    """SGD with heavy-ball momentum as torch and most libraries write it (b = mu * b + g, the
    first b = g; L2 decay in g); float64."""
    params = float64(init)
    bufs = [None] * len(params)
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            g = g.double() + weight_decay * params[i]
            bufs[i] = g.clone() if bufs[i] is None else momentum * bufs[i] + g
            params[i] = params[i] - lr * bufs[i]
    return params


def reference_dadapt_adam(init, grads, lr, betas, eps, d0):
    """D-Adaptation Adam (Defazio & Mishchenko 2023, the Adam variant of its appendix), float64,
    no weight decay: d grows to max(d, r / ((1 - sqrt(beta2)) ||s||_1)), r weighting each
    gradient's correlation with s / (sqrt(v) + eps) before this step's moments."""
    beta1, beta2 = betas
    root = math.sqrt(beta2)
    params = float64(init)
    m = zeros(params)
    v = zeros(params)
    s = zeros(params)
    d, r = d0, 0.0
    for step_grads in grads:
        step = d * lr
        gain = 0.0
        for i, g in enumerate(step_grads):
            g = g.double()
            gain += step * float((g * s[i] / (v[i].sqrt() + eps)).sum())
            m[i] = beta1 * m[i] + (1 - beta1) * step * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            s[i] = root * s[i] + (1 - root) * step * g
        r = root * r + (1 - root) * gain
        d = max(d, r / ((1 - root) * sum(float(x.abs().sum()) for x in s)))
        params = [x - mi / (vi.sqrt() + eps) for x, mi, vi in zip(params, m, v)]
    return params
