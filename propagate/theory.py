r"""Mean-field predictions for signal propagation in deep fully connected nets.

Everything that can grow geometrically with depth is computed in ``log10`` so
that, e.g., 1000 layers at :math:`\sigma_w^2 = 512` (a factor 256 per ReLU
layer, :math:`10^{2408}` overall) stays finite.  Pure numpy/scipy: no torch,
so these curves can be drawn next to tables read back from disk.

Conventions (project-wide)
--------------------------
* Hidden layers :math:`l = 1..L`; :math:`z^l = W^l h^{l-1} + b^l`,
  :math:`h^l = \phi(z^l)`, :math:`h^0 = x`.
* :math:`\sigma_w^2 = \text{fan\_in}\cdot\mathrm{Var}(W)`,
  :math:`\sigma_b^2 = \mathrm{Var}(b)`.
* :math:`q^l` is the mean-field second moment of the pre-activations
  :math:`z^l` (the empirical "variance over batch x units" of a layer).
* A "rate" is the least-squares slope of :math:`\log_{10}` variance per layer,
  in the direction the signal travels (forward for activations, backward for
  gradients).
"""

from __future__ import annotations

import math

import numpy as np

from .stats import slope as _slope

__all__ = [
    "ACTIVATIONS",
    "second_moment_gain",
    "derivative_gain",
    "log10_q_map",
    "log10_grad_map",
    "relu_c_map",
    "c_map",
    "iterate_c_map",
    "c_map_asymptote",
    "c_map_offset",
    "C_MAP_LOG_COEF",
    "C_MAP_CONSTANT",
    "rate_theory",
    "born_dead_probability",
    "hanin_log_norm_variance",
]

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "linear")

_LN10 = math.log(10.0)

# Leading constant of the ReLU correlation approach 1 - c^l ~ C / l_eff^2.
# From 1 - f(1 - e) = e - (2*sqrt(2)/(3*pi)) e^{3/2} + O(e^{5/2}):
# C = 4 / a^2 with a = 2*sqrt(2)/(3*pi), i.e. C = 9*pi^2/2 ~= 44.41.
C_MAP_CONSTANT = 9.0 * math.pi**2 / 2.0
# Coefficient of the logarithmic part of the offset: l_eff = l + (3/2) ln l + l0.
C_MAP_LOG_COEF = 1.5


# --------------------------------------------------------------------------
# Gaussian expectations for tanh
# --------------------------------------------------------------------------

# Probabilists' Gauss-Hermite rule: E[g(xi)], xi ~ N(0, 1) = sum w_i g(x_i).
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(101)
_GH_W = _GH_W / math.sqrt(2.0 * math.pi)

# For wide Gaussians (q > 1) the integrand's structure sits at |z| <~ few
# (tanh saturates) while the Gaussian is broad, so Gauss-Hermite in units of
# sqrt(q) under-resolves it.  There we integrate sech^k(z) * N(z; 0, q) in z
# with the trapezoid rule, which converges exponentially for smooth integrands
# decaying at both ends (sech has its nearest poles at +-i*pi/2).
_TRAP_Z = np.linspace(-45.0, 45.0, 4001)
_TRAP_H = _TRAP_Z[1] - _TRAP_Z[0]
_SECH2 = 1.0 / np.cosh(_TRAP_Z) ** 2


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")


def _gauss_sech_power(q: float, power: int) -> float:
    """E[sech(z)^power] for z ~ N(0, q), q > 0 (trapezoid rule in z)."""
    dens = np.exp(-0.5 * _TRAP_Z**2 / q) / math.sqrt(2.0 * math.pi * q)
    return float(_TRAP_H * np.sum(_SECH2 ** (power // 2) * dens))


def _tanh_second_moment(q: float) -> float:
    """E[tanh(z)^2] for z ~ N(0, q)."""
    if q <= 1.0:
        # narrow Gaussian: integrand is smooth on the Gaussian's scale
        return float(np.sum(_GH_W * np.tanh(math.sqrt(q) * _GH_X) ** 2))
    # tanh^2 = 1 - sech^2; no cancellation since E[tanh^2] >= 0.39 for q > 1
    return 1.0 - _gauss_sech_power(q, 2)


def _tanh_derivative_moment(q: float) -> float:
    """E[tanh'(z)^2] = E[sech(z)^4] for z ~ N(0, q)."""
    if q <= 1.0:
        return float(np.sum(_GH_W / np.cosh(math.sqrt(q) * _GH_X) ** 4))
    return _gauss_sech_power(q, 4)


def second_moment_gain(activation: str, q: float = 1.0, negative_slope: float = 0.01) -> float:
    r"""Gain :math:`E[\phi(z)^2] / q` for :math:`z \sim N(0, q)`.

    * relu: :math:`1/2` (half the mass is zeroed, symmetric)
    * leaky_relu: :math:`(1 + a^2)/2`, ``a = negative_slope``
    * linear: :math:`1`
    * tanh: Gauss-Hermite (q <= 1) / trapezoid (q > 1) quadrature; depends
      on ``q``; tends to 1 as q -> 0 and to ~1/q as q -> inf.
    """
    _check_activation(activation)
    if activation == "relu":
        return 0.5
    if activation == "leaky_relu":
        return 0.5 * (1.0 + negative_slope**2)
    if activation == "linear":
        return 1.0
    q = float(q)
    if q < 0:
        raise ValueError("q must be >= 0")
    if q == 0.0:
        return 1.0  # tanh(z) ~ z near 0
    return _tanh_second_moment(q) / q


def derivative_gain(activation: str, q: float = 1.0, negative_slope: float = 0.01) -> float:
    r"""Backward gain :math:`E[\phi'(z)^2]` for :math:`z \sim N(0, q)`.

    * relu: :math:`1/2`; leaky_relu: :math:`(1 + a^2)/2`; linear: :math:`1`
    * tanh: :math:`E[\mathrm{sech}^4 z]` by quadrature (depends on ``q``).
    """
    _check_activation(activation)
    if activation in ("relu", "leaky_relu", "linear"):
        return second_moment_gain(activation, q, negative_slope)
    q = float(q)
    if q < 0:
        raise ValueError("q must be >= 0")
    if q == 0.0:
        return 1.0
    return _tanh_derivative_moment(q)


# --------------------------------------------------------------------------
# Forward (variance) and backward (gradient) maps, in log10
# --------------------------------------------------------------------------


def _log10(x) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log10(np.asarray(x, dtype=float))


def _log10_add(a, b):
    """log10(10**a + 10**b) without overflow (handles -inf)."""
    return np.logaddexp(np.asarray(a) * _LN10, np.asarray(b) * _LN10) / _LN10


def _per_layer(value, n_layers: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return np.full(n_layers, float(arr))
    arr = arr.reshape(-1)
    if arr.shape[0] != n_layers:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n_layers}")
    return arr


def _log10_second_moment(activation: str, log10_q: float, negative_slope: float) -> float:
    """log10 E[phi(z)^2], z ~ N(0, q), computed without forming q for homogeneous phi."""
    if activation == "tanh":
        # tanh^2 <= 1, so large q is harmless; clip only so 10**q stays finite
        q = 10.0 ** min(log10_q, 300.0)
        return float(_log10(_tanh_second_moment(q))) if q > 0 else -np.inf
    return math.log10(second_moment_gain(activation, 1.0, negative_slope)) + log10_q


def log10_q_map(
    sigma_w2,
    log10_q0: float,
    sigma_b2=0.0,
    activation: str = "relu",
    negative_slope: float = 0.01,
    n_layers: int | None = None,
) -> np.ndarray:
    r"""Mean-field pre-activation second moments :math:`\log_{10} q^l`, l = 1..L.

    .. math::
        q^1 = \sigma_{w,1}^2\, q^0 + \sigma_{b,1}^2, \qquad
        q^l = \sigma_{w,l}^2\, E[\phi(z)^2]_{z\sim N(0,q^{l-1})} + \sigma_{b,l}^2
            = \sigma_{w,l}^2\, \mathrm{gain}(q^{l-1})\, q^{l-1} + \sigma_{b,l}^2 ,

    where :math:`q^0 = \mathrm{mean}(x^2)` is the input's second moment (the
    raw input is not passed through :math:`\phi`).  With zero bias and a
    homogeneous activation this is the closed form
    :math:`\log_{10} q^l = \log_{10} q^0 + \log_{10}\sigma_{w,1}^2
    + \sum_{j=2}^{l} \log_{10}(\sigma_{w,j}^2\,\mathrm{gain})`.

    Args:
        sigma_w2: ``(L,)`` array of ``fan_in_l * Var(W_l)`` (or a scalar with
            ``n_layers``).
        log10_q0: ``log10 mean(x**2)`` of the input.
        sigma_b2: scalar or ``(L,)`` bias variances.  The bias is added in log
            space with ``np.logaddexp``, so the result is exact and finite.
        activation: one of :data:`ACTIVATIONS`.
        n_layers: only needed when ``sigma_w2`` is a scalar.

    Returns:
        ``(L,)`` array of ``log10 q^l``.
    """
    _check_activation(activation)
    if n_layers is None:
        n_layers = np.asarray(sigma_w2).size
    lw = _log10(_per_layer(sigma_w2, n_layers, "sigma_w2"))
    lb = _log10(_per_layer(sigma_b2, n_layers, "sigma_b2"))
    if n_layers == 0:
        return np.empty(0)

    if activation != "tanh" and np.all(np.isneginf(lb)):
        # closed form: cumulative sum of per-layer log factors
        steps = lw + math.log10(second_moment_gain(activation, 1.0, negative_slope))
        steps[0] = lw[0]  # no activation on the raw input
        return float(log10_q0) + np.cumsum(steps)

    out = np.empty(n_layers)
    out[0] = _log10_add(lw[0] + log10_q0, lb[0])
    for l in range(1, n_layers):
        m = _log10_second_moment(activation, out[l - 1], negative_slope)
        out[l] = _log10_add(lw[l] + m, lb[l])
    return out


def log10_grad_map(
    back_factor,
    log10_top: float = 0.0,
    activation: str = "relu",
    log10_q=None,
    negative_slope: float = 0.01,
    include_readout: bool = False,
    n_layers: int | None = None,
) -> np.ndarray:
    r"""Back-propagated pre-activation gradient variances :math:`\log_{10}\mathrm{Var}(g^l)`.

    With :math:`g^l = \partial \mathcal{L} / \partial z^l
    = \phi'(z^l) \odot (W^{l+1})^\top g^{l+1}`, mean field gives

    .. math::
        \mathrm{Var}(g^l) = \underbrace{\text{fan\_out}_{l+1}\,\mathrm{Var}(W^{l+1})}_{\texttt{back\_factor[l-1]}}
            \, E[\phi'(z^l)^2]_{z^l \sim N(0, q^l)} \; \mathrm{Var}(g^{l+1}),

    where ``fan_out`` of :math:`W^{l+1}` (shape ``n_{l+1} x n_l``) is
    :math:`n_{l+1}`.  For ReLU the per-layer factor is
    ``back_factor / 2``.

    Anchoring:
        * ``include_readout=False`` (default): ``log10_top`` **is**
          :math:`\log_{10}\mathrm{Var}(g^L)`, so ``out[L-1] == log10_top`` and
          ``back_factor[L-1]`` (the read-out weight :math:`W^{L+1}`) is not
          used.  Convenient for anchoring the theory curve at the measured top
          hidden layer.
        * ``include_readout=True``: ``log10_top`` is the log10 variance of the
          gradient w.r.t. the network output :math:`z^{L+1}`, and
          :math:`g^L` gets ``log10_top + log10 back_factor[L-1]
          + log10 E[phi'(z^L)^2]``.

    Args:
        back_factor: ``(L,)`` array, ``back_factor[l-1] = fan_out * Var(W^{l+1})``
            (or a scalar with ``n_layers``).
        log10_q: ``(L,)`` array of ``log10 q^l`` (e.g. from :func:`log10_q_map`);
            required for tanh, ignored for the piecewise-linear activations.

    Returns:
        ``(L,)`` array, entry ``l-1`` is ``log10 Var(g^l)`` (layer order 1..L,
        i.e. the opposite of the direction the gradient travels).
    """
    _check_activation(activation)
    if n_layers is None:
        n_layers = np.asarray(back_factor).size
    lbf = _log10(_per_layer(back_factor, n_layers, "back_factor"))
    if n_layers == 0:
        return np.empty(0)
    if activation == "tanh":
        if log10_q is None:
            raise ValueError("tanh needs log10_q (the forward q^l) for E[phi'(z)^2]")
        lq = _per_layer(log10_q, n_layers, "log10_q")
        ld = _log10([derivative_gain("tanh", 10.0 ** min(v, 300.0)) for v in lq])
    else:
        ld = np.full(n_layers, math.log10(derivative_gain(activation, 1.0, negative_slope)))

    # step[l-1] takes Var(g^{l+1}) to Var(g^l); for l = L it is the read-out step.
    step = lbf + ld
    out = np.empty(n_layers)
    out[-1] = log10_top + (step[-1] if include_readout else 0.0)
    # reverse cumulative sum of the steps for l = L-1 .. 1
    out[:-1] = out[-1] + np.cumsum(step[:-1][::-1])[::-1]
    return out


def rate_theory(log10_var, direction: str = "forward") -> float:
    r"""Least-squares slope per layer of a theory curve (same fit as the data).

    ``log10_var`` is indexed by layer 1..L.  ``direction="forward"`` fits
    against ``l``; ``"backward"`` against ``L - l`` (i.e. returns minus the
    slope), so that a gradient curve from :func:`log10_grad_map` gets the rate
    "per layer in the direction the gradient travels".  Uses
    :func:`propagate.stats.slope`, so non-finite points are dropped exactly as
    for measured data.
    """
    y = np.asarray(log10_var, dtype=float).reshape(-1)
    x = np.arange(1, y.size + 1, dtype=float)
    if direction == "backward":
        x = -x
    elif direction != "forward":
        raise ValueError("direction must be 'forward' or 'backward'")
    return _slope(x, y)


# --------------------------------------------------------------------------
# Correlation (c) map for ReLU
# --------------------------------------------------------------------------


def relu_c_map(c) -> np.ndarray:
    r"""Normalised ReLU correlation map at zero bias (arc-cosine kernel, degree 1).

    .. math::
        c' = \frac{1}{\pi}\left(\sqrt{1 - c^2} + (\pi - \arccos c)\, c\right)

    Input is clipped to [-1, 1]; f(1) = 1 (fixed point), f(0) = 1/pi,
    f(-1) = 0; monotone increasing.
    """
    c = np.clip(np.asarray(c, dtype=float), -1.0, 1.0)
    return (np.sqrt(1.0 - c * c) + (np.pi - np.arccos(c)) * c) / np.pi


def c_map(c, q_a, q_b, sigma_w2, sigma_b2=0.0) -> tuple:
    r"""One ReLU layer of the mean-field kernel map with bias.

    For two inputs with pre-activation second moments :math:`q_a, q_b` and
    correlation :math:`c`, using :math:`E[\mathrm{relu}(u)\mathrm{relu}(v)]
    = \tfrac12\sqrt{q_a q_b}\, f(c)` (f = :func:`relu_c_map`):

    .. math::
        q_a' = \tfrac{\sigma_w^2}{2} q_a + \sigma_b^2, \quad
        q_b' = \tfrac{\sigma_w^2}{2} q_b + \sigma_b^2, \quad
        c' = \frac{\tfrac{\sigma_w^2}{2}\sqrt{q_a q_b}\, f(c) + \sigma_b^2}{\sqrt{q_a' q_b'}} .

    With :math:`\sigma_b^2 = 0` this is exactly ``relu_c_map(c)``.
    Returns ``(c', q_a', q_b')`` (vectorised, broadcasting).
    """
    c = np.asarray(c, dtype=float)
    q_a = np.asarray(q_a, dtype=float)
    q_b = np.asarray(q_b, dtype=float)
    half = 0.5 * sigma_w2
    qa2 = half * q_a + sigma_b2
    qb2 = half * q_b + sigma_b2
    with np.errstate(invalid="ignore", divide="ignore"):
        c2 = (half * np.sqrt(q_a * q_b) * relu_c_map(c) + sigma_b2) / np.sqrt(qa2 * qb2)
    return np.clip(c2, -1.0, 1.0), qa2, qb2


def _sin_minus_tcos(t: np.ndarray) -> np.ndarray:
    """sin t - t cos t, with a Taylor series for small t (avoids t^3 cancellation).

    sin t - t cos t = sum_{k>=1} (-1)^{k+1} 2k t^{2k+1} / (2k+1)!
    """
    t = np.asarray(t, dtype=float)
    direct = np.sin(t) - t * np.cos(t)
    t2 = t * t
    series = np.zeros_like(t)
    term = t * t2  # t^3
    for k in range(1, 8):
        series += (-1) ** (k + 1) * 2 * k / math.factorial(2 * k + 1) * term
        term = term * t2
    return np.where(t < 0.1, series, direct)


def _relu_theta_step(theta: np.ndarray) -> np.ndarray:
    r"""One zero-bias ReLU c-map step on the angle :math:`\theta = \arccos c`.

    :math:`1 - f(\cos\theta) = 2\sin^2(\theta/2) - (\sin\theta - \theta\cos\theta)/\pi`,
    which has no cancellation as :math:`\theta \to 0` (first term ~
    :math:`\theta^2/2`, second ~ :math:`\theta^3/(3\pi)`), so 1 - c stays
    accurate far below float64's resolution of c itself.
    """
    eps = 2.0 * np.sin(0.5 * theta) ** 2 - _sin_minus_tcos(theta) / np.pi
    return 2.0 * np.arcsin(np.sqrt(np.clip(0.5 * eps, 0.0, 1.0)))


def iterate_c_map(
    c1,
    n_layers: int,
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    q1=1.0,
    q1_b=None,
    complement: bool = False,
) -> np.ndarray:
    r"""Correlations :math:`c^l`, l = 1..n_layers, starting from the measured :math:`c^1`.

    Zero bias: :math:`c^{l+1} = f(c^l)` (independent of :math:`\sigma_w^2` and
    :math:`q`), iterated on the angle so that ``complement=True`` returns
    :math:`1 - c^l` accurately even when it is < 1e-16.
    With bias: :func:`c_map` with :math:`q^l` carried in log space (no
    overflow for large :math:`\sigma_w^2`); ``q1``/``q1_b`` are the layer-1
    second moments of the two inputs (``q1_b`` defaults to ``q1``).

    Args:
        c1: scalar or array of starting correlations.
        complement: return :math:`1 - c^l` instead of :math:`c^l`.

    Returns:
        array of shape ``(n_layers,) + np.shape(c1)``.
    """
    c1 = np.clip(np.asarray(c1, dtype=float), -1.0, 1.0)
    out = np.empty((n_layers,) + c1.shape)
    if n_layers == 0:
        return out
    if sigma_b2 == 0.0:
        theta = np.arccos(c1)
        for l in range(n_layers):
            out[l] = 2.0 * np.sin(0.5 * theta) ** 2 if complement else np.cos(theta)
            theta = _relu_theta_step(theta)
        if not complement:
            out[0] = c1  # exact input, no arccos round trip
        return out

    lqa = np.log(np.broadcast_to(np.asarray(q1, dtype=float), c1.shape))
    lqb = np.log(np.broadcast_to(np.asarray(q1 if q1_b is None else q1_b, dtype=float), c1.shape))
    lhalf = math.log(0.5 * sigma_w2) if sigma_w2 > 0 else -np.inf
    lb = math.log(sigma_b2)
    c = c1
    for l in range(n_layers):
        out[l] = c
        lqa2 = np.logaddexp(lhalf + lqa, lb)
        lqb2 = np.logaddexp(lhalf + lqb, lb)
        denom = 0.5 * (lqa2 + lqb2)
        c = np.exp(lhalf + 0.5 * (lqa + lqb) - denom) * relu_c_map(c) + np.exp(lb - denom)
        c = np.clip(c, -1.0, 1.0)
        lqa, lqb = lqa2, lqb2
    return 1.0 - out if complement else out


def c_map_asymptote(l, l0: float = 0.0, log_correction: bool = False, complement: bool = False) -> np.ndarray:
    r"""Polynomial approach of the zero-bias ReLU correlation to 1.

    .. math::
        1 - c^l \approx \frac{9\pi^2}{2\, \ell^2}, \qquad
        \ell = l + \tfrac32 \ln l + l_0 \;(\text{log\_correction}),\;
        \text{else } \ell = l + l_0 .

    Derivation: with :math:`\epsilon = 1 - c`,
    :math:`\epsilon' = \epsilon - a\,\epsilon^{3/2} + O(\epsilon^{5/2})`,
    :math:`a = 2\sqrt2/(3\pi)`.  For :math:`u = (2/a)\,\epsilon^{-1/2}` one
    step gives :math:`u' = u + 1 + \tfrac32/u + O(u^{-2})`, hence
    :math:`u_l = l + \tfrac32\ln l + l_0 + O(\ln l / l)` and
    :math:`1 - c^l = (4/a^2)/u_l^2 = (9\pi^2/2)/u_l^2`.

    Numerically (see tests): the constant :math:`9\pi^2/2 \approx 44.41` is
    right, but the offset is **not** a constant shift of ``l``: it has the
    :math:`\tfrac32\ln l` term, so the bare formula (``l0=0``, no log term)
    over-estimates :math:`1 - c^l` by ~41% at l = 50, ~22% at l = 100 and
    still ~2.8% at l = 1000 (starting from :math:`c^1 = 0`), converging only
    like :math:`(3\ln l + 2 l_0) / l`.  With the log term and :math:`l_0` from
    :func:`c_map_offset` (:math:`l_0 \approx 3.390` for :math:`c^1 = 0`,
    :math:`l_0(c^1=-1) = l_0(0) - 1`, 15.67 for :math:`c^1 = 0.9`) the error
    is 0.7% at l = 50, 0.2% at l = 100 and 4e-5 at l = 1000 (the remainder
    is the :math:`O(\ln l / l)` term of :math:`u_l`, coefficient 9/4).

    Returns :math:`c^l` (or :math:`1 - c^l` with ``complement=True``).
    """
    l = np.asarray(l, dtype=float)
    ell = l + l0
    if log_correction:
        ell = ell + C_MAP_LOG_COEF * np.log(l)
    eps = C_MAP_CONSTANT / ell**2
    return eps if complement else 1.0 - eps


def c_map_offset(c1, n_iter: int = 4000) -> np.ndarray:
    r"""Offset :math:`l_0(c^1)` in :math:`1 - c^l \approx 9\pi^2 / (2(l + \tfrac32\ln l + l_0)^2)`.

    Iterates the zero-bias map ``n_iter`` layers from :math:`c^1` and reads
    :math:`l_0 = (2/a)(1-c^n)^{-1/2} - n - \tfrac32\ln n - \tfrac94 \ln n / n`
    (the last term is the next order of the expansion, which leaves an
    :math:`O(1/n)` error ~ 5e-4 at the default n).  ``inf`` for
    :math:`c^1 = 1`.
    """
    c1 = np.asarray(c1, dtype=float)
    theta = np.arccos(np.clip(c1, -1.0, 1.0))
    for _ in range(n_iter - 1):
        theta = _relu_theta_step(theta)
    eps = 2.0 * np.sin(0.5 * theta) ** 2
    n = float(n_iter)
    with np.errstate(divide="ignore"):
        u = np.sqrt(C_MAP_CONSTANT / eps)
    return u - n - C_MAP_LOG_COEF * math.log(n) - C_MAP_LOG_COEF**2 * math.log(n) / n


# --------------------------------------------------------------------------
# Finite-width effects
# --------------------------------------------------------------------------


def born_dead_probability(width, depth):
    r"""Probability that a zero-bias ReLU net is born dead for a single input (Lu et al. 2019).

    .. math:: P = 1 - (1 - 2^{-N})^{L}

    Each layer, given a non-zero input vector, has all N pre-activations
    <= 0 independently with probability :math:`2^{-N}` (rows of W are
    independent and symmetric); once a layer is all zero every later one is.
    Exact for symmetric continuous weights, zero bias and :math:`x \ne 0`.
    Computed as ``-expm1(L * log1p(-2**-N))`` so it stays accurate for large N
    (:math:`\approx L\,2^{-N}`).  Broadcasts over arrays.
    """
    n = np.asarray(width, dtype=float)
    d = np.asarray(depth, dtype=float)
    p_layer = np.exp2(-n)
    out = -np.expm1(d * np.log1p(-p_layer))
    return float(out) if out.ndim == 0 else out


def hanin_log_norm_variance(widths, c: float = 5.0) -> float:
    r"""Fluctuation of the squared norm through a He-initialised ReLU net (Hanin & Rolnick 2018).

    .. math::
        \mathrm{Var}[\log \|h^L\|^2] \approx \sum_j \log(1 + c/n_j) \approx c \sum_j 1/n_j,
        \quad c = 5 .

    Relation to the fourth moment: for Gaussian weights with
    :math:`\sigma_w^2 = 2` each layer multiplies :math:`\|h\|^2 n_0/n_j`-normalised
    by an independent factor :math:`R_j = (2/n_j)\chi^2_{K_j}`,
    :math:`K_j \sim \mathrm{Bin}(n_j, 1/2)`, with :math:`E R_j = 1` and
    :math:`E R_j^2 = 1 + 5/n_j`.  Hence **exactly**

    .. math::
        \frac{E\|h^L\|^4}{(E\|h^L\|^2)^2} = \prod_{j=1}^{L}(1 + 5/n_j),

    and the returned number is the log of this ratio, which equals
    :math:`\mathrm{Var}\log\|h^L\|^2` when :math:`\|h^L\|^2` is log-normal
    (the large-width limit).  At finite width the exact per-layer
    :math:`\mathrm{Var}\log R_j = E_K[\psi_1(K/2)] + \mathrm{Var}_K[\psi(K/2)]
    \approx 5/n + 18.5/n^2` exceeds :math:`\log(1+5/n) \approx 5/n - 12.5/n^2`,
    e.g. 0.108 vs 0.095 per layer at n = 50 (the approximation is ~12% low
    there; checked by Monte Carlo in the tests).  For the pre-activation :math:`z^L` the last
    factor is :math:`1 + 2/n_L` (a plain :math:`\chi^2_{n_L}`) instead of
    :math:`1 + 5/n_L`.  ``widths`` are the hidden widths :math:`n_1..n_L`.
    """
    n = np.asarray(widths, dtype=float).reshape(-1)
    return float(np.sum(np.log1p(c / n)))
